package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
)

type lbFixture struct {
	proc    *proctest.Proc
	url     string
	admin   string
	token   string
	client  *builtin.Client
	cfgPath string
	dir     string
}

const lbConfigTemplate = `listeners:
  - name: web
    address: %s
    routes: [ { pool: hello } ]
admin:
  address: %s
  token_file: %s
state_file: %s
shutdown_timeout: 10s
pools:
  hello:
    targets: [%s]
    health: %s
    deregistration_delay: 20s
`

// quickHealth finds a target's change within 200ms; slowHealth is for
// tests that spawn many processes at once (bootstrap over SSH, deploy
// scripts) and must not see both targets flap unhealthy when a full run
// starves the machine for a second.
const (
	quickHealth = "{ path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 }"
	slowHealth  = "{ path: /healthz, interval: 500ms, timeout: 400ms, healthy_threshold: 2, unhealthy_threshold: 3 }"
)

// startLB writes an lb.yaml for targets and runs `zerodown lb` on it.
func startLB(t *testing.T, dir string, targets ...string) *lbFixture {
	t.Helper()
	return startLBHealth(t, dir, quickHealth, targets...)
}

// startLBHealth is startLB with the pool's health check.
func startLBHealth(t *testing.T, dir, health string, targets ...string) *lbFixture {
	t.Helper()
	f := &lbFixture{dir: dir, cfgPath: filepath.Join(dir, "lb.yaml")}
	listen := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	cfg := fmt.Sprintf(lbConfigTemplate, listen, admin, filepath.Join(dir, "admin.token"),
		filepath.Join(dir, "state.json"), strings.Join(targets, ", "), health)
	if err := os.WriteFile(f.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	f.url, f.admin = "http://"+listen, "http://"+admin
	f.run(t)
	return f
}

func (f *lbFixture) run(t *testing.T) {
	t.Helper()
	f.proc = proctest.Start(t, "zerodown lb", bin.zerodown, "lb", "--config", f.cfgPath)
	f.connect(t)
}

// connect waits for the admin token and API of a starting `zerodown lb`.
func (f *lbFixture) connect(t *testing.T) {
	t.Helper()
	tokenPath := filepath.Join(f.dir, "admin.token")
	proctest.Eventually(t, 10*time.Second, "the generated admin token", func() bool {
		b, err := os.ReadFile(tokenPath)
		f.token = strings.TrimSpace(string(b))
		return err == nil && f.token != ""
	})
	var err error
	f.client, err = builtin.New(builtin.Config{Admin: f.admin, Token: f.token})
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "the admin API", func() bool {
		_, err := f.client.Pools(ctxFor(t, time.Second))
		return err == nil
	})
}

func (f *lbFixture) target(t *testing.T, addr string) builtin.Target {
	t.Helper()
	p, err := f.client.Pool(ctxFor(t, 5*time.Second), "hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range p.Targets {
		if tg.Address == addr {
			return tg
		}
	}
	return builtin.Target{Address: addr, State: "absent"}
}

func (f *lbFixture) waitState(t *testing.T, addr string, want lb.State, within time.Duration) {
	t.Helper()
	proctest.Eventually(t, within, fmt.Sprintf("%s to be %s", addr, want), func() bool {
		return f.target(t, addr).State == want
	})
}

// TestLBZeroDowntime is the load balancer's promise with real processes:
// under constant GET and POST load, detach a backend while 2-second
// requests are in flight on it, re-attach it, detach the other: no request
// fails and the long requests complete. Then SIGKILL a backend: no GET
// fails, and only a POST the dead app may have run is answered 502.
func TestLBZeroDowntime(t *testing.T) {
	dir := t.TempDir()
	procA, a := startHello(t, "a", "v1")
	_, b := startHello(t, "b", "v1")
	f := startLB(t, dir, a, b)
	f.waitState(t, a, lb.StateHealthy, 10*time.Second)
	f.waitState(t, b, lb.StateHealthy, 10*time.Second)

	l := startLoad(f.url, 200, 20000, 90*time.Second)
	defer func() {
		if t.Failed() {
			l.finish()
		}
	}()

	// Long requests all on a: b takes nothing while they start (weight 0),
	// so the requests in flight on a at the detach are surely long ones,
	// not the load's short ones.
	ctx := ctxFor(t, 60*time.Second)
	if _, err := f.client.SetWeight(ctx, "hello", b, 0); err != nil {
		t.Fatal(err)
	}
	type longResult struct {
		status int
		body   string
		err    error
		took   time.Duration
	}
	const longCount = 6
	results := make(chan longResult, longCount)
	var longWG sync.WaitGroup
	for i := 0; i < longCount; i++ {
		longWG.Add(1)
		go func() {
			defer longWG.Done()
			start := time.Now()
			resp, err := http.Get(f.url + "/?sleep=2s")
			if err != nil {
				results <- longResult{err: err}
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- longResult{resp.StatusCode, string(body), err, time.Since(start)}
		}()
	}
	proctest.Eventually(t, 5*time.Second, "the 2-second requests in flight on "+a, func() bool {
		return f.target(t, a).InFlight >= longCount
	})
	if _, err := f.client.SetWeight(ctx, "hello", b, 1); err != nil {
		t.Fatal(err)
	}
	detached, err := f.client.Detach(ctx, "hello", builtin.DetachRequest{Target: a})
	if err != nil {
		t.Fatal(err)
	}
	if detached.State != lb.StateDraining {
		t.Fatalf("right after detach %s is %s, want draining", a, detached.State)
	}
	f.waitState(t, a, lb.StateUnused, 15*time.Second)
	longWG.Wait()
	close(results)
	for r := range results {
		if r.err != nil || r.status != 200 || !strings.HasPrefix(r.body, "hello from ") {
			t.Fatalf("a 2-second request failed: status %d body %q err %v", r.status, r.body, r.err)
		}
		if r.took < 2*time.Second {
			t.Fatalf("a 2-second request took %s", r.took)
		}
	}
	if cut := f.target(t, a).Cut; cut != 0 {
		t.Fatalf("%d requests cut on %s; draining should have let them finish", cut, a)
	}

	// Re-attach a, wait until healthy; then detach b and bring it back.
	if _, err := f.client.Attach(ctx, "hello", builtin.AttachRequest{Target: a, Wait: true, Timeout: "10s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Detach(ctx, "hello", builtin.DetachRequest{Target: b, Wait: true, Timeout: "10s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Attach(ctx, "hello", builtin.AttachRequest{Target: b, Wait: true, Timeout: "10s"}); err != nil {
		t.Fatal(err)
	}
	okBefore := l.ok.Load()
	proctest.Eventually(t, 10*time.Second, "traffic on both targets", func() bool {
		return l.ok.Load() > okBefore+200
	})

	if l.failed.Load() != 0 {
		t.Fatalf("load through the balancer before the kill: %s", l.report())
	}

	// SIGKILL a backend under load, without detaching it: a crash, not a
	// deploy. GETs on its connections are retried elsewhere and connection
	// failures take it out at once. A POST the killed app had already
	// received may have run, so it is answered 502, never replayed: at
	// most the few in flight at the instant of the kill.
	procA.Signal(syscall.SIGKILL)
	procA.Wait(t, 5*time.Second)
	f.waitState(t, a, lb.StateUnhealthy, 5*time.Second)
	okAfter := l.ok.Load()
	proctest.Eventually(t, 10*time.Second, "load served after the kill", func() bool {
		return l.ok.Load() > okAfter+300
	})
	l.finish()
	if l.failedGets.Load() != 0 || l.failed.Load() > 4 || l.ok.Load() < 600 {
		t.Fatalf("load through the balancer: %s", l.report())
	}
	for _, msg := range l.failures {
		if !strings.Contains(msg, "status 502") {
			t.Fatalf("a request failed otherwise than a POST in flight on the killed app: %s", msg)
		}
	}
	t.Logf("load: %s", l.report())
}

// TestLBSignals: SIGHUP reloads the config file without dropping
// connections (a bad file is refused and changes nothing); SIGTERM lets an
// in-flight request finish and exits 0; a restart keeps targets attached
// through the admin API.
func TestLBSignals(t *testing.T) {
	dir := t.TempDir()
	_, a := startHello(t, "a", "v1")
	_, b := startHello(t, "b", "v2")
	f := startLB(t, dir, a)
	f.waitState(t, a, lb.StateHealthy, 10*time.Second)
	ctx := ctxFor(t, 60*time.Second)

	// A target attached through the API survives a restart.
	if _, err := f.client.Attach(ctx, "hello", builtin.AttachRequest{Target: b, Wait: true, Timeout: "10s"}); err != nil {
		t.Fatal(err)
	}

	// A broken config is refused on SIGHUP; the balancer keeps serving.
	good, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfgPath, []byte("listeners: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.proc.Signal(syscall.SIGHUP)
	proctest.Eventually(t, 5*time.Second, "the refused reload in the log", func() bool {
		return strings.Contains(f.proc.Output(), "reload refused")
	})
	waitHTTP(t, f.url+"/", 200, 5*time.Second)

	// A good config with a second route is applied on SIGHUP, and a
	// keep-alive connection opened before the reload keeps working.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	get := func(path string) (int, string) {
		resp, err := client.Get(f.url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/"); code != 200 {
		t.Fatalf("before reload: %d", code)
	}
	reloaded := strings.Replace(string(good), "routes: [ { pool: hello } ]",
		"routes: [ { path_prefix: /only-b/, pool: onlyb }, { pool: hello } ]", 1) +
		fmt.Sprintf("  onlyb:\n    targets: [%s]\n    health: { path: /healthz, interval: 100ms, timeout: 80ms }\n", b)
	if err := os.WriteFile(f.cfgPath, []byte(reloaded), 0o644); err != nil {
		t.Fatal(err)
	}
	f.proc.Signal(syscall.SIGHUP)
	proctest.Eventually(t, 10*time.Second, "the new route to serve from b", func() bool {
		code, body := get("/only-b/x")
		return code == 200 && strings.Contains(body, "version v2")
	})

	// SIGTERM: new connections are refused at once (a client tries
	// another load balancer), the in-flight request completes, then the
	// process exits 0.
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(f.url + "/?sleep=3s")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	proctest.Eventually(t, 5*time.Second, "the 1-second request in flight", func() bool {
		p, err := f.client.Pool(ctxFor(t, time.Second), "hello")
		if err != nil {
			return false
		}
		n := 0
		for _, tg := range p.Targets {
			n += tg.InFlight
		}
		return n > 0
	})
	f.proc.Signal(syscall.SIGTERM)
	proctest.Eventually(t, 2*time.Second, "new connections to be refused while the request finishes", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(f.url, "http://"), 500*time.Millisecond)
		if err != nil {
			return errors.Is(err, syscall.ECONNREFUSED)
		}
		c.Close()
		return false
	})
	if err := <-done; err != nil {
		t.Fatalf("in-flight request during SIGTERM: %v", err)
	}
	if code := f.proc.Wait(t, 15*time.Second); code != 0 {
		t.Fatalf("zerodown lb exited %d after SIGTERM", code)
	}

	// Restart: both targets are still attached and serve at once.
	f.run(t)
	for _, addr := range []string{a, b} {
		if st := f.target(t, addr).State; st != lb.StateHealthy {
			t.Fatalf("after restart %s is %s, want healthy", addr, st)
		}
	}
}

// TestLBBadConfig: a bad file is refused with its position and key, exit
// code 2, before anything listens.
func TestLBBadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "listeners:\n  - address: 127.0.0.1:1\n    routes: [ { pool: p } ]\n    colour: red\npools:\n  p: { targets: [127.0.0.1:2] }\n",
			"lb.yaml:4:5: listeners[0].colour: unknown key"},
		{"duplicate target", "listeners:\n  - address: 127.0.0.1:1\n    routes: [ { pool: p } ]\npools:\n  p:\n    targets: [127.0.0.1:2, 127.0.0.1:2]\n",
			"lb.yaml:6:28: pools.p.targets[1]: duplicate target 127.0.0.1:2 (also pools.p.targets[0])"},
		{"unquoted address in flow mapping", "listeners:\n  - address: 127.0.0.1:1\n    routes: [ { pool: p } ]\npools:\n  p: { targets: [127.0.0.1:2] }\n",
			`lb.yaml:5:18: pools.p.targets[0]."127.0.0.1": unknown key (an address inside { } must be quoted: "127.0.0.1:...")`},
		{"bad address", "listeners:\n  - address: 127.0.0.1:1\n    routes: [ { pool: p } ]\npools:\n  p:\n    targets: [localhost]\n",
			"lb.yaml:6:15: pools.p.targets[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "lb.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"lb", "--config", path, "--check"}, {"lb", "--config", path}} {
				p := proctest.Start(t, "zerodown lb", bin.zerodown, args...)
				if code := p.Wait(t, 10*time.Second); code != 2 {
					t.Fatalf("%v: exit %d, want 2; output:\n%s", args, code, p.Output())
				}
				if out := p.Output(); !strings.Contains(out, c.want) {
					t.Fatalf("%v: output lacks %q:\n%s", args, c.want, out)
				}
			}
		})
	}
}
