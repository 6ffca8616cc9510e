package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestLBSwitchUnderLoad: `zerodown lb switch blue green` under GET and
// slow-POST load fails no request; 2-second requests that straddle the
// switch (sent by curl) finish on blue, every request after it reaches
// green; the switch back is as clean; a restarted lb keeps the switch.
func TestLBSwitchUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	blue, green := proctest.FreeAddr(t), proctest.FreeAddr(t)
	for name, addr := range map[string]string{"blue": blue, "green": green} {
		proctest.Start(t, "sample app "+name, bin.hello, "--listen", addr, "--name", name, "--version", name)
	}
	listen, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := fmt.Sprintf(`listeners:
  - name: web
    address: %s
    routes: [ { pool: blue } ]
admin: { address: %s, token_file: %s }
state_file: %s
shutdown_timeout: 10s
pools:
  blue:
    targets: [%s]
    health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 }
  green:
    targets: [%s]
    health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 }
`, listen, admin, filepath.Join(dir, "admin.token"), filepath.Join(dir, "state.json"), blue, green)
	cfgPath := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lbf := &lbFixture{dir: dir, cfgPath: cfgPath, url: "http://" + listen, admin: "http://" + admin}
	lbf.run(t)
	for _, pool := range []string{"blue", "green"} {
		proctest.Eventually(t, 10*time.Second, pool+" healthy", func() bool {
			p, err := lbf.client.Pool(ctxFor(t, time.Second), pool)
			return err == nil && len(p.Targets) == 1 && p.Targets[0].State == "healthy"
		})
	}
	version := func() string {
		v, err := appVersion(lbf.url)
		if err != nil {
			return err.Error()
		}
		return v
	}
	if v := version(); v != "blue" {
		t.Fatalf("before the switch the front answers %s", v)
	}
	curl := proctest.NeedProgram(t, "curl", "/usr/bin/curl")
	straddle := func() chan string {
		out := make(chan string, 1)
		go func() {
			b, err := exec.Command(curl, "-sS", "-D", "-", "-o", "/dev/null", lbf.url+"/?sleep=2s").CombinedOutput()
			if err != nil {
				out <- fmt.Sprintf("curl: %v: %s", err, b)
				return
			}
			out <- string(b)
		}()
		return out
	}
	switchTo := func(from, to string) {
		t.Helper()
		o, err := exec.Command(bin.zerodown, "lb", "switch", from, to, "--admin", lbf.admin, "--token-file", filepath.Join(dir, "admin.token")).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "routes of pool "+from+" go to pool "+to) {
			t.Fatalf("zerodown lb switch %s %s: %v\n%s", from, to, err, o)
		}
		t.Logf("%s", strings.TrimSpace(string(o)))
	}
	inFlightOn := func(pool string) func() bool {
		return func() bool {
			p, err := lbf.client.Pool(ctxFor(t, time.Second), pool)
			return err == nil && len(p.Targets) == 1 && p.Targets[0].InFlight > 0
		}
	}

	l := startLoad(lbf.url, 100, 20000, 2*time.Minute)
	posts := startSlowPosts(lbf.url, 3, 2*time.Minute)
	for _, step := range []struct{ from, to, old, now string }{{"blue", "green", "blue", "green"}, {"blue", "blue", "green", "blue"}} {
		slow := straddle()
		proctest.Eventually(t, 5*time.Second, "a 2s request in flight on "+step.old, inFlightOn(step.old))
		switchTo(step.from, step.to)
		for i := range 20 {
			if v := version(); v != step.now {
				t.Fatalf("request %d after switching to %s answered %s", i, step.now, v)
			}
		}
		if got := <-slow; !strings.Contains(got, "200") || !strings.Contains(strings.ToLower(got), "x-version: "+step.old) {
			t.Fatalf("the 2s request in flight at the switch to %s: %s (want it answered by %s)", step.now, got, step.old)
		}
	}
	l.finish()
	postReport := posts.finish()
	if l.failed.Load() > 0 || l.ok.Load() == 0 || posts.failed.Load() > 0 || posts.ok.Load() == 0 {
		t.Fatalf("requests during the switches: GET %s; POST %s", l.report(), postReport)
	}
	t.Logf("GET %d ok; POST %s", l.ok.Load(), postReport)

	// The switch survives a restart of the lb: the state file keeps it.
	switchTo("blue", "green")
	lbf.proc.Signal(os.Interrupt)
	lbf.proc.Wait(t, 20*time.Second)
	lbf.run(t)
	sw, err := lbf.client.Switches(ctxFor(t, 5*time.Second))
	if err != nil || sw["blue"] != "green" {
		t.Fatalf("after a restart the switches are %v, %v", sw, err)
	}
	proctest.Eventually(t, 10*time.Second, "the restarted lb to serve green", func() bool { return version() == "green" })
}
