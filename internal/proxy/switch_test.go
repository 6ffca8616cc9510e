package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// blueGreen is a config whose one route goes to pool blue, with pool
// green beside it.
func blueGreen(t *testing.T, blue, green string) *config.LB {
	cfg := testConfig(t, blue)
	b := *cfg.Pools["app"]
	b.Name = "blue"
	g := b
	g.Name, g.Targets = "green", []config.TargetSpec{{Address: green}}
	cfg.Pools = map[string]*config.Pool{"blue": &b, "green": &g}
	cfg.PoolOrder = []string{"blue", "green"}
	cfg.Listeners[0].Routes = []config.Route{{Pool: "blue"}}
	return cfg
}

// TestSwitch: a switch sends every new request to green at once, a
// request in flight on blue finishes there, a switch back is as quick,
// and the switch survives a restart through the state file.
func TestSwitch(t *testing.T) {
	blue, green := backend(t, "blue"), backend(t, "green")
	cfg := blueGreen(t, hostPort(blue.URL), hostPort(green.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "both pools healthy", func() bool {
		return stateOf(srv, "blue", hostPort(blue.URL)) == "healthy" && stateOf(srv, "green", hostPort(green.URL)) == "healthy"
	})
	if _, body := get(t, http.DefaultClient, url+"/"); body != "hello from blue" {
		t.Fatalf("before the switch: %q", body)
	}

	// A 2-second request straddles the switch.
	var wg sync.WaitGroup
	var slowBody string
	var slowErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.Get(url + "/?sleep=2s")
		if err != nil {
			slowErr = err
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slowBody = string(b)
	}()
	eventually(t, 2*time.Second, "the slow request in flight on blue", func() bool {
		return srv.pool("blue").lookup(hostPort(blue.URL)).inFlight.Load() > 0
	})
	start := time.Now()
	switches, err := srv.Switch("blue", "green", false)
	took := time.Since(start)
	if err != nil || switches["blue"] != "green" {
		t.Fatalf("Switch: %v %v", switches, err)
	}
	for i := range 10 {
		if _, body := get(t, http.DefaultClient, url+"/"); body != "hello from green" {
			t.Fatalf("request %d after the switch: %q", i, body)
		}
	}
	wg.Wait()
	if slowErr != nil || slowBody != "hello from blue" {
		t.Fatalf("the request in flight at the switch: %q %v, want it answered by blue", slowBody, slowErr)
	}
	t.Logf("switch took %s", took)

	// The switch is in the state file: a new process serves green.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	srv2, url2 := startServer(t, cfg)
	if got := srv2.Switches(); got["blue"] != "green" {
		t.Fatalf("after a restart the switches are %v", got)
	}
	eventually(t, 2*time.Second, "green healthy in the new process", func() bool {
		return stateOf(srv2, "green", hostPort(green.URL)) == "healthy"
	})
	if _, body := get(t, http.DefaultClient, url2+"/"); body != "hello from green" {
		t.Fatalf("after a restart: %q", body)
	}
	// Back, and errors.
	if switches, err := srv2.Switch("blue", "blue", false); err != nil || len(switches) != 0 {
		t.Fatalf("switch back: %v %v", switches, err)
	}
	eventually(t, 2*time.Second, "blue healthy in the new process", func() bool {
		return stateOf(srv2, "blue", hostPort(blue.URL)) == "healthy"
	})
	if _, body := get(t, http.DefaultClient, url2+"/"); body != "hello from blue" {
		t.Fatalf("after the switch back: %q", body)
	}
	if _, err := srv2.Switch("blue", "purple", false); err == nil || !strings.Contains(err.Error(), `unknown pool "purple"`) {
		t.Fatalf("switch to an unknown pool: %v", err)
	}
}

// The admin API: POST /v1/switch and GET /v1/switches, with their errors.
func TestSwitchAdminAPI(t *testing.T) {
	blue, green := backend(t, "blue"), backend(t, "green")
	srv, _ := startServer(t, blueGreen(t, hostPort(blue.URL), hostPort(green.URL)))
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/switch", `{"from":"blue","to":"green"}`, 200, `"switches":{"blue":"green"}`},
		{"GET", "/v1/switches", "", 200, `{"switches":{"blue":"green"}}`},
		{"POST", "/v1/switch", `{"from":"blue","to":"nope"}`, 404, `unknown pool \"nope\"`},
		{"POST", "/v1/switch", `{"from":"green","to":"blue"}`, 409, `no route of lb.yaml names pool green`},
		{"POST", "/v1/switch", `{"from":"blue"}`, 400, `want {\"from\": POOL, \"to\": POOL}`},
		{"POST", "/v1/switch", `{"from":"blue","to":"green","extra":1}`, 400, "extra"},
		{"POST", "/v1/switch", `{"from":"blue","to":"blue"}`, 200, `"switches":{}`},
	} {
		r := adminDo(t, srv, tc.method, tc.path, "Bearer "+testToken, tc.body)
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(r.body)); err != nil {
			t.Fatalf("%s %s: not JSON: %s", tc.method, tc.path, r.body)
		}
		if r.status != tc.status || !strings.Contains(compact.String(), tc.want) {
			t.Errorf("%s %s %s: %d %s, want %d with %s", tc.method, tc.path, tc.body, r.status, compact.String(), tc.status, tc.want)
		}
	}
	if r := adminDo(t, srv, "POST", "/v1/switch", "", `{"from":"blue","to":"green"}`); r.status != 401 {
		t.Errorf("a switch without a token: %d", r.status)
	}
}

func FuzzDecodeSwitch(f *testing.F) {
	for _, b := range append(fuzzBodies, `{"from":"blue","to":"green"}`, `{"from":"","to":"x"}`, `{"from":"a","to":"b","x":1}`) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeSwitch(bytes.NewReader(body))
		if err != nil {
			return
		}
		if len(body) > maxAdminBody {
			t.Fatalf("accepted a body of %d bytes", len(body))
		}
		if req.From == "" || req.To == "" {
			t.Fatalf("accepted %+v without both pools", req)
		}
		again, err := DecodeSwitch(bytes.NewReader(mustJSON(t, req)))
		if err != nil || again != req {
			t.Fatalf("round trip of %+v gave %+v, %v", req, again, err)
		}
	})
}

// A switch is refused when it would do nothing or break serving; a reload
// keeps its routes and cannot drop a switched pool.
func TestSwitchRefusalsAndReload(t *testing.T) {
	blue, green, other := backend(t, "blue"), backend(t, "green"), backend(t, "other")
	cfg := blueGreen(t, hostPort(blue.URL), hostPort(green.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "both pools healthy", func() bool {
		return stateOf(srv, "blue", hostPort(blue.URL)) == "healthy" && stateOf(srv, "green", hostPort(green.URL)) == "healthy"
	})
	if _, err := srv.Switch("green", "blue", false); err == nil || !strings.Contains(err.Error(), "no route of lb.yaml names pool green") {
		t.Fatalf("switch of a pool no route names: %v", err)
	}
	if _, err := srv.Detach("green", hostPort(green.URL)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Switch("blue", "green", false); err == nil || !strings.Contains(err.Error(), "pool green has no healthy target") {
		t.Fatalf("switch to a pool with nothing healthy: %v", err)
	}
	if _, err := srv.Attach("green", hostPort(green.URL), 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "green healthy again", func() bool { return stateOf(srv, "green", hostPort(green.URL)) == "healthy" })

	// A reload adds pool other and sends /other/ there; a switch after it
	// keeps that route.
	next := blueGreen(t, hostPort(blue.URL), hostPort(green.URL))
	next.StateFile = cfg.StateFile
	o := *next.Pools["blue"]
	o.Name, o.Targets = "other", []config.TargetSpec{{Address: hostPort(other.URL)}}
	next.Pools["other"] = &o
	next.PoolOrder = append(next.PoolOrder, "other")
	next.Listeners[0].Routes = []config.Route{{PathPrefix: "/other/", Pool: "other"}, {Pool: "blue"}}
	if err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "other healthy", func() bool { return stateOf(srv, "other", hostPort(other.URL)) == "healthy" })
	if _, err := srv.Switch("blue", "green", false); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, http.DefaultClient, url+"/other/x"); body != "hello from other" {
		t.Fatalf("after a reload and a switch the reloaded route answers %q", body)
	}
	if _, body := get(t, http.DefaultClient, url+"/"); body != "hello from green" {
		t.Fatalf("after the switch: %q", body)
	}
	// A reload that drops a switched pool is refused.
	dropped := *next
	dropped.Pools = map[string]*config.Pool{"blue": next.Pools["blue"], "other": next.Pools["other"]}
	dropped.PoolOrder = []string{"blue", "other"}
	if err := srv.Reload(&dropped); err == nil || !strings.Contains(err.Error(), "no pool green, which is switched") {
		t.Fatalf("reload without a switched pool: %v", err)
	}
}
