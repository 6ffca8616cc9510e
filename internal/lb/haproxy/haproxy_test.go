package haproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/lbtest"
	"github.com/zerodown/zerodown/internal/proctest"
)

// haproxyCfg is HAProxy on a TCP stats socket (%[1]s) and a frontend
// (%[2]s) whose backend app has the server lines %[3]s.
const haproxyCfg = `global
    stats socket ipv4@%[1]s level admin
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend web
    bind %[2]s
    default_backend app
backend app
    option httpchk GET /healthz
%[3]s`

// app is a backend that answers at once, or after ?sleep=D.
func app(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		_, _ = io.WriteString(w, "hello from "+name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// startHAProxy runs HAProxy in the foreground with servers web1 at a and
// web2 at b, checked every 50ms, and returns its frontend's URL and its
// stats socket.
func startHAProxy(t *testing.T, a, b string) (url, socket string) {
	t.Helper()
	return startHAProxyWith(t, fmt.Sprintf("    server web1 %s check inter 50ms rise 2 fall 2\n    server web2 %s check inter 50ms rise 2 fall 2\n", a, b))
}

// startHAProxyWith runs HAProxy with these server lines in backend app.
func startHAProxyWith(t *testing.T, servers string) (url, socket string) {
	t.Helper()
	bin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	front, stats := proctest.FreeAddr(t), proctest.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, fmt.Appendf(nil, haproxyCfg, stats, front, servers), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", bin, "-f", path, "-db")
	proctest.WaitListening(t, stats, 10*time.Second)
	return "http://" + front, stats
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The driver against a real HAProxy: both servers healthy, one detached
// with a request in flight drains (the request completes) and ends
// unused, gets no new request, then comes back healthy; weights are set.
func TestBalancerAgainstHAProxy(t *testing.T) {
	a, b := app(t, "a"), app(t, "b")
	url, socket := startHAProxy(t, a, b)
	bal, err := New(Config{Socket: socket, Backend: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{a, b} {
		proctest.Eventually(t, 10*time.Second, addr+" healthy in HAProxy", func() bool {
			return lbtest.Target(t, bal, addr).State == lb.StateHealthy
		})
	}

	// A long request on a, then a detach: draining with it in flight.
	if err := bal.SetWeight(ctxFor(t, 5*time.Second), b, 0); err != nil {
		t.Fatal(err)
	}
	if w := lbtest.Target(t, bal, b).Weight; w != 0 {
		t.Fatalf("weight of %s is %d after setting 0", b, w)
	}
	long := make(chan string, 1)
	go func() {
		resp, err := http.Get(url + "/?sleep=1s")
		if err != nil {
			long <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		long <- fmt.Sprintf("%d %s", resp.StatusCode, body)
	}()
	proctest.Eventually(t, 5*time.Second, "the long request in flight on "+a, func() bool {
		return lbtest.Target(t, bal, a).InFlight > 0
	})
	if err := bal.SetWeight(ctxFor(t, 5*time.Second), b, 1); err != nil {
		t.Fatal(err)
	}
	if err := bal.Detach(ctxFor(t, 5*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if tg := lbtest.Target(t, bal, a); tg.State != lb.StateDraining {
		t.Fatalf("right after detach %s is %+v, want draining", a, tg)
	}
	for i := 0; i < 20; i++ {
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello from b" {
			t.Fatalf("request %d after the detach answered %q, want b", i, body)
		}
	}
	if got := <-long; got != "200 hello from a" {
		t.Fatalf("the request in flight at the detach: %s", got)
	}
	proctest.Eventually(t, 5*time.Second, a+" unused once drained", func() bool {
		return lbtest.Target(t, bal, a).State == lb.StateUnused
	})

	if err := bal.Attach(ctxFor(t, 5*time.Second), a); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, a+" healthy again", func() bool {
		return lbtest.Target(t, bal, a).State == lb.StateHealthy
	})
	if _, err := bal.Counts(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestBalancerErrors(t *testing.T) {
	a, b := app(t, "a"), app(t, "b")
	_, socket := startHAProxy(t, a, b)
	bal, err := New(Config{Socket: socket, Backend: "app"})
	if err != nil {
		t.Fatal(err)
	}
	err = bal.Detach(ctxFor(t, 5*time.Second), "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "has no server at 127.0.0.1:1") || !strings.Contains(err.Error(), "web1="+a) {
		t.Fatalf("detach of an unknown address: %v", err)
	}
	rt, _ := NewRuntime(socket)
	if err := rt.SetState(ctxFor(t, 5*time.Second), "app", "nope", "drain"); err == nil || !strings.Contains(err.Error(), "No such server") {
		t.Fatalf("unknown server: %v", err)
	}
	if _, err := rt.Servers(ctxFor(t, 5*time.Second), "nothere"); err == nil || !strings.Contains(err.Error(), `no backend "nothere"`) {
		t.Fatalf("unknown backend: %v", err)
	}
	if _, err := New(Config{Socket: "not a socket", Backend: "app"}); err == nil {
		t.Fatal("a socket that is neither a path nor host:port was taken")
	}
	if _, err := rt.Command(ctxFor(t, 5*time.Second), "show info; shutdown sessions"); err == nil {
		t.Fatal("a command with ';' was sent")
	}
}

// parseStat finds columns by name, whatever their order.
func TestParseStat(t *testing.T) {
	out := "# pxname,svname,status,scur,qcur,weight,addr,check_status,wretr,wredis,econ,eresp\n" +
		"app,BACKEND,UP,3,0,2,,,1,0,0,0\n" +
		"app,web1,DRAIN,2,1,1,10.0.0.1:80,L7OK,1,2,3,4\n" +
		"other,web9,UP,0,0,1,10.0.0.9:80,L7OK,0,0,0,0\n"
	got, err := parseStat(out, "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "web1" || got[0].Sessions != 2 || got[0].Queued != 1 || got[0].Address != "10.0.0.1:80" ||
		got[0].Retries != 1 || got[0].Redispatches != 2 || got[0].ConnErrors != 3 || got[0].RespErrors != 4 {
		t.Fatalf("parsed %+v", got)
	}
	if st := stateOf(got[0]); st != lb.StateDraining {
		t.Fatalf("DRAIN with sessions is %s", st)
	}
	for status, want := range map[string]lb.State{"UP": lb.StateHealthy, "UP 1/3": lb.StateHealthy, "DOWN 1/2": lb.StateInitial,
		"DOWN": lb.StateUnhealthy, "MAINT": lb.StateUnused, "no check": lb.StateHealthy} {
		if st := stateOf(Server{Status: status}); st != want {
			t.Errorf("status %q is %s, want %s", status, st, want)
		}
	}
	if _, err := parseStat("Unknown command\n", "app"); err == nil {
		t.Fatal("an error answer parsed as a stat")
	}
	// A server whose checks fail reads DOWN in show stat even when
	// drained: the admin state says it is detached.
	if st := stateOf(Server{Status: "DOWN", Detached: true}); st != lb.StateUnused {
		t.Fatalf("a detached DOWN server is %s, want unused", st)
	}
	// As HAProxy 2.6 answers: web1 checked and running, web2 checked and in
	// maintenance (checks paused), web3 without a check.
	states, err := parseServersState("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state\n" +
		"3 app 1 web1 127.0.0.1 2 0 1 1 1 6 3 4 6\n3 app 2 web2 127.0.0.1 0 1 1 1 1 8 2 0 14\n3 app 3 web3 127.0.0.1 2 0 1 1 1 1 0 2 0\n")
	want := map[string]serverState{"web1": {admin: 0, check: 6}, "web2": {admin: 1, check: 14}, "web3": {admin: 0, check: 0}}
	if err != nil || !reflect.DeepEqual(states, want) {
		t.Fatalf("servers state: %v %v", states, err)
	}
	if _, err := parseServersState("Can't find backend.\n"); err == nil {
		t.Fatal("an error answer parsed as servers state")
	}
}

// parseStat never panics, whatever a socket answers.
func FuzzParseStat(f *testing.F) {
	f.Add("# pxname,svname,status,scur,qcur,weight,addr\napp,web1,UP,0,0,1,127.0.0.1:80\n")
	f.Add("# pxname,svname\n\"app,\"x\n")
	f.Add("No such server.\n")
	f.Fuzz(func(t *testing.T, out string) {
		servers, err := parseStat(out, "app")
		if err == nil {
			for _, s := range servers {
				_ = stateOf(s)
			}
		}
	})
}

// failable is a backend that answers 503 to everything while the flag it
// returns is set.
func failable(t *testing.T, name string) (addr string, failing *atomic.Bool) {
	failing = &atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "hello from "+name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), failing
}

// Servers found by name, a drain finished into maintenance and back, and a
// server HAProxy does not check checked by the driver itself.
func TestBalancerNamesMaintenanceAndOwnChecks(t *testing.T) {
	checked, sick := failable(t, "checked")
	uncheckedAddr, down := failable(t, "unchecked")
	// The configured addresses are "localhost" names: the hosts' targets
	// are found by server name, not by address.
	localhost := func(addr string) string { return strings.Replace(addr, "127.0.0.1", "localhost", 1) }
	_, stats := startHAProxyWith(t, fmt.Sprintf("    server checked %s check inter 50ms rise 3 fall 2\n    server unchecked %s\n",
		localhost(checked), localhost(uncheckedAddr)))
	bal, err := New(Config{Socket: stats, Backend: "app", HealthPath: "/healthz", CheckInter: 50 * time.Millisecond,
		Servers: map[string]string{checked: "checked", uncheckedAddr: "unchecked"}})
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "both servers healthy under their targets", func() bool {
		return lbtest.Target(t, bal, checked).State == lb.StateHealthy && lbtest.Target(t, bal, uncheckedAddr).State == lb.StateHealthy
	})
	if d, err := bal.HealthBound(ctxFor(t, 5*time.Second)); err != nil || d != 4*50*time.Millisecond {
		t.Errorf("HealthBound = %v, %v; want (rise 3 + 1) × inter 50ms", d, err)
	}
	advice, err := bal.Advice(ctxFor(t, 5*time.Second))
	if err != nil || len(advice) != 1 || !strings.Contains(advice[0], "no health check on unchecked") {
		t.Errorf("Advice = %q, %v; want one line about the unchecked server", advice, err)
	}

	// Detach, drained, maintenance: still unused, and back with attach.
	if err := bal.Detach(ctxFor(t, 5*time.Second), checked); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "checked drained", func() bool {
		return lbtest.Target(t, bal, checked).State == lb.StateUnused
	})
	if err := bal.FinishDrain(ctxFor(t, 5*time.Second), checked); err != nil {
		t.Fatal(err)
	}
	rt, _ := NewRuntime(stats)
	servers, err := rt.Servers(ctxFor(t, 5*time.Second), "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Name == "checked" && (!strings.HasPrefix(s.Status, "MAINT") || !s.Detached) {
			t.Fatalf("after FinishDrain the server is %+v, want MAINT", s)
		}
	}
	if tg := lbtest.Target(t, bal, checked); tg.State != lb.StateUnused {
		t.Fatalf("in maintenance the target is %+v, want unused", tg)
	}
	if err := bal.Detach(ctxFor(t, 5*time.Second), checked); err != nil {
		t.Fatalf("detach of a server in maintenance: %v", err)
	}
	if tg := lbtest.Target(t, bal, checked); tg.State != lb.StateUnused {
		t.Fatalf("a second detach moved it back to %+v", tg)
	}
	// The new release fails HAProxy's check: attached, it must not be
	// reported healthy (nor get requests) on the strength of the checks
	// before the maintenance.
	sick.Store(true)
	if err := bal.Attach(ctxFor(t, 5*time.Second), checked); err != nil {
		t.Fatal(err)
	}
	if tg := lbtest.Target(t, bal, checked); tg.State == lb.StateHealthy {
		t.Fatalf("right after attach from maintenance the server is %+v: healthy before any check of what runs now", tg)
	}
	proctest.Eventually(t, 10*time.Second, "HAProxy's check to find the sick release", func() bool {
		tg := lbtest.Target(t, bal, checked)
		if tg.State == lb.StateHealthy {
			t.Fatalf("a release failing HAProxy's check is reported %+v", tg)
		}
		return strings.Contains(tg.Reason, "L7STS")
	})
	sick.Store(false)
	proctest.Eventually(t, 10*time.Second, "checked healthy once its checks pass", func() bool {
		return lbtest.Target(t, bal, checked).State == lb.StateHealthy
	})

	// The unchecked server's app fails: the driver says so, and refuses
	// to attach it.
	down.Store(true)
	tg := lbtest.Target(t, bal, uncheckedAddr)
	if tg.State != lb.StateUnhealthy || !strings.Contains(tg.Reason, "503") || !strings.Contains(tg.Reason, "zerodown checks it itself") {
		t.Fatalf("unchecked server with a failing app: %+v", tg)
	}
	if err := bal.Detach(ctxFor(t, 5*time.Second), uncheckedAddr); err != nil {
		t.Fatal(err)
	}
	err = bal.Attach(ctxFor(t, 5*time.Second), uncheckedAddr)
	if err == nil || !strings.Contains(err.Error(), "not attached") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("attach of a failing unchecked server: %v", err)
	}
	down.Store(false)
	if err := bal.Attach(ctxFor(t, 5*time.Second), uncheckedAddr); err != nil {
		t.Fatal(err)
	}
	if tg := lbtest.Target(t, bal, uncheckedAddr); tg.State != lb.StateHealthy {
		t.Fatalf("unchecked server after attach: %+v", tg)
	}
	// A target is found by its server's name whatever address HAProxy has
	// for it (a DNS name, a NATed address).
	named, _ := New(Config{Socket: stats, Backend: "app", Servers: map[string]string{"192.0.2.1:80": "checked"}})
	if tg := lbtest.Target(t, named, "192.0.2.1:80"); tg.State != lb.StateHealthy {
		t.Fatalf("target found by server name: %+v", tg)
	}
	// A host whose server name the backend lacks is named in the error.
	bad, _ := New(Config{Socket: stats, Backend: "app", Servers: map[string]string{"127.0.0.1:1": "web9"}})
	if err := bad.Detach(ctxFor(t, 5*time.Second), "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "no server web9 and none at 127.0.0.1:1") {
		t.Fatalf("unknown server name: %v", err)
	}
}
