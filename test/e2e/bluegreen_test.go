package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb/awsfake"
	"github.com/zerodown/zerodown/internal/proctest"
)

// bgFleet is a blue-green environment: agents in pool blue and pool green
// behind a balancer with a live front and a preview front.
type bgFleet struct {
	t              *testing.T
	dir            string
	blue, green    []*agentFixture
	lbYAML         string
	front, preview string
	// names are the pools' names in the balancer (ALB: target group
	// ARNs); by default "blue" and "green".
	names map[string]string
}

// pool is the balancer's name of pool blue or green.
func (f *bgFleet) pool(color string) string {
	if n, ok := f.names[color]; ok {
		return n
	}
	return color
}

func startBGAgents(t *testing.T, perPool int) *bgFleet {
	f := &bgFleet{t: t, dir: t.TempDir()}
	for range perPool {
		f.blue = append(f.blue, startAgent(t, true))
		f.green = append(f.green, startAgent(t, true))
	}
	return f
}

func targetOf(a *agentFixture) string { return fmt.Sprintf("127.0.0.1:%d", a.port) }

// targetsOf is the agents' targets as a YAML flow list's items.
func targetsOf(as []*agentFixture) string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%q", targetOf(a)))
	}
	return strings.Join(out, ", ")
}

// config writes zerodown.yaml with the blue-green strategy; extra goes
// under blue_green.
func (f *bgFleet) config(name, extra string) string {
	f.t.Helper()
	var hosts strings.Builder
	for pool, as := range map[string][]*agentFixture{"blue": f.blue, "green": f.green} {
		for i, a := range as {
			fmt.Fprintf(&hosts, "      - { name: %s-%d, pool: %q, agent: %q, target: %q, server: %s%d, token_file: %q }\n",
				pool, i+1, f.pool(pool), a.url, targetOf(a), pool, i+1, filepath.Join(a.root, "agent.token"))
		}
	}
	cfg := fmt.Sprintf(appYAML, "", filepath.Join(f.dir, "state.db")) + fmt.Sprintf(`environments:
  staging:
    lb: %s
    hosts:
%s    strategy:
      blue_green:
        pools: [%q, %q]
        preview: %s/
        preview_load: { rate: 20, duration: 1s }
%s`, f.lbYAML, hosts.String(), f.pool("blue"), f.pool("green"), f.preview, extra)
	if !strings.Contains(f.lbYAML, "haproxy") {
		// server: names HAProxy's servers; zerodown lb has none.
		cfg = regexp.MustCompile(`, server: \w+`).ReplaceAllString(cfg, "")
	}
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// serves checks that the live front answers version.
func (f *bgFleet) serves(version string) {
	f.t.Helper()
	for i := range 10 {
		if v, err := appVersion(f.front); err != nil || v != version {
			f.t.Fatalf("request %d to the live front: %q (%v), want %s", i, v, err, version)
		}
	}
}

// straddler is one 2-second request sent by curl.
type straddler struct {
	start, end time.Time
	version    string
	status     string
	err        string
}

// straddlers sends a 2-second GET through curl every 200ms until stop
// (at most 300).
type straddlers struct {
	mu   sync.Mutex
	got  []straddler
	wg   sync.WaitGroup
	stop chan struct{}
}

func startStraddlers(t *testing.T, url string) *straddlers {
	curl := proctest.NeedProgram(t, "curl", "/usr/bin/curl")
	s := &straddlers{stop: make(chan struct{})}
	tick := time.NewTicker(200 * time.Millisecond)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer tick.Stop()
		for range 300 {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				one := straddler{start: time.Now()}
				b, err := exec.Command(curl, "-sS", "--max-time", "15", "-D", "-", "-o", "/dev/null", url+"/?sleep=2s").CombinedOutput()
				one.end = time.Now()
				if err != nil {
					one.err = fmt.Sprintf("curl: %v: %s", err, b)
				}
				for _, line := range strings.Split(string(b), "\n") {
					line = strings.TrimSpace(line)
					if strings.HasPrefix(line, "HTTP/") {
						one.status = line
					}
					if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "x-version") {
						one.version = strings.TrimSpace(v)
					}
				}
				s.mu.Lock()
				s.got = append(s.got, one)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

// doneSince counts the requests sent after t that have their answer.
func (s *straddlers) doneSince(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, one := range s.got {
		if one.start.After(t) {
			n++
		}
	}
	return n
}

// finish stops sending and returns every answer.
func (s *straddlers) finish() []straddler {
	close(s.stop)
	s.wg.Wait()
	return s.got
}

// switchWindow reads from zerodown's log output when the switch was
// called and when it returned.
var (
	switchingLine = regexp.MustCompile(`(?m)^(\d\d:\d\d:\d\d\.\d{3}) run +switching live traffic (?:back )?from pool (\S+) to pool (\S+)`)
	switchedLine  = regexp.MustCompile(`(?m)^(\d\d:\d\d:\d\d\.\d{3}) run +live traffic switched (?:back )?from pool (\S+) to pool (\S+) in ([0-9.]+[µm]?s)`)
)

// clock turns an hh:mm:ss.mmm of today's log into a time.
func clock(t *testing.T, s string) time.Time {
	t.Helper()
	c, err := time.ParseInLocation("15:04:05.000", s, time.Local)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return time.Date(now.Year(), now.Month(), now.Day(), c.Hour(), c.Minute(), c.Second(), c.Nanosecond(), time.Local)
}

// checkStraddlers asserts that every 2-second request under way at the
// switch [from, to] was answered 200 by the old version, that there were
// some, and that every one sent after it reached the new version.
func checkStraddlers(t *testing.T, got []straddler, from, to time.Time, oldV, newV string) {
	t.Helper()
	// Log times have millisecond precision: a margin keeps a request
	// sent in the same millisecond out of both sets.
	const margin = 5 * time.Millisecond
	over, after := 0, 0
	for _, s := range got {
		switch {
		case s.err != "" || !strings.Contains(s.status, " 200"):
			t.Errorf("a 2s request sent at %s failed: %s %s", s.start.Format("15:04:05.000"), s.status, s.err)
		// The app holds each request 2s: one that ended 2s after a time
		// was there by then, whenever curl's process got to send it.
		case s.end.Add(-2*time.Second).Before(from.Add(-margin)) && s.end.After(to.Add(margin)):
			over++
			if s.version != oldV {
				t.Errorf("a 2s request in flight at the switch (sent %s) was answered by %s, want %s (the old pool)", s.start.Format("15:04:05.000"), s.version, oldV)
			}
		case s.start.After(to.Add(margin)):
			after++
			if s.version != newV {
				t.Errorf("a 2s request sent after the switch (%s) was answered by %s, want %s", s.start.Format("15:04:05.000"), s.version, newV)
			}
		}
	}
	if over == 0 {
		t.Errorf("no 2s request was in flight across the switch (%d sent)", len(got))
	}
	t.Logf("%d requests of 2s straddled the switch on %s; %d sent after it reached %s", over, oldV, after, newV)
}

// switchOf finds the switch in a run's log.
func switchOf(t *testing.T, log string) (from, to time.Time, took string) {
	t.Helper()
	a, b := switchingLine.FindStringSubmatch(log), switchedLine.FindStringSubmatch(log)
	if b == nil {
		t.Fatalf("no switch in the run's log:\n%s", log)
	}
	to = clock(t, b[1])
	from = to
	if a != nil {
		from = clock(t, a[1])
	}
	return from, to, b[4]
}

// blueGreenThrough is the blue-green test every switching driver passes:
// a first deploy (green, from nothing); v2 onto blue under GET and slow
// POST load, with 2-second requests across the switch finishing on green;
// `zerodown rollback staging` switching back within the window, as
// cleanly; and, when full, v3 and a rollback past the window refused
// (which the drivers do not change).
func blueGreenThrough(t *testing.T, f *bgFleet, full bool) {
	cfg := f.config("zerodown.yaml", "")
	art := helloTarGz(t)
	if out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v1", "--artifact", art, "-c", cfg, "-o", "log"); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.serves("v1")
	for _, a := range f.green {
		a.serves("v1")
	}

	out, err := exec.Command(bin.zerodown, "plan", "staging", "-c", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "switch: { from: ") || !strings.Contains(string(out), "to: "+yamlQuoted(f.pool("blue"))+" }") || !strings.Contains(string(out), "preview-load:") {
		t.Fatalf("zerodown plan: %v\n%s", err, out)
	}

	l := startLoad(f.front, 100, 20000, 3*time.Minute)
	posts := startSlowPosts(f.front, 3, 3*time.Minute)
	var slow *straddlers
	log, code := zerodownWhile(t, func(out *proctest.Buffer) {
		// The 2s requests start once the new pool is checked through
		// the preview, so some are under way at the switch.
		proctest.Eventually(t, 2*time.Minute, "the preview stage", func() bool { return strings.Contains(out.String(), "stage preview-") })
		slow = startStraddlers(t, f.front)
	}, "deploy", "staging", "--version", "v2", "--artifact", art, "-c", cfg, "-o", "log")
	ended := time.Now()
	proctest.Eventually(t, 10*time.Second, "three 2s requests sent after the run", func() bool { return slow.doneSince(ended) >= 3 })
	got := slow.finish()
	l.finish()
	postReport := posts.finish()
	if code != 0 {
		t.Fatalf("deploy v2: exit %d\n%s", code, log)
	}
	from, to, took := switchOf(t, log)
	t.Logf("switch to blue took %s (zerodown's own measure)", took)
	checkStraddlers(t, got, from, to, "v1", "v2")
	f.serves("v2")
	for _, a := range f.green {
		a.serves("v1") // the old pool keeps running
	}
	if l.failed.Load() > 0 || posts.failed.Load() > 0 || posts.ok.Load() == 0 {
		t.Fatalf("requests during the blue-green deploy of v2: GET/POST %s; slow POST %s\n%s", l.report(), postReport, log)
	}

	// Switch back within the window, under the same load.
	l = startLoad(f.front, 100, 20000, 3*time.Minute)
	posts = startSlowPosts(f.front, 3, 3*time.Minute)
	slow = startStraddlers(t, f.front)
	begun := time.Now()
	proctest.Eventually(t, 10*time.Second, "2s requests under way on blue", func() bool { return slow.doneSince(begun) >= 1 })
	start := time.Now()
	log, code = zerodownWhile(t, nil, "rollback", "staging", "-c", cfg, "-o", "log")
	elapsed := time.Since(start)
	proctest.Eventually(t, 10*time.Second, "three 2s requests sent after the rollback", func() bool { return slow.doneSince(start.Add(elapsed)) >= 3 })
	got = slow.finish()
	l.finish()
	postReport = posts.finish()
	if code != 0 {
		t.Fatalf("rollback staging: exit %d\n%s", code, log)
	}
	from, to, took = switchOf(t, log)
	t.Logf("switch back took %s (zerodown's own measure); the whole `zerodown rollback` %s", took, elapsed.Round(time.Millisecond))
	if to.Sub(from) > time.Second {
		t.Errorf("the switch back took %s, want under a second", to.Sub(from))
	}
	checkStraddlers(t, got, from, to, "v2", "v1")
	f.serves("v1")
	if l.failed.Load() > 0 || posts.failed.Load() > 0 {
		t.Fatalf("requests during the switch back: GET/POST %s; slow POST %s\n%s", l.report(), postReport, log)
	}

	if !full {
		return
	}
	// v3 goes to blue again (green is live); past the window, rollback
	// refuses to switch back to a pool it no longer vouches for.
	if out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v3", "--artifact", art, "-c", cfg, "-o", "log"); code != 0 {
		t.Fatalf("deploy v3: exit %d\n%s", code, out)
	}
	f.serves("v3")
	short := f.config("short-window.yaml", "        rollback_window: 1ms\n")
	out2, code := zerodownWhile(t, nil, "rollback", "staging", "-c", short, "-o", "log")
	if code != 2 || !strings.Contains(out2, "beyond its rollback_window of 1ms") {
		t.Fatalf("rollback past the window: exit %d, want 2 and the window named\n%s", code, out2)
	}
	// A refusal leaves the run as it was: asking again is refused again.
	if out2, code = zerodownWhile(t, nil, "rollback", "staging", "-c", short, "-o", "log"); code != 2 {
		t.Fatalf("a second rollback past the window: exit %d, want 2\n%s", code, out2)
	}
	f.serves("v3")
}

// TestBlueGreenBuiltin runs blue-green through zerodown lb: a live
// listener routed to pool blue, a preview listener routed to pool green,
// switched by its admin API.
func TestBlueGreenBuiltin(t *testing.T) {
	t.Parallel()
	f := startBGAgents(t, 2)
	live, preview, admin := proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	health := "health: { path: /healthz, interval: 100ms, timeout: 80ms, healthy_threshold: 2, unhealthy_threshold: 2 }"
	cfg := fmt.Sprintf(`listeners:
  - { name: web, address: %s, routes: [ { pool: blue } ] }
  - { name: preview, address: %s, routes: [ { pool: green } ] }
admin: { address: %s, token_file: %s }
state_file: %s
shutdown_timeout: 10s
pools:
  blue: { targets: [%s], %s, deregistration_delay: 20s }
  green: { targets: [%s], %s, deregistration_delay: 20s }
`, live, preview, admin, filepath.Join(f.dir, "admin.token"), filepath.Join(f.dir, "state.json"),
		targetsOf(f.blue), health, targetsOf(f.green), health)
	path := filepath.Join(f.dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lbf := &lbFixture{dir: f.dir, cfgPath: path, url: "http://" + live, admin: "http://" + admin}
	lbf.run(t)
	f.front, f.preview = lbf.url, "http://"+preview
	f.lbYAML = fmt.Sprintf("{ driver: builtin, admin: %q, token_file: %q }", lbf.admin, filepath.Join(f.dir, "admin.token"))
	blueGreenThrough(t, f, true)
}

// TestBlueGreenHAProxy runs blue-green through HAProxy: frontends choose
// backend blue or green through a map's live and preview entries, which
// zerodown sets with `set map` on the Runtime API and in the map file.
func TestBlueGreenHAProxy(t *testing.T) {
	t.Parallel()
	haproxyBin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	f := startBGAgents(t, 1)
	front, preview, stats := proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	mapFile := filepath.Join(f.dir, "bluegreen.map")
	if err := os.WriteFile(mapFile, []byte("# zerodown switches these\nlive blue\npreview green\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var backends strings.Builder
	for pool, as := range map[string][]*agentFixture{"blue": f.blue, "green": f.green} {
		fmt.Fprintf(&backends, "backend %s\n    option httpchk GET /healthz\n", pool)
		for i, a := range as {
			fmt.Fprintf(&backends, "    server %s%d %s check inter 100ms rise 2 fall 2\n", pool, i+1, targetOf(a))
		}
	}
	cfg := haproxyHead(stats) + fmt.Sprintf(`frontend web
    bind %s
    option idle-close-on-response
    use_backend %%[str(live),map(%s)]
frontend preview
    bind %s
    use_backend %%[str(preview),map(%s)]
%s`, front, mapFile, preview, mapFile, backends.String())
	cfgPath := filepath.Join(f.dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", haproxyBin, "-W", "-db", "-f", cfgPath)
	proctest.WaitListening(t, stats, 10*time.Second)
	f.front, f.preview = "http://"+front, "http://"+preview
	f.lbYAML = fmt.Sprintf("{ driver: haproxy, socket: %q, map: %q, check_inter: 100ms }", stats, mapFile)
	blueGreenThrough(t, f, true)
	// The map file follows the switches, so a reload keeps them: v3 is
	// live on blue.
	b, err := os.ReadFile(mapFile)
	if err != nil || !strings.Contains(string(b), "live blue\npreview green\n") || !strings.HasPrefix(string(b), "# zerodown") {
		t.Fatalf("the map file after the switches: %q %v", b, err)
	}
}

// yamlQuoted is s as the plan writes a pool's name: plain when it can be,
// else double-quoted.
func yamlQuoted(s string) string {
	if strings.ContainsAny(s, ":/ ") {
		return strconv.Quote(s)
	}
	return s
}

// TestBlueGreenALB runs blue-green through the AWS simulation: two target
// groups, a live listener forwarding to one and a preview listener to the
// other, switched with ModifyListener.
func TestBlueGreenALB(t *testing.T) {
	t.Parallel()
	f := startBGAgents(t, 1)
	fake := startAWSFake(t)
	s := awsTuned
	groups := map[string]*awsfake.Proxy{}
	for color, as := range map[string][]*agentFixture{"blue": f.blue, "green": f.green} {
		var registered []awsfake.Target
		for _, a := range as {
			registered = append(registered, awsfake.Target{ID: "127.0.0.1", Port: a.port})
		}
		px, err := fake.AddTargetGroup(awsfake.TargetGroup{Name: "web-" + color, TargetType: "ip", Protocol: "HTTP", Port: 8080,
			HealthCheckPath: "/healthz", Interval: s.interval, Timeout: s.timeout, HealthyThreshold: s.healthy,
			UnhealthyThreshold: s.unhealthy, DeregistrationDelay: s.draining, Registered: registered})
		if err != nil {
			t.Fatal(err)
		}
		groups[color] = px
	}
	live, err := fake.AddListener(awsfake.Listener{TargetGroupARN: groups["blue"].ARN()})
	if err != nil {
		t.Fatal(err)
	}
	preview, err := fake.AddListener(awsfake.Listener{TargetGroupARN: groups["green"].ARN()})
	if err != nil {
		t.Fatal(err)
	}
	f.names = map[string]string{"blue": groups["blue"].ARN(), "green": groups["green"].ARN()}
	f.front, f.preview = live.URL(), preview.URL()
	f.lbYAML = fmt.Sprintf("{ driver: aws-alb, listener: %q, preview_listener: %q, region: %s, endpoint: %q, poll_interval: 200ms }",
		live.ARN(), preview.ARN(), fake.Region(), fake.Endpoint())
	blueGreenThrough(t, f, false)
	// Switched back: live on green's group, the preview on blue's.
	if got := live.Forward(); got != groups["green"].ARN() {
		t.Fatalf("after the switch back the live listener forwards to %s, want green's group", got)
	}
	if got := preview.Forward(); got != groups["blue"].ARN() {
		t.Fatalf("after the switch back the preview listener forwards to %s, want blue's group", got)
	}
}

// TestBlueGreenNginx runs blue-green through nginx: upstreams blue and
// green in the upstream file zerodown owns, the live and preview servers
// passing to $zerodown_live and $zerodown_preview, which the switch file
// (zerodown's too) maps; a switch rewrites it and reloads nginx.
func TestBlueGreenNginx(t *testing.T) {
	t.Parallel()
	bin := proctest.NeedProgram(t, "nginx", "/usr/sbin/nginx")
	f := startBGAgents(t, 1)
	dir := filepath.Join(f.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	front, preview := proctest.FreeAddr(t), proctest.FreeAddr(t)
	upstream, switchFile := filepath.Join(dir, "upstream.conf"), filepath.Join(dir, "bluegreen.conf")
	// No client keep-alive: a reload closes the old workers' idle
	// keep-alive connections (docs/drivers.md).
	conf := fmt.Sprintf(`worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
worker_shutdown_timeout 10s;
events {}
http {
    access_log off;
    keepalive_timeout 0;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[2]s;
    include %[3]s;
    server { listen %[4]s; location / { proxy_pass http://$zerodown_live; } }
    server { listen %[5]s; location / { proxy_pass http://$zerodown_preview; } }
}
`, dir, upstream, switchFile, front, preview)
	var up strings.Builder
	for color, as := range map[string][]*agentFixture{"blue": f.blue, "green": f.green} {
		fmt.Fprintf(&up, "upstream %s {\n", color)
		for _, a := range as {
			fmt.Fprintf(&up, "    server %s;\n", targetOf(a))
		}
		up.WriteString("}\n")
	}
	for path, data := range map[string]string{
		filepath.Join(dir, "nginx.conf"): conf,
		upstream:                         up.String(),
		switchFile:                       "map $host $zerodown_live { default blue; }\nmap $host $zerodown_preview { default green; }\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}
	proctest.Start(t, "nginx", bin, append(base[1:], "-g", "daemon off;")...)
	proctest.WaitListening(t, front, 10*time.Second)
	f.front, f.preview = "http://"+front, "http://"+preview
	f.lbYAML = fmt.Sprintf("{ driver: nginx, upstream_file: %q, switch_file: %q, pid_file: %q, test: %s, reload: %s }",
		upstream, switchFile, filepath.Join(dir, "nginx.pid"), yamlList(append(base, "-t")), yamlList(append(base, "-s", "reload")))
	blueGreenThrough(t, f, false)
	b, err := os.ReadFile(switchFile)
	if err != nil || !strings.Contains(string(b), "$zerodown_live { default green; }") || !strings.Contains(string(b), "$zerodown_preview { default blue; }") {
		t.Fatalf("the switch file after the switch back (live on green): %q %v", b, err)
	}
}
