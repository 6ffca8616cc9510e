package nginx

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/lbtest"
	"github.com/zerodown/zerodown/internal/proctest"
)

// backend is an app behind nginx: / answers its name, /slow waits for
// release, /healthz answers 200 or, when sick, 503.
type backend struct {
	name    string
	addr    string
	sick    atomic.Bool
	inSlow  atomic.Int32
	release chan struct{}
	once    sync.Once
}

func newBackend(t *testing.T, name string) *backend {
	be := &backend{name: name, release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			if be.sick.Load() {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
		case "/slow":
			be.inSlow.Add(1)
			select {
			case <-be.release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, be.name)
	}))
	t.Cleanup(srv.Close)
	// Registered after srv.Close, so it runs before: Close waits for the
	// slow requests.
	t.Cleanup(be.releaseSlow)
	be.addr = strings.TrimPrefix(srv.URL, "http://")
	return be
}

func (be *backend) releaseSlow() { be.once.Do(func() { close(be.release) }) }

// site is nginx started by a test in front of backends.
type site struct {
	dir   string
	url   string
	cfg   Config
	nginx *proctest.Proc
}

// nginxCommand is nginx with the test's prefix, configuration and error
// log, followed by args.
func nginxCommand(bin, dir string, args ...string) []string {
	return append([]string{bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}, args...)
}

// writeSite writes nginx.conf and upstream.conf into a new directory and
// returns the site's Config; main goes into nginx.conf's main context.
func writeSite(t *testing.T, upstream, main string, targets ...*backend) *site {
	t.Helper()
	bin := proctest.NeedProgram(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	listen := proctest.FreeAddr(t)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(lbtest.NginxConf(dir, listen, main, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "upstream.conf")
	if err := os.WriteFile(file, []byte(upstream), 0o640); err != nil {
		t.Fatal(err)
	}
	s := &site{dir: dir, url: "http://" + listen, cfg: Config{
		UpstreamFile: file,
		Upstream:     "app",
		Test:         nginxCommand(bin, dir, "-t"),
		Reload:       nginxCommand(bin, dir, "-s", "reload"),
		PidFile:      filepath.Join(dir, "nginx.pid"),
		HealthPath:   "/healthz",
		// Short, so a sick backend's test does not wait for long.
		HealthTimeout: time.Second,
	}}
	for _, be := range targets {
		s.cfg.Targets = append(s.cfg.Targets, be.addr)
	}
	return s
}

// startSite runs nginx in the foreground and waits until it answers
// with both workers running.
func startSite(t *testing.T, upstream string, targets ...*backend) (*site, *Balancer) {
	t.Helper()
	s := writeSite(t, upstream, "", targets...)
	bin := s.cfg.Test[0]
	s.nginx = proctest.Start(t, "nginx", bin, nginxCommand(bin, s.dir, "-g", "daemon off;")[1:]...)
	t.Cleanup(func() {
		// proctest's SIGKILL would stop the master alone, and its workers
		// would run on holding the output pipe; on SIGTERM nginx stops them.
		s.nginx.Signal(syscall.SIGTERM)
		s.nginx.Wait(t, 10*time.Second)
	})
	b, err := New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "nginx's two workers", func() bool {
		_, ws, err := b.workers()
		return err == nil && len(ws) == 2
	})
	proctest.WaitListening(t, strings.TrimPrefix(s.url, "http://"), 10*time.Second)
	return s, b
}

// upstreamOf writes the upstream block: one server line per backend, with
// its parameters.
func upstreamOf(servers ...string) string {
	return "upstream app {\n    server " + strings.Join(servers, ";\n    server ") + ";\n}\n"
}

// client opens a connection per request: a reused connection that an old
// worker closes at a reload is the client's retry to make, not what these
// tests are about.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// get fetches url and returns "STATUS BODY" or the error.
func get(url string) string {
	resp, err := client.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A detach while a slow request is in flight on the server: the server is
// draining (the old worker holding the request still runs), new requests
// go to the other server, the slow request completes, then the server is
// unused. A driver that restarted mid-drain, with no record of the
// workers, tells the same from their titles.
func TestDetachDrainsInFlightRequest(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	s, bal := startSite(t, upstreamOf(a.addr, b.addr+" down"), a, b)
	if tg := lbtest.Target(t, bal, a.addr); tg.State != lb.StateHealthy || tg.Weight != 1 {
		t.Fatalf("%s at the start: %+v", a.addr, tg)
	}
	if tg := lbtest.Target(t, bal, b.addr); tg.State != lb.StateUnused {
		t.Fatalf("%s (down) at the start: %+v", b.addr, tg)
	}

	slow := make(chan string, 1)
	go func() { slow <- get(s.url + "/slow") }()
	proctest.Eventually(t, 5*time.Second, "the slow request on a", func() bool { return a.inSlow.Load() == 1 })

	if err := bal.Attach(ctxFor(t, 10*time.Second), b.addr); err != nil {
		t.Fatal(err)
	}
	if tg := lbtest.Target(t, bal, b.addr); tg.State != lb.StateHealthy {
		t.Fatalf("%s after attach: %+v", b.addr, tg)
	}
	if err := bal.Detach(ctxFor(t, 10*time.Second), a.addr); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.cfg.UpstreamFile); !strings.Contains(got, "server "+a.addr+" down;\n") || !strings.Contains(got, "server "+b.addr+";\n") {
		t.Fatalf("the file after detach:\n%s", got)
	}
	restarted, err := New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, bb := range map[string]*Balancer{"the driver": bal, "a restarted driver": restarted} {
		tg := lbtest.Target(t, bb, a.addr)
		if tg.State != lb.StateDraining || !strings.Contains(tg.Reason, "of the previous configuration") || !strings.Contains(tg.Reason, "still running") {
			t.Fatalf("%s: %s with a request in flight: %+v", name, a.addr, tg)
		}
	}
	for i := range 20 {
		if got := get(s.url + "/"); got != "200 b" {
			t.Fatalf("request %d after the detach: %s, want 200 b", i, got)
		}
	}
	if tg := lbtest.Target(t, bal, a.addr); tg.State != lb.StateDraining {
		t.Fatalf("%s still holding a request: %+v", a.addr, tg)
	}

	a.releaseSlow()
	if got := <-slow; got != "200 a" {
		t.Fatalf("the request in flight at the detach: %s", got)
	}
	for name, bb := range map[string]*Balancer{"the driver": bal, "a restarted driver": restarted} {
		proctest.Eventually(t, 10*time.Second, name+": "+a.addr+" unused once drained", func() bool {
			return lbtest.Target(t, bb, a.addr).State == lb.StateUnused
		})
	}
	// A later reload while a worker holds a request to b: the worker that
	// shuts down had a down already, so a stays unused.
	slow = make(chan string, 1)
	go func() { slow <- get(s.url + "/slow") }()
	proctest.Eventually(t, 5*time.Second, "the slow request on b", func() bool { return b.inSlow.Load() == 1 })
	if err := bal.SetWeight(ctxFor(t, 10*time.Second), b.addr, 2); err != nil {
		t.Fatal(err)
	}
	if tg := lbtest.Target(t, bal, a.addr); tg.State != lb.StateUnused {
		t.Fatalf("%s, drained, after another reload: %+v", a.addr, tg)
	}
	b.releaseSlow()
	if got := <-slow; got != "200 b" {
		t.Fatalf("the request in flight on b at the reload: %s", got)
	}

	// Idempotent: detaching again changes and reloads nothing.
	before, _ := os.Stat(s.cfg.UpstreamFile)
	if err := bal.Detach(ctxFor(t, 5*time.Second), a.addr); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(s.cfg.UpstreamFile); !os.SameFile(before, after) || after.Mode().Perm() != 0o640 {
		t.Fatalf("a second detach rewrote the file (or lost its mode 0640: %v)", after.Mode())
	}
}

// Requests under steady load while each server in turn is detached and
// attached again: none fails, and none sent after a detach returned (and
// before the attach began) reaches the detached server.
func TestNoFailedRequestDuringChanges(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	s, bal := startSite(t, upstreamOf(a.addr, b.addr), a, b)

	type result struct {
		start, end time.Time
		got        string
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := result{start: time.Now()}
				r.got = get(s.url + "/")
				r.end = time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(results)
	}

	type window struct {
		addr, name string
		from, to   time.Time
	}
	var windows []window
	for _, be := range []*backend{a, b} {
		if err := bal.Detach(ctxFor(t, 10*time.Second), be.addr); err != nil {
			t.Fatal(err)
		}
		from := time.Now()
		proctest.Eventually(t, 10*time.Second, be.addr+" unused", func() bool {
			return lbtest.Target(t, bal, be.addr).State == lb.StateUnused
		})
		n := count()
		proctest.Eventually(t, 10*time.Second, "requests while "+be.name+" is detached", func() bool { return count() > n+20 })
		to := time.Now()
		if err := bal.Attach(ctxFor(t, 10*time.Second), be.addr); err != nil {
			t.Fatal(err)
		}
		windows = append(windows, window{be.addr, be.name, from, to})
		proctest.Eventually(t, 10*time.Second, be.addr+" healthy", func() bool {
			return lbtest.Target(t, bal, be.addr).State == lb.StateHealthy
		})
	}
	close(stop)
	wg.Wait()

	seen := map[string]int{}
	for _, r := range results {
		seen[r.got]++
		for _, w := range windows {
			if r.start.After(w.from) && r.end.Before(w.to) && r.got == "200 "+w.name {
				t.Errorf("a request sent while %s was detached reached it", w.addr)
			}
		}
	}
	if len(seen) != 2 || seen["200 a"] == 0 || seen["200 b"] == 0 {
		t.Fatalf("answers %v: want only 200 a and 200 b", seen)
	}
	t.Logf("%d requests, answers %v", len(results), seen)
}

// Every way nginx can refuse a change leaves the previous file in place,
// byte for byte, and the error says which command said what.
func TestRefusedChangeRestoresFile(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	s, _ := startSite(t, upstreamOf(a.addr, b.addr), a, b)
	fail := func(msg string) []string { return []string{"sh", "-c", "echo " + msg + " >&2; exit 1"} }
	for _, tc := range []struct {
		name string
		// file is the previous content, as a person left it.
		file       string
		edit       func(*Config)
		reloadWait time.Duration
		want       []string
	}{
		{
			name: "nginx -t refuses a parameter",
			file: "# edited by hand\n" + upstreamOf(a.addr, b.addr+" bogus=1"),
			want: []string{"detach " + a.addr, "-t` rejected the new " + s.cfg.UpstreamFile, `invalid parameter "bogus=1"`, "test failed"},
		},
		{
			name: "the test command fails",
			file: upstreamOf(a.addr, b.addr),
			edit: func(c *Config) { c.Test = fail("'nginx: [emerg] refused by the test'") },
			want: []string{"exit status 1", "nginx: [emerg] refused by the test"},
		},
		{
			name: "the reload command fails",
			file: upstreamOf(a.addr, b.addr),
			edit: func(c *Config) { c.Reload = fail("'nginx: [error] reload refused'") },
			want: []string{"detach " + a.addr + ": `sh -c echo", "failed: exit status 1: nginx: [error] reload refused"},
		},
		{
			name: "the pid file names a process that is not nginx's master",
			file: upstreamOf(a.addr, b.addr),
			edit: func(c *Config) {
				c.PidFile = filepath.Join(t.TempDir(), "stale.pid")
				if err := os.WriteFile(c.PidFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"stale.pid names pid", "not a running nginx master"},
		},
		{
			name:       "nginx keeps the old workers",
			file:       upstreamOf(a.addr, b.addr),
			edit:       func(c *Config) { c.Reload = []string{"true"} },
			reloadWait: 300 * time.Millisecond,
			want:       []string{"from " + s.cfg.PidFile, "0 workers with the new configuration and 2 of the old one", "its error log says why"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(s.cfg.UpstreamFile, []byte(tc.file), 0o640); err != nil {
				t.Fatal(err)
			}
			cfg := s.cfg
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			bal, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reloadWait != 0 {
				bal.reloadWait = tc.reloadWait
			}
			err = bal.Detach(ctxFor(t, 10*time.Second), a.addr)
			if err == nil {
				t.Fatal("the detach succeeded")
			}
			t.Log(err)
			for _, w := range append(tc.want, "the previous "+s.cfg.UpstreamFile+" is back in place") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if got := readFile(t, s.cfg.UpstreamFile); got != tc.file {
				t.Fatalf("the file is not the previous one:\n%s", got)
			}
			if st, _ := os.Stat(s.cfg.UpstreamFile); st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
			}
		})
	}
	if got := get(s.url + "/"); got != "200 a" && got != "200 b" {
		t.Fatalf("nginx after the refused changes: %s", got)
	}
}

// Attach refuses an app whose health check fails and leaves the file as
// it was; an attached server failing its check is unhealthy, with the
// answer as reason. Weights are written as weight=, concurrent changes
// are all kept.
func TestAttachHealthAndWeights(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	s, bal := startSite(t, upstreamOf(a.addr, b.addr, c.addr+" down"), a, b, c)
	c.sick.Store(true)
	prev := readFile(t, s.cfg.UpstreamFile)
	err := bal.Attach(ctxFor(t, 700*time.Millisecond), c.addr)
	if err == nil || !strings.Contains(err.Error(), c.addr+" not attached to nginx upstream app in "+s.cfg.UpstreamFile) ||
		!strings.Contains(err.Error(), "GET http://"+c.addr+"/healthz: 503 Service Unavailable") {
		t.Fatalf("attach of a sick app: %v", err)
	}
	if got := readFile(t, s.cfg.UpstreamFile); got != prev {
		t.Fatalf("a refused attach changed the file:\n%s", got)
	}

	// Attaching a server that is attached changes nothing.
	before, _ := os.Stat(s.cfg.UpstreamFile)
	if err := bal.Attach(ctxFor(t, 5*time.Second), a.addr); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(s.cfg.UpstreamFile); !os.SameFile(before, after) {
		t.Fatal("attaching an attached server rewrote the file")
	}

	b.sick.Store(true)
	tg := lbtest.Target(t, bal, b.addr)
	want := "GET http://" + b.addr + "/healthz: 503 Service Unavailable (zerodown checks health itself: open-source nginx has no active health checks)"
	if tg.State != lb.StateUnhealthy || tg.Reason != want {
		t.Fatalf("a sick attached server: %+v\nwant reason %q", tg, want)
	}
	b.sick.Store(false)
	c.sick.Store(false)

	if err := bal.SetWeight(ctxFor(t, 10*time.Second), a.addr, 3); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.cfg.UpstreamFile); !strings.Contains(got, "server "+a.addr+" weight=3;\n") {
		t.Fatalf("the file after SetWeight 3:\n%s", got)
	}
	if tg := lbtest.Target(t, bal, a.addr); tg.Weight != 3 || tg.State != lb.StateHealthy {
		t.Fatalf("%s after SetWeight 3: %+v", a.addr, tg)
	}
	if err := bal.SetWeight(ctxFor(t, 5*time.Second), a.addr, 0); err == nil || !strings.Contains(err.Error(), "nginx takes weights from 1 up") {
		t.Fatalf("weight 0: %v", err)
	}

	// Two changes at once, as the engine may make them: both land.
	errs := make(chan error, 2)
	go func() { errs <- bal.Detach(ctxFor(t, 10*time.Second), a.addr) }()
	go func() { errs <- bal.Attach(ctxFor(t, 10*time.Second), c.addr) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := readFile(t, s.cfg.UpstreamFile)
	if !strings.Contains(got, "server "+a.addr+" weight=3 down;\n") || !strings.Contains(got, "server "+c.addr+";\n") || !strings.HasPrefix(got, header) {
		t.Fatalf("the file after a concurrent detach and attach:\n%s", got)
	}
	for i := range 10 {
		if got := get(s.url + "/"); got != "200 b" && got != "200 c" {
			t.Fatalf("request %d: %s, want b or c", i, got)
		}
	}
}

// DrainBound and Advice read worker_shutdown_timeout from `nginx -T`.
func TestShutdownTimeoutFromNginx(t *testing.T) {
	for _, tc := range []struct {
		name, main string
		want       time.Duration
		advice     int
	}{
		{"set", "worker_shutdown_timeout 1m30s;", 90 * time.Second, 1},
		{"milliseconds", "worker_shutdown_timeout 2500ms;", 2500 * time.Millisecond, 1},
		{"unset", "", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := writeSite(t, upstreamOf("127.0.0.1:1"), tc.main)
			bal, err := New(s.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := bal.DrainBound(ctxFor(t, 10*time.Second))
			if err != nil || got != tc.want {
				t.Fatalf("DrainBound = %s, %v; want %s", got, err, tc.want)
			}
			adv, err := bal.Advice(ctxFor(t, 10*time.Second))
			if err != nil || len(adv) != tc.advice {
				t.Fatalf("Advice = %q, %v; want %d lines", adv, err, tc.advice)
			}
			if !strings.Contains(adv[len(adv)-1], "zerodown checks GET http://ADDR/healthz on every server itself") {
				t.Errorf("last advice %q", adv[len(adv)-1])
			}
			if tc.advice == 2 && !strings.Contains(adv[0], "`worker_shutdown_timeout 30s;` in the main context of nginx.conf") {
				t.Errorf("advice %q lacks the fix", adv[0])
			}
		})
	}
	s := writeSite(t, "upstream app { server 127.0.0.1:1 bogus; }", "")
	bal, err := New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bal.DrainBound(ctxFor(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), `invalid parameter "bogus"`) {
		t.Fatalf("DrainBound with a broken configuration: %v", err)
	}
	s.cfg.Test = []string{"nginx-check"}
	bal, _ = New(s.cfg)
	if _, err := bal.DrainBound(ctxFor(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), "no -t to replace with -T") {
		t.Fatalf("DrainBound with a test command without -t: %v", err)
	}
}
