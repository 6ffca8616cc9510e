package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/haproxy"
	"github.com/zerodown/zerodown/internal/proctest"
)

// switcher switches a front between a blue and a green pool through
// zerodown's own lb.Switcher driver, as a blue-green deploy does.
type switcher struct {
	name  string
	front string
	sw    lb.Switcher
}

// TestSwitchBenchmark switches a front from blue to green and back, ten
// times each way, under 100 GET/s, through the blue-green drivers of
// zerodown lb (its admin API) and of HAProxy (`set map` on a use_backend
// map, plus the map file), and prints per balancer and direction the
// time of the switch call, the time from the call until a request
// answers from the new pool (every request after the call does: the test
// checks 20), and failed requests. bench/switch.sh runs it; skipped
// otherwise.
func TestSwitchBenchmark(t *testing.T) {
	if os.Getenv("ZERODOWN_BENCH_SWITCH") == "" {
		t.Skip("set ZERODOWN_BENCH_SWITCH=1 (bench/switch.sh does)")
	}
	blue, green := proctest.FreeAddr(t), proctest.FreeAddr(t)
	for name, addr := range map[string]string{"blue": blue, "green": green} {
		proctest.Start(t, "sample app "+name, bin.hello, "--listen", addr, "--name", name, "--version", name)
	}
	var rows []string
	for _, sw := range []switcher{zerodownSwitcher(t, blue, green), haproxySwitcher(t, blue, green)} {
		version := func() string {
			v, err := appVersion(sw.front)
			if err != nil {
				return err.Error()
			}
			return v
		}
		proctest.Eventually(t, 10*time.Second, sw.name+" serving blue", func() bool { return version() == "blue" })
		l := startLoad(sw.front, 100, 100000, 5*time.Minute)
		calls := map[string][]time.Duration{}
		seen := map[string][]time.Duration{}
		for i := range 20 {
			// Each switch after 25 more requests of the load, so every
			// switch happens under it.
			sent := l.ok.Load() + l.failed.Load()
			proctest.Eventually(t, 10*time.Second, "25 more requests", func() bool { return l.ok.Load()+l.failed.Load() >= sent+25 })
			pool := []string{"green", "blue"}[i%2]
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			err := sw.sw.SwitchLive(ctx, pool)
			calls[pool] = append(calls[pool], time.Since(start))
			cancel()
			if err != nil {
				t.Fatalf("%s: switch to %s: %v", sw.name, pool, err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for version() != pool {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no answer from %s 5s after the switch", sw.name, pool)
				}
			}
			seen[pool] = append(seen[pool], time.Since(start))
			for j := range 20 {
				if v := version(); v != pool {
					t.Fatalf("%s: request %d after the switch to %s answered %s", sw.name, j, pool, v)
				}
			}
		}
		l.finish()
		for _, dir := range []struct{ pool, label string }{{"green", "switch blue → green"}, {"blue", "switch back green → blue"}} {
			c, s := calls[dir.pool], seen[dir.pool]
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", sw.name, dir.label,
				median(c), slices.Max(c).Round(10*time.Microsecond), median(s), slices.Max(s).Round(10*time.Microsecond)))
		}
		rows = append(rows, fmt.Sprintf("| %s | failed GETs over the 20 switches | %d of %d | | | |", sw.name, l.failed.Load(), l.ok.Load()+l.failed.Load()))
	}
	fmt.Println("| balancer | direction | switch call, median | max | call → every new request on the new pool, median | max |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Println(r)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Microsecond)
}

// zerodownSwitcher is zerodown lb with pools blue and green, a live
// listener routed to blue and a preview one to green.
func zerodownSwitcher(t *testing.T, blue, green string) switcher {
	dir := t.TempDir()
	listen, preview, admin := proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := fmt.Sprintf(`listeners:
  - { name: web, address: %s, routes: [ { pool: blue } ] }
  - { name: preview, address: %s, routes: [ { pool: green } ] }
admin: { address: %s, token_file: %s }
state_file: %s
pools:
  blue: { targets: [%q], health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 } }
  green: { targets: [%q], health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 } }
`, listen, preview, admin, filepath.Join(dir, "admin.token"), filepath.Join(dir, "state.json"), blue, green)
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lbf := &lbFixture{dir: dir, cfgPath: path, url: "http://" + listen, admin: "http://" + admin}
	lbf.run(t)
	for _, pool := range []string{"blue", "green"} {
		proctest.Eventually(t, 10*time.Second, pool+" healthy", func() bool {
			p, err := lbf.client.Pool(ctxFor(t, time.Second), pool)
			return err == nil && len(p.Targets) == 1 && p.Targets[0].State == "healthy"
		})
	}
	return switcher{name: "zerodown lb (admin API)", front: lbf.url, sw: lbf.client.BlueGreen("blue", "green")}
}

// haproxySwitcher is HAProxy with backends blue and green chosen by a
// map's live and preview entries.
func haproxySwitcher(t *testing.T, blue, green string) switcher {
	bin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	dir := t.TempDir()
	front, preview, stats := proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	mapFile := filepath.Join(dir, "bluegreen.map")
	if err := os.WriteFile(mapFile, []byte("live blue\npreview green\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := haproxyHead(stats) + fmt.Sprintf(`frontend web
    bind %s
    use_backend %%[str(live),map(%s)]
frontend preview
    bind %s
    use_backend %%[str(preview),map(%s)]
backend blue
    option httpchk GET /healthz
    server b %s check inter 100ms
backend green
    option httpchk GET /healthz
    server g %s check inter 100ms
`, front, mapFile, preview, mapFile, blue, green)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", bin, "-db", "-f", path)
	proctest.WaitListening(t, stats, 10*time.Second)
	sw, err := haproxy.NewMapSwitcher(stats, mapFile, [2]string{"blue", "green"})
	if err != nil {
		t.Fatal(err)
	}
	return switcher{name: "HAProxy 2.6 (`set map` + map file)", front: "http://" + front, sw: sw}
}
