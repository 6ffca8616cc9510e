//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

func TestDeployActivateRollback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloTarRelease(t, "v1"))
	f.upload(helloRelease(t, "v2"))

	r1 := f.activate("v1")
	f.mustServe("v1")
	if r1.From != "" || r1.PID == 0 || len(r1.Phases) == 0 {
		t.Errorf("first activation: %+v", r1)
	}
	r2 := f.activate("v2")
	f.mustServe("v2")
	if r2.From != "v1" {
		t.Errorf("second activation: %+v", r2)
	}
	var names []string
	for _, p := range r2.Phases {
		names = append(names, p.Name)
	}
	if strings.Join(names, " ") != "hooks preflight stop switch start health" {
		t.Errorf("phases %v", names)
	}
	proctest.Eventually(t, 5*time.Second, "v1's process to be gone", func() bool { return !processAlive(r1.PID) })
	s := f.status()
	if s.Version != "v2" || s.Previous != "v1" || s.PID != r2.PID || !s.Healthy || s.State != stateRunning || s.Activation != nil || len(s.Releases) != 2 {
		t.Fatalf("status after v2: %+v", s)
	}
	if link, err := os.Readlink(filepath.Join(f.cfg.Root, "current")); err != nil || link != "releases/v2" {
		t.Fatalf("current -> %q, %v", link, err)
	}

	rb, err := f.client.RollbackWith(ctxFor(t, time.Minute), RollbackRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f.mustServe("v1")
	if rb.Version != "v1" || rb.From != "v2" {
		t.Errorf("rollback: %+v", rb)
	}
	hs, err := f.client.Status(ctxFor(t, 5*time.Second))
	if err != nil || hs.Version != "v1" || hs.Previous != "v2" || !hs.Running || hs.PID != rb.PID || len(hs.Releases) != 2 {
		t.Fatalf("status after rollback: %+v %v", hs, err)
	}
	// Activating what runs already is a no-op.
	if again := f.activate("v1"); !again.Unchanged || again.PID != rb.PID {
		t.Errorf("activate current: %+v", again)
	}

	logs, err := f.client.Logs(ctxFor(t, 5*time.Second), "", 50)
	if err != nil || logs.Version != "v1" || !strings.Contains(strings.Join(logs.Lines, "\n"), "hello: listening on 127.0.0.1:") {
		t.Errorf("logs: %+v %v", logs, err)
	}
	m, err := f.client.Metrics(ctxFor(t, 5*time.Second))
	for _, want := range []string{
		`zerodown_agent_activations_total{kind="activate",result="ok"} 2`,
		`zerodown_agent_activations_total{kind="rollback",result="ok"} 1`,
		`zerodown_agent_current_release{version="v1"} 1`,
		"zerodown_agent_app_up 1", "zerodown_agent_releases 2",
	} {
		if err != nil || !strings.Contains(m, want) {
			t.Errorf("metrics lack %s (%v)", want, err)
		}
	}
}

// poller fetches the app's / without pause and records what it sees.
type poller struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	ok       int
	failures []string
	versions map[string]int
}

func startPoller(url string) *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{}), versions: map[string]int{}}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			v, err := getVersion(url)
			p.mu.Lock()
			if err != nil {
				p.failures = append(p.failures, err.Error())
			} else {
				p.ok++
				p.versions[v]++
			}
			p.mu.Unlock()
			time.Sleep(2 * time.Millisecond) // pacing the load, not synchronisation
		}
	}()
	return p
}

func (p *poller) finish() *poller {
	close(p.stop)
	<-p.done
	return p
}

func TestFailedHealthKeepsV1Serving(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	r1 := f.activate("v1")
	f.upload(helloRelease(t, "v2", "--fail-health"))

	p := startPoller(f.app + "/")
	proctest.Eventually(t, 5*time.Second, "the poller's first answer", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.ok > 0 })
	_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v2", Timeout: "3s"})
	okBefore := func() int { p.mu.Lock(); defer p.mu.Unlock(); return p.ok }()
	proctest.Eventually(t, 5*time.Second, "answers after the failed activation", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.ok > okBefore+5 })
	p.finish()

	var ae *APIError
	if !errors.As(err, &ae) || !errors.Is(err, host.ErrUnhealthy) || ae.Status != http.StatusUnprocessableEntity || ae.Failure == nil {
		t.Fatalf("got %v, want 422 unhealthy", err)
	}
	fl := ae.Failure
	if fl.Phase != "preflight" || fl.Touched || fl.Restored != "v1" || !strings.Contains(fl.Reason, "503 Service Unavailable") {
		t.Errorf("failure %+v", fl)
	}
	if out := strings.Join(fl.Output, "\n"); !strings.Contains(out, "--fail-health") || !strings.Contains(out, "hello: listening") {
		t.Errorf("the failure's output does not show v2's start:\n%s", out)
	}
	if len(p.failures) > 0 || p.versions["v2"] > 0 {
		t.Fatalf("the client polling v1 saw %d failures (first: %v) and %d answers of v2", len(p.failures), p.failures, p.versions["v2"])
	}
	t.Logf("the client saw %d answers, all from v1", p.ok)
	s := f.status()
	if s.Version != "v1" || s.PID != r1.PID || !s.Healthy || s.Previous != "" {
		t.Errorf("status after the failure: %+v (v1 was pid %d)", s, r1.PID)
	}
}

func TestFailedReleasesAreRolledBack(t *testing.T) {
	t.Parallel()
	gate := config.AppHealth{Path: "/healthz", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(700 * time.Millisecond)}
	bad := []struct {
		name   string
		spec   func() config.App
		phase  string // with preflight; without it, the same failure comes in "health" or "start"
		reason string
		output string
	}{
		{"never healthy", func() config.App { s := helloSpec("--fail-health"); s.Health = gate; return s },
			"preflight", "not healthy after", "503 Service Unavailable"},
		{"exits at once", func() config.App { return helloSpec("--no-such-flag") },
			"preflight", "exit status 2", "flag provided but not defined: -no-such-flag"},
		{"program missing", func() config.App { s := helloSpec(); s.Run[0] = "./no-such-program"; return s },
			"preflight", "no-such-program", "could not start"},
		{"hook fails", func() config.App {
			s := helloSpec()
			s.Hooks.BeforeStart = [][]string{{"sh", "-c", "echo migrating $VERSION on $PORT; exit 3"}}
			return s
		}, "hooks", "exit status 3", "migrating v2 on"},
	}
	for _, tt := range bad {
		for _, preflight := range []bool{true, false} {
			name := tt.name + "/preflight"
			if !preflight {
				name = tt.name + "/no preflight"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var f *fixture
				if preflight {
					f = newFixture(t)
				} else {
					f = newFixture(t, withoutPreflight)
				}
				f.upload(helloRelease(t, "v1"))
				r1 := f.activate("v1")
				f.upload(memRelease("v2", host.FormatFile, "hello", helloBinary(t), tt.spec()))
				_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v2"})
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Failure == nil {
					t.Fatalf("got %v, want 422 with a failure", err)
				}
				fl := ae.Failure
				wantPhase, touched := tt.phase, false
				if !preflight && tt.phase == "preflight" {
					wantPhase, touched = "health", true
					if tt.name == "program missing" {
						wantPhase = "start"
					}
				}
				if fl.Phase != wantPhase || fl.Touched != touched || fl.Restored != "v1" || fl.RestoreError != "" || !strings.Contains(fl.Reason, tt.reason) {
					t.Errorf("failure %+v, want phase %s touched %v reason containing %q", fl, wantPhase, touched, tt.reason)
				}
				if out := strings.Join(fl.Output, "\n"); !strings.Contains(out, tt.output) {
					t.Errorf("output lacks %q:\n%s", tt.output, out)
				}
				f.mustServe("v1")
				s := f.status()
				if s.Version != "v1" || !s.Healthy || s.Previous != "" || s.Activation != nil {
					t.Errorf("status after the failure: %+v", s)
				}
				if touched == (s.PID == r1.PID) {
					t.Errorf("v1 pid %d before, %d after; touched=%v", r1.PID, s.PID, touched)
				}
				if link, _ := os.Readlink(filepath.Join(f.cfg.Root, "current")); link != "releases/v1" {
					t.Errorf("current -> %s", link)
				}
			})
		}
	}
}

func TestFirstActivationFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1", "--no-such-flag"))
	_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Failure.Restored != "" || ae.Failure.Phase != "health" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "no release was running before") {
		t.Errorf("message: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(f.cfg.Root, "current")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("current link after a failed first activation: %v", err)
	}
	if s := f.status(); s.Version != "" || s.State != stateStopped || s.PID != 0 {
		t.Errorf("status: %+v", s)
	}
}

func TestStopIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withoutPreflight)
	stubborn := helloSpec()
	// The shell ignores SIGTERM and keeps the process group alive after
	// hello has gone; only SIGKILL ends it.
	stubborn.Run = []string{"sh", "-c", "trap '' TERM; ./hello --listen 127.0.0.1:$PORT --name test & while :; do sleep 0.05; done"}
	stubborn.Stop.Timeout = config.Duration(300 * time.Millisecond)
	f.upload(memRelease("v1", host.FormatFile, "hello", helloBinary(t), stubborn))
	f.upload(helloRelease(t, "v2"))
	r1 := f.activate("v1")
	f.mustServe("v1")
	r2 := f.activate("v2")
	f.mustServe("v2")
	for _, p := range r2.Phases {
		if p.Name == "stop" && p.Millis < 300 {
			t.Errorf("stop took %.0fms, less than the stop timeout", p.Millis)
		}
	}
	if processAlive(r1.PID) {
		t.Errorf("v1's shell (pid %d) survives", r1.PID)
	}
	logs, err := f.client.Logs(ctxFor(t, 5*time.Second), "v1", 20)
	if err != nil || !strings.Contains(strings.Join(logs.Lines, "\n"), "did not stop within 300ms of SIGTERM; killed") {
		t.Errorf("v1's log does not say it was killed: %v\n%s", err, strings.Join(logs.Lines, "\n"))
	}
}

func TestOneActivationAtATime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	gate := f.uploadGated(t, "v2")

	first := make(chan error, 1)
	go func() {
		_, err := f.client.ActivateWith(context.Background(), ActivateRequest{Version: "v2"})
		first <- err
	}()
	proctest.Eventually(t, 10*time.Second, "the activation of v2 to be in its hooks", func() bool {
		a := f.status().Activation
		return a != nil && a.Version == "v2" && a.Phase == "hooks"
	})
	for _, call := range []func() error{
		func() error { return f.client.Activate(ctxFor(t, 10*time.Second), "v1") },
		func() error { return f.client.Rollback(ctxFor(t, 10*time.Second)) },
	} {
		err := call()
		var ae *APIError
		if !errors.Is(err, host.ErrBusy) || !errors.As(err, &ae) || ae.Status != http.StatusConflict ||
			ae.Activation == nil || ae.Activation.Version != "v2" || !strings.Contains(ae.Message, "activate of v2") {
			t.Errorf("second call: %v, want 409 naming the activation of v2", err)
		}
	}
	// Uploads go on meanwhile.
	f.upload(helloRelease(t, "v3"))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first activation did not finish")
	}
	f.mustServe("v2")
}

func TestActivateBadCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	ctx := ctxFor(t, 10*time.Second)
	if err := f.client.Activate(ctx, "v9"); !errors.Is(err, host.ErrNotFound) || !strings.Contains(err.Error(), "v9 is not on this host") {
		t.Errorf("unknown version: %v", err)
	}
	if err := f.client.Rollback(ctx); !errors.Is(err, host.ErrNotFound) || !strings.Contains(err.Error(), "no previous release") {
		t.Errorf("rollback without previous: %v", err)
	}
	auth := map[string]string{"Authorization": "Bearer " + f.agent.Token()}
	for _, c := range []struct{ body, has string }{
		{``, "body is empty"},
		{`{"version":"v1","timeout":"soon"}`, "not a duration"},
		{`{"version":"v1","timeout":"-1s"}`, "out of range"},
		{`{"version":"v1","wait":true}`, "unknown field"},
		{`{"version":""}`, `"version" is required`},
		{`{"version":"../v1"}`, "version"},
	} {
		resp, eb := f.raw("POST", "/v1/activate", strings.NewReader(c.body), auth)
		if resp.StatusCode != 400 || !strings.Contains(eb.Error, c.has) {
			t.Errorf("activate %s: %d %q, want 400 containing %q", c.body, resp.StatusCode, eb.Error, c.has)
		}
	}
	if resp, eb := f.raw("GET", "/v1/logs?lines=0", nil, auth); resp.StatusCode != 400 {
		t.Errorf("logs lines=0: %d %v", resp.StatusCode, eb)
	}
	if resp, _ := f.raw("GET", "/v1/logs?version=v9", nil, auth); resp.StatusCode != 404 {
		t.Errorf("logs of an unknown version: %d", resp.StatusCode)
	}
	if resp, _ := f.raw("GET", "/v1/logs", nil, auth); resp.StatusCode != 404 {
		t.Errorf("logs with nothing current: %d", resp.StatusCode)
	}
}

func TestCrashRestartWithBackoff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	pid := f.activate("v1").PID
	for i := 1; i <= 2; i++ {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var s Status
		proctest.Eventually(t, 10*time.Second, "the app to be restarted", func() bool {
			s = f.status()
			return s.Restarts == i && s.PID != 0 && s.PID != pid && s.Healthy
		})
		if s.LastExit != "signal: killed" || s.State != stateRunning {
			t.Errorf("status after crash %d: %+v", i, s)
		}
		pid = s.PID
		f.mustServe("v1")
	}
	m, _ := f.client.Metrics(ctxFor(t, 5*time.Second))
	if !strings.Contains(m, "zerodown_agent_app_restarts_total 2") {
		t.Errorf("restarts metric:\n%s", m)
	}
	logs, _ := f.client.Logs(ctxFor(t, 5*time.Second), "", 100)
	if !strings.Contains(strings.Join(logs.Lines, "\n"), "signal: killed; restarting (restart 2)") {
		t.Errorf("log:\n%s", strings.Join(logs.Lines, "\n"))
	}
}

func TestAgentRestartAdoptsApp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.upload(helloRelease(t, "v2"))
	pid := f.activate("v1").PID
	f.stop(false) // the agent goes, the app stays
	f.mustServe("v1")

	g := startFixture(t, f.cfg)
	var s Status
	proctest.Eventually(t, 10*time.Second, "the new agent to adopt the app", func() bool {
		s = g.status()
		return s.PID == pid && s.Healthy && s.Activation == nil
	})
	if !s.Adopted || s.Version != "v1" || s.State != stateRunning {
		t.Errorf("status: %+v", s)
	}
	// An adopted app is stopped like any other, and watched: a crash is
	// noticed without being its parent.
	r2 := g.activate("v2")
	g.mustServe("v2")
	if processAlive(pid) {
		t.Errorf("the adopted v1 (pid %d) still runs", pid)
	}
	g.stop(false)
	h := startFixture(t, f.cfg)
	proctest.Eventually(t, 10*time.Second, "the third agent to adopt v2", func() bool { return h.status().PID == r2.PID })
	if err := syscall.Kill(r2.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "the adopted app's crash to be restarted", func() bool {
		s := h.status()
		return s.Restarts == 1 && s.PID != 0 && s.PID != r2.PID && s.Healthy && !s.Adopted
	})
}

// TestRecovery starts an agent on the state another agent left when it
// was killed in each phase of an activation of v2 from v1.
func TestRecovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// crash changes what the killed agent left: the current link, the
		// journal, the processes.
		crash    func(t *testing.T, f *fixture)
		v2       config.App
		want     string // the release serving afterwards
		previous string
		// outcome is how status's last_activation reports the interrupted
		// request: ok, failed, or "" when it changed nothing and is run
		// again if asked again.
		outcome string
	}{
		{"killed in hooks or preflight", func(t *testing.T, f *fixture) {
			journal(t, f, "v2", "v1")
		}, helloSpec(), "v1", "", ""},
		{"killed in preflight, with the preflight app left running", func(t *testing.T, f *fixture) {
			journal(t, f, "v2", "v1")
			rel, _ := f.agent.release("v2")
			p, err := f.agent.sup.start(rel, freePort(t), "preflight")
			if err != nil {
				t.Fatal(err)
			}
			if err := writePidFile(f.agent.preflightPidPath(), p, "v2", 0); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if processAlive(p.pid) {
					t.Errorf("the leftover preflight app (pid %d) still runs", p.pid)
					_ = killGroup(p.pid)
				}
			})
		}, helloSpec(), "v1", "", ""},
		{"killed after stopping v1", func(t *testing.T, f *fixture) {
			journal(t, f, "v2", "v1")
			stopApp(t, f)
		}, helloSpec(), "v1", "", ""},
		{"killed after switching", func(t *testing.T, f *fixture) {
			journal(t, f, "v2", "v1")
			stopApp(t, f)
			if err := f.agent.store.SetCurrent("v2"); err != nil {
				t.Fatal(err)
			}
		}, helloSpec(), "v2", "v1", "ok"},
		{"killed after switching to a v2 that fails", func(t *testing.T, f *fixture) {
			journal(t, f, "v2", "v1")
			stopApp(t, f)
			if err := f.agent.store.SetCurrent("v2"); err != nil {
				t.Fatal(err)
			}
		}, func() config.App {
			s := helloSpec("--fail-health")
			s.Health.Timeout = config.Duration(500 * time.Millisecond)
			return s
		}(), "v1", "", "failed"},
		{"killed while v2 was starting", func(t *testing.T, f *fixture) {
			journal(t, f, "v2", "v1")
			stopApp(t, f)
			if err := f.agent.store.SetCurrent("v2"); err != nil {
				t.Fatal(err)
			}
			rel, _ := f.agent.release("v2")
			p, err := f.agent.sup.start(rel, f.cfg.Port, "app")
			if err != nil {
				t.Fatal(err)
			}
			if err := writePidFile(f.agent.sup.pidPath, p, "v2", f.cfg.Port); err != nil {
				t.Fatal(err)
			}
		}, helloSpec(), "v2", "v1", "ok"},
		{"pid file of a process that is gone", func(t *testing.T, f *fixture) {
			stopApp(t, f)
			if err := os.WriteFile(f.agent.sup.pidPath, []byte(`{"pid":999999999,"start_id":"1","version":"v1","port":1}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, helloSpec(), "v1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, withoutPreflight)
			f.upload(helloRelease(t, "v1"))
			f.upload(memRelease("v2", host.FormatFile, "hello", helloBinary(t), tt.v2))
			f.activate("v1")
			f.stop(false)
			tt.crash(t, f)

			g := startFixture(t, f.cfg)
			var s Status
			proctest.Eventually(t, 20*time.Second, "the agent to bring "+tt.want+" back", func() bool {
				s = g.status()
				return s.Activation == nil && s.Version == tt.want && s.Healthy && s.PID != 0
			})
			g.mustServe(tt.want)
			if s.Previous != tt.previous {
				t.Errorf("previous %q, want %q", s.Previous, tt.previous)
			}
			st, err := g.agent.store.State()
			if err != nil || st.Activation != nil {
				t.Errorf("the journal is still there: %+v %v", st, err)
			}
			if _, ok, _ := readPidFile(g.agent.preflightPidPath()); ok {
				t.Error("the preflight pid file is still there")
			}
			o := s.LastActivation
			switch {
			case tt.outcome == "" && o != nil:
				t.Errorf("last_activation %+v, want none", o)
			case tt.outcome == "ok" && (o == nil || o.ID != "req-v2" || o.Result == nil || o.Result.Version != "v2"):
				t.Errorf("last_activation %+v, want request req-v2 ended with v2 running", o)
			case tt.outcome == "failed" && (o == nil || o.ID != "req-v2" || o.Result != nil || o.Code != codeFailed || o.Failure == nil || o.Failure.Restored != "v1"):
				t.Errorf("last_activation %+v, want request req-v2 failed with v1 restored", o)
			}
		})
	}
}

// journal records an activation in progress, as a killed agent leaves it.
func journal(t *testing.T, f *fixture, version, from string) {
	t.Helper()
	err := f.agent.updateState(func(st *agentState) {
		st.Activation = &ActivationInfo{Kind: "activate", Version: version, From: from, Phase: "hooks", Since: time.Now(), ID: "req-" + version}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stopApp stops the app the way an activation's stop phase does.
func stopApp(t *testing.T, f *fixture) {
	t.Helper()
	rec, ok, err := readPidFile(f.agent.sup.pidPath)
	if err != nil || !ok {
		t.Fatalf("pid file: %v %v", ok, err)
	}
	if err := syscall.Kill(rec.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "the app to stop", func() bool { return !processAlive(rec.PID) })
	if err := removePidFile(f.agent.sup.pidPath); err != nil {
		t.Fatal(err)
	}
}

func TestLogCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *config.Agent) { c.LogMaxBytes = 4096 })
	noisy := helloSpec()
	noisy.Hooks.BeforeStart = [][]string{{"sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo "hook line $i"; i=$((i+1)); done`}}
	f.upload(memRelease("v1", host.FormatFile, "hello", helloBinary(t), noisy))
	f.activate("v1")
	log := f.agent.store.LogPath("v1")
	for _, p := range []string{log, log + ".1"} {
		fi, err := os.Stat(p)
		if err != nil || fi.Size() > 4096+1024 {
			t.Errorf("%s: %v, %v; want at most about 4KiB", filepath.Base(p), fi.Size(), err)
		}
	}
	logs, err := f.client.Logs(ctxFor(t, 5*time.Second), "v1", 5)
	if err != nil || len(logs.Lines) != 5 || !strings.Contains(strings.Join(logs.Lines, "\n"), "hello: listening") {
		t.Errorf("last 5 lines: %q %v", logs.Lines, err)
	}
}

func TestTailLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.log")
	write := func(name, s string) {
		if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(p+".1", "old1\nold2\n")
	write(p, "a\nb\nc\n")
	tests := []struct {
		n    int
		want string
	}{{1, "c"}, {3, "a b c"}, {4, "old2 a b c"}, {10, "old1 old2 a b c"}, {0, ""}}
	for _, tt := range tests {
		got, err := tailLog(p, tt.n)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("tail %d = %q %v, want %q", tt.n, got, err, tt.want)
		}
	}
	if got, err := tailLog(filepath.Join(dir, "none.log"), 5); err != nil || len(got) != 0 {
		t.Errorf("missing log: %q %v", got, err)
	}
}

func TestCapLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(p, []byte(strings.Repeat("0123456789\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := capLog(p, 2000); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 1100 {
		t.Errorf("a log under the cap was touched: %d bytes", fi.Size())
	}
	if err := capLog(p, 500); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	old, _ := os.ReadFile(p + ".1")
	if fi.Size() != 0 || len(old) != 500 {
		t.Errorf("after rotation: log %d bytes, log.1 %d bytes; want 0 and 500", fi.Size(), len(old))
	}
}

func TestAppEnvAndCommand(t *testing.T) {
	t.Setenv("ZERODOWN_AGENT_TOKEN", "secret")
	t.Setenv("MY_AGENT_TOKEN", "secret2")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	rel := release{version: "v7", dir: "/srv/rel/v7", spec: config.App{Env: map[string]string{"GREETING": "hi"}}}
	env := appEnv(rel, 8101)
	joined := strings.Join(env, "\n") + "\n"
	for _, want := range []string{"PORT=8101", "VERSION=v7", "GREETING=hi", "PATH=" + defaultPath, "HOST=0.0.0.0"} {
		if !strings.Contains(joined, want+"\n") {
			t.Errorf("env lacks %s", want)
		}
	}
	if strings.Contains(joined, "secret") || strings.Contains(joined, "NOTIFY_SOCKET") {
		t.Errorf("the agent's own variables reach the app: %q", env)
	}
	rel.spec.Env["PATH"] = "/opt/app/bin"
	if got := strings.Join(appEnv(rel, 8101), "\n") + "\n"; !strings.Contains(got, "PATH=/opt/app/bin\n") {
		t.Errorf("the spec's PATH did not replace the default: %q", got)
	}
	delete(rel.spec.Env, "PATH")
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"./hello", "--listen", "127.0.0.1:${PORT}"}, "/srv/rel/v7/hello --listen 127.0.0.1:8101"},
		{[]string{"bin/app", "${VERSION}-${GREETING}", "${UNSET}", "$PORT", "${"}, "/srv/rel/v7/bin/app v7-hi ${UNSET} $PORT ${"},
		{[]string{"sh", "-c", "x"}, "sh -c x"},
		{[]string{"/usr/bin/env"}, "/usr/bin/env"},
	}
	for _, tt := range tests {
		if got := strings.Join(command(rel, tt.argv, env), " "); got != tt.want {
			t.Errorf("command(%q) = %q, want %q", tt.argv, got, tt.want)
		}
	}
}

func TestProcessStartID(t *testing.T) {
	id, err := processStartID(os.Getpid())
	if err != nil || id == "" {
		t.Fatalf("own start id: %q %v", id, err)
	}
	if _, err := processStartID(1 << 30); !errors.Is(err, errGone) {
		t.Errorf("a pid that does not exist: %v", err)
	}
	// A pid file naming this process with another start time is not it.
	if _, ok := adoptProcess(context.Background(), pidRecord{PID: os.Getpid(), StartID: id + "0"}); ok {
		t.Error("adopted a process whose start time differs")
	}
}

func TestPortTakenByAStranger(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Something else answers healthy on the app's port: the gate must not
	// take its answers for the release's.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.cfg.Port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	f.upload(helloRelease(t, "v1"))
	_, err = f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Failure == nil || ae.Failure.Phase != "start" || !strings.Contains(ae.Failure.Reason, "taken by a process the agent did not start") {
		t.Fatalf("got %v, want a failure in phase start about the taken port", err)
	}
	// The stranger is named: this test's own process.
	if me := fmt.Sprintf("pid %d (", os.Getpid()); runtime.GOOS == "linux" && !strings.Contains(ae.Failure.Reason, me) {
		t.Errorf("the reason %q does not name the process holding the port (%s...)", ae.Failure.Reason, me)
	}
}

func TestHookDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	slow := helloSpec()
	slow.Hooks.BeforeStart = [][]string{{"sh", "-c", "echo $$ > hook.pid; sleep 30"}}
	f.upload(memRelease("v2", host.FormatFile, "hello", helloBinary(t), slow))
	began := time.Now()
	_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v2", Timeout: "500ms"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Failure == nil || ae.Failure.Phase != "hooks" || !strings.Contains(ae.Failure.Reason, "did not finish before the activation's deadline; killed") {
		t.Fatalf("got %v, want the hook killed at the deadline", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("the activation took %s with a 500ms timeout", took)
	}
	b, err := os.ReadFile(filepath.Join(f.cfg.Root, "releases", "v2", "hook.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "the hook to be killed", func() bool { return !processAlive(pid) })
	f.mustServe("v1")
}

func TestZipAndSingleFileReleases(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bin, err := os.ReadFile(helloBin)
	if err != nil {
		t.Fatal(err)
	}
	zipped := zipBytes(t, []zipEntry{{name: "app/", mode: os.ModeDir | 0o755}, {name: "app/hello", mode: 0o755, body: string(bin), stored: true}})
	zipSpec := helloSpec()
	zipSpec.Run[0] = "./app/hello"
	f.upload(memRelease("z1", host.FormatZip, "", zipped, zipSpec))
	f.upload(memRelease("f1", host.FormatFile, "hello", bin, helloSpec()))
	f.activate("z1")
	f.mustServe("z1")
	f.activate("f1")
	f.mustServe("f1")
	list, err := f.client.Releases(ctxFor(t, 5*time.Second))
	if err != nil || len(list) != 2 || list[0].Format != host.FormatZip || list[1].Format != host.FormatFile || list[1].Name != "hello" || !list[1].Current {
		t.Fatalf("releases %+v %v", list, err)
	}
}
