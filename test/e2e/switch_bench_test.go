package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb/haproxy"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/proxy"
)

// switcher switches a front between a blue and a green pool.
type switcher struct {
	name  string
	front string
	to    func(t *testing.T, pool string)
}

// TestSwitchBenchmark switches a front from blue to green and back, ten
// times each way, under 100 GET/s, through `zerodown lb switch` and
// through HAProxy's `set map` on a use_backend map (the way HAProxy users
// switch backends at run time), and prints per balancer the time of a
// switch call, the time from the call until a request answers from the
// new pool, and failed requests. bench/switch.sh runs it; skipped
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
		var calls, seen []time.Duration
		for i := range 20 {
			// Each switch after 25 more requests of the load, so every
			// switch happens under it.
			sent := l.ok.Load() + l.failed.Load()
			proctest.Eventually(t, 10*time.Second, "25 more requests", func() bool { return l.ok.Load()+l.failed.Load() >= sent+25 })
			pool := []string{"green", "blue"}[i%2]
			start := time.Now()
			sw.to(t, pool)
			calls = append(calls, time.Since(start))
			deadline := time.Now().Add(5 * time.Second)
			for version() != pool {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no answer from %s 5s after the switch", sw.name, pool)
				}
			}
			seen = append(seen, time.Since(start))
		}
		l.finish()
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %d of %d |", sw.name,
			median(calls), slices.Max(calls).Round(10*time.Microsecond), median(seen), slices.Max(seen).Round(10*time.Microsecond),
			l.failed.Load(), l.ok.Load()+l.failed.Load()))
	}
	fmt.Println("| balancer | switch call, median | max | call → first answer from the new pool, median | max | failed GETs |")
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

// zerodownSwitcher is zerodown lb with pools blue and green, switched by
// the CLI as a person or a script would.
func zerodownSwitcher(t *testing.T, blue, green string) switcher {
	dir := t.TempDir()
	listen, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := fmt.Sprintf(`listeners: [ { name: web, address: %s, routes: [ { pool: blue } ] } ]
admin: { address: %s, token_file: %s }
state_file: %s
pools:
  blue: { targets: [%q], health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 } }
  green: { targets: [%q], health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 } }
`, listen, admin, filepath.Join(dir, "admin.token"), filepath.Join(dir, "state.json"), blue, green)
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lbf := &lbFixture{dir: dir, cfgPath: path, url: "http://" + listen, admin: "http://" + admin}
	lbf.run(t)
	// The admin API from Go, as HAProxy's Runtime API is driven below:
	// what a deploy does (the CLI adds a process start).
	return switcher{name: "zerodown lb (`POST /v1/switch`)", front: lbf.url, to: func(t *testing.T, pool string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := lbf.client.Switch(ctx, proxy.SwitchRequest{From: "blue", To: pool}); err != nil {
			t.Fatalf("switch: %v", err)
		}
	}}
}

// haproxySwitcher is HAProxy with backends blue and green chosen by a map,
// switched with `set map` over the Runtime API.
func haproxySwitcher(t *testing.T, blue, green string) switcher {
	bin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	dir := t.TempDir()
	front, stats := proctest.FreeAddr(t), proctest.FreeAddr(t)
	mapFile := filepath.Join(dir, "live.map")
	if err := os.WriteFile(mapFile, []byte("app blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global
    stats socket ipv4@%s level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend web
    bind %s
    use_backend %%[str(app),map(%s,blue)]
backend blue
    option httpchk GET /healthz
    server b %s check inter 100ms
backend green
    option httpchk GET /healthz
    server g %s check inter 100ms
`, stats, front, mapFile, blue, green)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", bin, "-db", "-f", path)
	proctest.WaitListening(t, stats, 10*time.Second)
	rt, err := haproxy.NewRuntime(stats)
	if err != nil {
		t.Fatal(err)
	}
	return switcher{name: "HAProxy 2.6 (`set map` on the Runtime API)", front: "http://" + front, to: func(t *testing.T, pool string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := rt.Command(ctx, "set map "+mapFile+" app "+pool)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("set map: %q %v", out, err)
		}
	}}
}
