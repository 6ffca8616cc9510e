package builtin_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
	"github.com/zerodown/zerodown/internal/proxy"
)

const realToken = "integration-token"

// lbConfig is a complete config for a real proxy with one pool "app" and
// fast health checks, built by hand as the loader would fill it in.
func lbConfig(t *testing.T, targets ...string) *config.LB {
	t.Helper()
	dir := t.TempDir()
	passive, retries := 3, 2
	specs := make([]config.TargetSpec, 0, len(targets))
	for _, a := range targets {
		specs = append(specs, config.TargetSpec{Address: a})
	}
	return &config.LB{
		Path:      filepath.Join(dir, "lb.yaml"),
		StateFile: filepath.Join(dir, "state.json"),
		Listeners: []config.Listener{{Name: "web", Address: "127.0.0.1:0", Routes: []config.Route{{Pool: "app"}}}},
		Admin:     config.Admin{Address: "127.0.0.1:0", Token: realToken},
		Client: config.Client{
			ReadHeaderTimeout: config.Duration(5 * time.Second),
			IdleTimeout:       config.Duration(30 * time.Second),
			MaxBodyBytes:      1 << 20,
			MaxHeaderBytes:    1 << 20,
		},
		ShutdownTimeout: config.Duration(5 * time.Second),
		PoolOrder:       []string{"app"},
		Pools: map[string]*config.Pool{"app": {
			Name:    "app",
			Balance: config.BalanceRoundRobin,
			Targets: specs,
			Health: config.HealthCheck{
				Path: "/healthz", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(40 * time.Millisecond),
				HealthyThreshold: 2, UnhealthyThreshold: 2, Status: "200-399", StatusMin: 200, StatusMax: 399,
				PassiveFailures: &passive,
			},
			DeregistrationDelay: config.Duration(5 * time.Second),
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

// startLB runs a real load balancer until the test ends and returns a client
// of its admin API.
func startLB(t *testing.T, cfg *config.LB) (*proxy.Server, *builtin.Client) {
	t.Helper()
	srv, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv, client(t, srv, realToken)
}

func client(t *testing.T, srv *proxy.Server, token string) *builtin.Client {
	t.Helper()
	c, err := builtin.New(builtin.Config{Admin: "http://" + srv.AdminAddr(), Token: token})
	if err != nil {
		t.Fatalf("builtin.New: %v", err)
	}
	return c
}

// app is a backend with a /healthz that answers healthy while healthy is
// true.
func app(t *testing.T, healthy bool) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && !healthy {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func findTarget(ts []builtin.Target, addr string) (builtin.Target, bool) {
	for _, t := range ts {
		if t.Address == addr {
			return t, true
		}
	}
	return builtin.Target{}, false
}

func stateIn(t *testing.T, c *builtin.Client, addr string) lb.State {
	t.Helper()
	p, err := c.Pool(context.Background(), "app")
	if err != nil {
		t.Fatalf("Pool: %v", err)
	}
	tg, ok := findTarget(p.Targets, addr)
	if !ok {
		return ""
	}
	return tg.State
}

func intp(n int) *int { return &n }

func TestIntegrationClientCalls(t *testing.T) {
	a, b := app(t, true), app(t, true)
	_, c := startLB(t, lbConfig(t, a))
	ctx := context.Background()
	waitFor(t, 3*time.Second, "a healthy", func() bool { return stateIn(t, c, a) == lb.StateHealthy })

	pools, err := c.Pools(ctx)
	if err != nil {
		t.Fatalf("Pools: %v", err)
	}
	if len(pools) != 1 || pools[0].Name != "app" || pools[0].Balance != config.BalanceRoundRobin || !pools[0].FailOpen || pools[0].FailingOpen {
		t.Fatalf("Pools = %+v, want one healthy round_robin pool app", pools)
	}
	if ta, ok := findTarget(pools[0].Targets, a); !ok || ta.Weight != 1 || ta.StateSince.IsZero() || time.Since(ta.StateSince) > time.Minute {
		t.Fatalf("target a = %+v", ta)
	}

	steps := []struct {
		name  string
		call  func() (builtin.Target, error)
		check func(builtin.Target) bool
		want  string
	}{
		{"attach b with wait",
			func() (builtin.Target, error) {
				return c.Attach(ctx, "app", builtin.AttachRequest{Target: b, Weight: intp(3), Wait: true, Timeout: "5s"})
			},
			func(tg builtin.Target) bool { return tg.Address == b && tg.State == lb.StateHealthy && tg.Weight == 3 },
			"b healthy with weight 3"},
		{"set weight of b",
			func() (builtin.Target, error) { return c.SetWeight(ctx, "app", b, 5) },
			func(tg builtin.Target) bool { return tg.Address == b && tg.Weight == 5 && tg.State == lb.StateHealthy },
			"b with weight 5"},
		{"set weight to zero",
			func() (builtin.Target, error) { return c.SetWeight(ctx, "app", a, 0) },
			func(tg builtin.Target) bool { return tg.Address == a && tg.Weight == 0 },
			"a with weight 0"},
		{"attach again without weight keeps it",
			func() (builtin.Target, error) {
				return c.Attach(ctx, "app", builtin.AttachRequest{Target: b, Wait: true})
			},
			func(tg builtin.Target) bool { return tg.Weight == 5 && tg.State == lb.StateHealthy },
			"b still with weight 5"},
		{"detach b with wait",
			func() (builtin.Target, error) {
				return c.Detach(ctx, "app", builtin.DetachRequest{Target: b, Wait: true, Timeout: "5s"})
			},
			func(tg builtin.Target) bool { return tg.Address == b && tg.State == lb.StateUnused && tg.InFlight == 0 },
			"b unused"},
		{"reattach b with wait",
			func() (builtin.Target, error) {
				return c.Attach(ctx, "app", builtin.AttachRequest{Target: b, Wait: true, Timeout: "5s"})
			},
			func(tg builtin.Target) bool { return tg.State == lb.StateHealthy && tg.Weight == 5 },
			"b healthy again with weight 5"},
	}
	for _, st := range steps {
		tg, err := st.call()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !st.check(tg) {
			t.Fatalf("%s: answered %+v, want %s", st.name, tg, st.want)
		}
	}

	p, err := c.Pool(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range p.Targets {
		got = append(got, tg.Address+"/"+string(tg.State))
	}
	if want := []string{a + "/healthy", b + "/healthy"}; !slices.Equal(got, want) {
		t.Fatalf("Pool targets %v, want %v", got, want)
	}
}

func TestIntegrationWaitTimesOut(t *testing.T) {
	a, starting := app(t, true), app(t, false)
	_, c := startLB(t, lbConfig(t, a))
	start := time.Now()
	tg, err := c.Attach(context.Background(), "app", builtin.AttachRequest{Target: starting, Wait: true, Timeout: "300ms"})
	took := time.Since(start)
	var ae *builtin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusGatewayTimeout {
		t.Fatalf("Attach of a target that never becomes healthy: %v, want an *APIError with status 504", err)
	}
	for _, s := range []string{starting, "not healthy", "503"} {
		if !strings.Contains(ae.Message, s) {
			t.Errorf("message %q does not mention %q", ae.Message, s)
		}
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("the wait of 300ms took %s", took)
	}
	// The 504 carries the target as it was, nested under "target".
	if tg.Address != starting || (tg.State != lb.StateInitial && tg.State != lb.StateUnhealthy) || tg.Weight != 1 {
		t.Errorf("target from the 504 = %+v, want %s initial or unhealthy", tg, starting)
	}
	if tg.State == lb.StateUnhealthy && !strings.Contains(tg.LastHealthError, "503") {
		t.Errorf("unhealthy target without its health error: %+v", tg)
	}
}

func TestIntegrationBalancer(t *testing.T) {
	a, b := app(t, true), app(t, true)
	srv, c := startLB(t, lbConfig(t, a))
	ctx := context.Background()
	bal := c.Balancer("app")
	targets := func() []lb.Target {
		ts, err := bal.Targets(ctx)
		if err != nil {
			t.Fatalf("Targets: %v", err)
		}
		return ts
	}
	state := func(addr string) lb.State {
		for _, tg := range targets() {
			if tg.Address == addr {
				return tg.State
			}
		}
		return ""
	}
	waitFor(t, 3*time.Second, "a healthy", func() bool { return state(a) == lb.StateHealthy })

	if err := bal.Attach(ctx, b); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	// Attach does not wait: b is known at once and becomes healthy later.
	if st := state(b); st != lb.StateInitial && st != lb.StateHealthy {
		t.Fatalf("b is %q right after Attach", st)
	}
	waitFor(t, 3*time.Second, "b healthy", func() bool { return state(b) == lb.StateHealthy })

	w, ok := bal.(lb.Weighter)
	if !ok {
		t.Fatal("the builtin balancer is not an lb.Weighter")
	}
	if err := w.SetWeight(ctx, b, 4); err != nil {
		t.Fatalf("SetWeight: %v", err)
	}
	want := []lb.Target{
		{Address: a, State: lb.StateHealthy, Weight: 1},
		{Address: b, State: lb.StateHealthy, Weight: 4},
	}
	if got := targets(); !slices.Equal(got, want) {
		t.Fatalf("Targets = %+v, want %+v", got, want)
	}

	if err := bal.Detach(ctx, b); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	// Detach returns once no new request goes to b.
	if st := state(b); st != lb.StateDraining && st != lb.StateUnused {
		t.Fatalf("b is %q right after Detach", st)
	}
	waitFor(t, 3*time.Second, "b unused", func() bool { return state(b) == lb.StateUnused })

	// Traffic through the proxy goes to a only.
	url := "http://" + srv.ListenerAddrs()[0] + "/"
	for i := 0; i < 5; i++ {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("proxied request: %d", resp.StatusCode)
		}
	}
	p, err := c.Pool(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ta, _ := findTarget(p.Targets, a); ta.Requests < 5 {
		t.Errorf("a served %d requests, want at least 5", ta.Requests)
	}
	if tb, _ := findTarget(p.Targets, b); tb.InFlight != 0 || tb.Cut != 0 {
		t.Errorf("detached b: %+v", tb)
	}
}

func TestIntegrationErrors(t *testing.T) {
	a := app(t, true)
	srv, c := startLB(t, lbConfig(t, a))
	ctx := context.Background()
	wrong := client(t, srv, "wrong-token")
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()

	tests := []struct {
		name    string
		call    func() error
		status  int
		mention string
	}{
		{"Pool of unknown pool", func() error { _, err := c.Pool(ctx, "nope"); return err }, 404, "nope"},
		{"Attach to unknown pool", func() error {
			_, err := c.Attach(ctx, "nope", builtin.AttachRequest{Target: a})
			return err
		}, 404, "nope"},
		{"Detach from unknown pool", func() error {
			_, err := c.Detach(ctx, "nope", builtin.DetachRequest{Target: a})
			return err
		}, 404, "nope"},
		{"SetWeight in unknown pool", func() error { _, err := c.SetWeight(ctx, "nope", a, 2); return err }, 404, "nope"},
		{"Balancer of unknown pool", func() error { _, err := c.Balancer("nope").Targets(ctx); return err }, 404, "nope"},
		{"Balancer Attach to unknown pool", func() error { return c.Balancer("nope").Attach(ctx, a) }, 404, "nope"},
		{"Detach unknown target", func() error {
			_, err := c.Detach(ctx, "app", builtin.DetachRequest{Target: free, Wait: true})
			return err
		}, 404, free},
		{"SetWeight of unknown target", func() error { _, err := c.SetWeight(ctx, "app", free, 2); return err }, 404, free},
		{"Pools with wrong token", func() error { _, err := wrong.Pools(ctx); return err }, 401, "token"},
		{"Attach with wrong token", func() error {
			_, err := wrong.Attach(ctx, "app", builtin.AttachRequest{Target: free})
			return err
		}, 401, "token"},
		{"Balancer with wrong token", func() error { return wrong.Balancer("app").Detach(ctx, a) }, 401, "token"},
		{"bad address", func() error {
			_, err := c.Attach(ctx, "app", builtin.AttachRequest{Target: "localhost"})
			return err
		}, 400, "localhost"},
		{"weight too large", func() error { _, err := c.SetWeight(ctx, "app", a, 1001); return err }, 400, "1001"},
		{"timeout too long", func() error {
			_, err := c.Attach(ctx, "app", builtin.AttachRequest{Target: a, Wait: true, Timeout: "2h"})
			return err
		}, 400, "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *builtin.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T), want an *APIError", err, err)
			}
			if ae.Status != tc.status {
				t.Errorf("status %d, want %d (%v)", ae.Status, tc.status, err)
			}
			if !strings.Contains(ae.Message, tc.mention) {
				t.Errorf("message %q does not mention %q", ae.Message, tc.mention)
			}
			if strings.Contains(err.Error(), realToken) || strings.Contains(err.Error(), "wrong-token") {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
	// Nothing changed: a is still the only target, healthy or on its way,
	// with weight 1.
	p, err := c.Pool(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Targets) != 1 || p.Targets[0].Address != a || p.Targets[0].Weight != 1 ||
		p.Targets[0].State == lb.StateDraining || p.Targets[0].State == lb.StateUnused {
		t.Fatalf("rejected calls changed the pool: %+v", p.Targets)
	}
}

// TestIntegrationCounts: the driver reads from /metrics what the load
// balancer hid from clients — a GET retried on another target after the
// first dropped it — as a deploy's verifier does at a run's start and end.
func TestIntegrationCounts(t *testing.T) {
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		panic(http.ErrAbortHandler) // took the request, answered nothing
	}))
	t.Cleanup(dropper.Close)
	good := app(t, true)
	bad := strings.TrimPrefix(dropper.URL, "http://")
	srv, c := startLB(t, lbConfig(t, good, bad))
	for _, a := range []string{good, bad} {
		waitFor(t, 5*time.Second, a+" healthy", func() bool { return stateIn(t, c, a) == lb.StateHealthy })
	}
	counter, ok := c.Balancer("app").(lb.Counter)
	if !ok {
		t.Fatal("the builtin driver does not report counts")
	}
	before, err := counter.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + srv.ListenerAddrs()[0] + "/"
	for i := 0; i < 10; i++ {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %d: status %d; the retry should have hidden the drop", i, resp.StatusCode)
		}
	}
	after, err := counter.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Retries-before.Retries < 3 || after.TargetErrors-before.TargetErrors < 3 {
		t.Fatalf("counts before %+v after %+v: the hidden failures were not counted", before, after)
	}
	if _, err := client(t, srv, "wrong-token-wrong-token").Counts(context.Background(), "app"); err == nil {
		t.Fatal("metrics read with a wrong token")
	}
}
