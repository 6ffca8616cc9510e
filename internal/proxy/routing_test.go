package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

func TestRoutesByHostAndPath(t *testing.T) {
	app, api, admin := backend(t, "app"), backend(t, "api"), backend(t, "api-admin")
	cfg := testConfig(t, hostPort(app.URL))
	for _, name := range []string{"api", "apiadmin"} {
		pc := *cfg.Pools["app"]
		pc.Name = name
		pc.Targets = []config.TargetSpec{{Address: hostPort(api.URL)}}
		if name == "apiadmin" {
			pc.Targets = []config.TargetSpec{{Address: hostPort(admin.URL)}}
		}
		cfg.Pools[name] = &pc
		cfg.PoolOrder = append(cfg.PoolOrder, name)
	}
	cfg.Listeners[0].Routes = []config.Route{
		{Host: "api.example.com", PathPrefix: "/admin/", Pool: "apiadmin"},
		{Host: "API.example.com", Pool: "api"},
		{Pool: "app"},
	}
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "all healthy", func() bool {
		return stateOf(srv, "app", hostPort(app.URL)) == "healthy" &&
			stateOf(srv, "api", hostPort(api.URL)) == "healthy" &&
			stateOf(srv, "apiadmin", hostPort(admin.URL)) == "healthy"
	})
	cases := []struct {
		host, path, want string
	}{
		{"api.example.com", "/admin/users", "hello from api-admin"},
		{"api.example.com:8080", "/admin/", "hello from api-admin"},
		{"Api.Example.Com", "/v1/things", "hello from api"},
		{"api.example.com", "/administrator", "hello from api"},
		{"www.example.com", "/admin/users", "hello from app"},
		{"", "/", "hello from app"},
	}
	for _, c := range cases {
		t.Run(c.host+c.path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url+c.path, nil)
			req.Host = c.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != c.want {
				t.Fatalf("got %q, want %q", body, c.want)
			}
		})
	}
}

func TestNoRouteIs404(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	cfg.Listeners[0].Routes = []config.Route{{Host: "only.example.com", Pool: "app"}}
	_, url := startServer(t, cfg)
	code, body := get(t, http.DefaultClient, url+"/")
	if code != 404 || !strings.Contains(body, "no route") {
		t.Fatalf("got %d %q", code, body)
	}
}

// TestWeights checks that both algorithms honour weights: a 1:3 split
// sends about a quarter of sequential requests to the lighter target.
func TestWeights(t *testing.T) {
	for _, balance := range []string{config.BalanceRoundRobin, config.BalanceLeastOutstanding} {
		t.Run(balance, func(t *testing.T) {
			a, b := backend(t, "a"), backend(t, "b")
			cfg := testConfig(t, hostPort(a.URL), hostPort(b.URL))
			cfg.Pools["app"].Balance = balance
			srv, url := startServer(t, cfg)
			eventually(t, 2*time.Second, "both healthy", func() bool {
				return stateOf(srv, "app", hostPort(a.URL)) == "healthy" && stateOf(srv, "app", hostPort(b.URL)) == "healthy"
			})
			if _, err := srv.SetWeight("app", hostPort(b.URL), 3); err != nil {
				t.Fatal(err)
			}
			// Concurrency makes least-outstanding weigh in-flight counts.
			counts := map[string]int{}
			results := make(chan string, 400)
			for w := 0; w < 8; w++ {
				go func() {
					for i := 0; i < 50; i++ {
						_, body := get(t, http.DefaultClient, url+"/?sleep=2ms")
						results <- body
					}
				}()
			}
			for i := 0; i < 400; i++ {
				counts[<-results]++
			}
			share := float64(counts["hello from a"]) / 400
			if share < 0.12 || share > 0.38 {
				t.Fatalf("weight 1 of 4 got share %.2f (%v)", share, counts)
			}
			// One request at a time (an idle pool, a canary's 10 %): the
			// weights are still the shares, not "all to the heaviest".
			idle := map[string]int{}
			for i := 0; i < 100; i++ {
				_, body := get(t, http.DefaultClient, url+"/")
				idle[body]++
			}
			if n := idle["hello from a"]; n < 20 || n > 30 {
				t.Fatalf("sequential requests: weight 1 of 4 got %d of 100 (%v)", n, idle)
			}
			if _, err := srv.SetWeight("app", hostPort(a.URL), 0); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				if _, body := get(t, http.DefaultClient, url+"/"); body != "hello from b" {
					t.Fatalf("weight 0 target still served: %q", body)
				}
			}
		})
	}
}

func TestSmoothSequence(t *testing.T) {
	seq := smoothSequence([]int32{5, 1, 1})
	if len(seq) != 7 {
		t.Fatalf("len %d", len(seq))
	}
	// nginx's smooth order for 5,1,1 is a a b a c a a.
	want := []int32{0, 0, 1, 0, 2, 0, 0}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("sequence %v, want %v", seq, want)
		}
	}
	if smoothSequence([]int32{1000, 999, 998, 997, 996}) != nil {
		t.Fatal("a sequence over the cap should fall back to weighted random")
	}
}

func TestHTTPSListener(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	certPEM := withTLS(t, cfg)
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := client.Get(strings.Replace(url, "http://", "https://", 1) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from a" || resp.ProtoMajor != 2 {
		t.Fatalf("got %q over %s", body, resp.Proto)
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
