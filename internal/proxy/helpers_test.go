package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/config"
)

// testConfig is a full config with short health intervals for tests; the
// loader's defaults are not used so these tests stand on their own.
func testConfig(t *testing.T, targets ...string) *config.LB {
	t.Helper()
	dir := t.TempDir()
	passive := 3
	retries := 2
	specs := make([]config.TargetSpec, 0, len(targets))
	for _, a := range targets {
		specs = append(specs, config.TargetSpec{Address: a})
	}
	return &config.LB{
		Path:      dir + "/lb.yaml",
		StateFile: dir + "/state.json",
		Listeners: []config.Listener{{Name: "web", Address: "127.0.0.1:0", Routes: []config.Route{{Pool: "app"}}}},
		Admin:     config.Admin{Address: "127.0.0.1:0", Token: "test-token"},
		Client: config.Client{
			ReadHeaderTimeout: config.Duration(5 * time.Second),
			IdleTimeout:       config.Duration(30 * time.Second),
			MaxBodyBytes:      1 << 20,
			MaxHeaderBytes:    64 << 10,
			MaxHeaders:        100,
		},
		ShutdownTimeout: config.Duration(5 * time.Second),
		PoolOrder:       []string{"app"},
		Pools: map[string]*config.Pool{"app": {
			Name:    "app",
			Balance: config.BalanceLeastOutstanding,
			Targets: specs,
			Health: config.HealthCheck{
				Path: "/healthz", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(40 * time.Millisecond),
				HealthyThreshold: 2, UnhealthyThreshold: 2, Status: "200-399", StatusMin: 200, StatusMax: 399,
				PassiveFailures: &passive,
			},
			DeregistrationDelay: config.Duration(10 * time.Second),
			WebSocketGrace:      config.Duration(time.Second),
			Retries:             &retries,
			MaxReplayBytes:      64 << 10,
			Upstream: config.Upstream{
				ConnectTimeout:   config.Duration(time.Second),
				ResponseTimeout:  config.Duration(10 * time.Second),
				IdleTimeout:      config.Duration(4 * time.Second),
				MaxIdlePerTarget: 64,
			},
		}},
	}
}

// startServer starts a load balancer and stops it when the test ends.
func startServer(t *testing.T, cfg *config.LB) (*Server, string) {
	t.Helper()
	srv := startWith(t, cfg, Options{})
	return srv, "http://" + srv.ListenerAddrs()[0]
}

// startWith starts a server with opts, without the idle grace of a
// shutdown, and stops it when the test ends.
func startWith(t *testing.T, cfg *config.LB, opts Options) *Server {
	t.Helper()
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	noIdleGrace(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// noIdleGrace makes srv close idle connections at once when it shuts
// down, so tests that stop many servers do not wait the grace each time.
func noIdleGrace(srv *Server) {
	var none time.Duration
	srv.idleGrace = &none
}

// eventually polls cond until it holds or the deadline passes.
var eventually = proctest.Eventually

func stateOf(srv *Server, pool, addr string) string {
	p := srv.pool(pool)
	if p == nil {
		return "no pool"
	}
	t := p.lookup(addr)
	if t == nil {
		return "absent"
	}
	return string(t.loadState().lbState())
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func adminCall(t *testing.T, srv *Server, method, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+srv.AdminAddr()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func hostPort(url string) string { return strings.TrimPrefix(url, "http://") }

var _ = fmt.Sprintf

// withTLS makes cfg's first listener HTTPS with a fresh self-signed
// certificate for 127.0.0.1 and returns the certificate.
func withTLS(t *testing.T, cfg *config.LB) (certPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	tc := &config.TLS{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(tc.Cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.Key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Listeners[0].TLS = tc
	return certPEM
}
