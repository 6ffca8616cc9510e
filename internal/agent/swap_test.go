//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/proctest"
)

// swapFixture is an agent with two slots, port and swap_port. Whatever its
// apps leave running (a retiring release) is killed at the test's end.
func swapFixture(t *testing.T, edit ...func(*config.Agent)) *fixture {
	t.Helper()
	cfg := testConfig(t)
	cfg.SwapPort = freePort(t)
	for _, e := range edit {
		e(cfg)
	}
	t.Cleanup(func() { proctest.KillUnder(cfg.Root) }) // runs after the agent's own cleanup
	return startFixture(t, cfg)
}

func slotURL(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/", port) }

// serves checks that the slot on port answers with version.
func serves(t *testing.T, port int, version string) {
	t.Helper()
	if got, err := getVersion(slotURL(port)); err != nil || got != version {
		t.Fatalf("port %d answers %q, %v; want version %s", port, got, err, version)
	}
}

// silent checks that nothing answers on port.
func silent(t *testing.T, port int) {
	t.Helper()
	if got, err := getVersion(slotURL(port)); err == nil {
		t.Fatalf("port %d still answers, version %q", port, got)
	}
}

func (f *fixture) swap(version string) ActivateResult {
	f.t.Helper()
	res, err := f.client.ActivateWith(ctxFor(f.t, time.Minute), ActivateRequest{Version: version, Swap: true})
	if err != nil {
		f.t.Fatalf("swap to %s: %v", version, err)
	}
	return res
}

// post calls the API with a JSON body and returns the status and the
// answer's body.
func (f *fixture) post(path, body string) (int, []byte) {
	f.t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(f.t, time.Minute), http.MethodPost, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.agent.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, data
}

func (f *fixture) retire() RetireResult {
	f.t.Helper()
	status, body := f.post("/v1/retire", "")
	var res RetireResult
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil {
		f.t.Fatalf("retire: %d %s", status, body)
	}
	return res
}

func phaseNames(ps []Phase) string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return strings.Join(names, " ")
}

// TestSwapActivateRetire: a swap starts the new release in the idle slot
// while the old one keeps serving in its own; both answer until the old
// one is retired, and another swap meanwhile is refused. The next swap
// goes back to the first slot.
func TestSwapActivateRetire(t *testing.T) {
	t.Parallel()
	f := swapFixture(t)
	port, swapPort := f.cfg.Port, f.cfg.SwapPort
	for _, v := range []string{"v1", "v2", "v3"} {
		f.upload(helloRelease(t, v))
	}
	r1 := f.activate("v1")
	serves(t, port, "v1")
	if s := f.status(); s.Port != port || s.Retiring != nil {
		t.Fatalf("status after v1: port %d, retiring %+v; want port %d and nothing retiring", s.Port, s.Retiring, port)
	}

	// Through the HTTP API as the engine's client sends it.
	status, body := f.post("/v1/activate", `{"version":"v2","swap":true}`)
	var r2 ActivateResult
	if status != http.StatusOK || json.Unmarshal(body, &r2) != nil {
		t.Fatalf("swap to v2: %d %s", status, body)
	}
	wantRetiring := RetiringInfo{Version: "v1", Port: port, PID: r1.PID}
	if r2.Version != "v2" || r2.From != "v1" || r2.Port != swapPort || r2.PID == r1.PID || r2.Retiring == nil || *r2.Retiring != wantRetiring {
		t.Fatalf("swap result %+v (retiring %+v); want v2 from v1 on port %d, retiring %+v", r2, r2.Retiring, swapPort, wantRetiring)
	}
	if got := phaseNames(r2.Phases); got != "hooks start health switch" {
		t.Errorf("phases %q: a swap starts beside the running release, without preflight or stop", got)
	}
	s := f.status()
	if s.Version != "v2" || s.Previous != "v1" || s.Port != swapPort || s.PID != r2.PID || !s.Healthy || s.State != stateRunning ||
		s.Retiring == nil || *s.Retiring != wantRetiring {
		t.Fatalf("status after the swap: %+v (retiring %+v)", s, s.Retiring)
	}
	if hs := s.Host(); hs.Port != swapPort || hs.Retiring != "v1" || hs.RetiringPort != port {
		t.Errorf("host status %+v", hs)
	}
	// Until it is retired, both slots serve.
	for range 5 {
		serves(t, port, "v1")
		serves(t, swapPort, "v2")
	}
	if !processAlive(r1.PID) {
		t.Fatalf("the retiring v1 (pid %d) is gone", r1.PID)
	}
	retiringPid := filepath.Join(f.cfg.Root, "run", "retiring.pid")
	if _, err := os.Stat(retiringPid); err != nil {
		t.Errorf("no retiring pid file while v1 is retiring: %v", err)
	}

	// A second swap now would leave no slot for v1: refused, saying to
	// retire first, and nothing changes.
	_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v3", Swap: true})
	var ae *APIError
	refusal := fmt.Sprintf("v1 is still retiring in the other slot (pid %d on port %d): retire it first (POST /v1/retire)", r1.PID, port)
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || ae.Failure == nil || !strings.Contains(ae.Failure.Reason, refusal) || ae.Failure.Touched {
		t.Fatalf("swap while v1 is retiring: %v, want 422 saying %q", err, refusal)
	}
	if s := f.status(); s.Version != "v2" || s.PID != r2.PID || s.Port != swapPort || s.Retiring == nil || *s.Retiring != wantRetiring {
		t.Fatalf("status after the refusal: %+v (retiring %+v)", s, s.Retiring)
	}
	serves(t, port, "v1")
	serves(t, swapPort, "v2")

	ret := f.retire()
	if ret.Stopped == nil || *ret.Stopped != wantRetiring || !strings.Contains(ret.How, "SIGTERM") {
		t.Fatalf("retire: %+v (stopped %+v), want v1 stopped by SIGTERM", ret, ret.Stopped)
	}
	silent(t, port)
	if processAlive(r1.PID) {
		t.Errorf("v1 (pid %d) still runs after its retirement", r1.PID)
	}
	serves(t, swapPort, "v2")
	if s := f.status(); s.Retiring != nil || s.Port != swapPort || s.PID != r2.PID || s.Version != "v2" {
		t.Fatalf("status after the retirement: %+v (retiring %+v)", s, s.Retiring)
	}
	if _, err := os.Stat(retiringPid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the retiring pid file is left: %v", err)
	}
	// Nothing retiring: nothing to do, and no error.
	if again := f.retire(); again.Stopped != nil {
		t.Errorf("a second retire stopped %+v", again.Stopped)
	}

	// The next swap uses the first slot again.
	r3 := f.swap("v3")
	if r3.Port != port || r3.Retiring == nil || *r3.Retiring != (RetiringInfo{Version: "v2", Port: swapPort, PID: r2.PID}) {
		t.Fatalf("swap to v3: %+v (retiring %+v)", r3, r3.Retiring)
	}
	serves(t, port, "v3")
	serves(t, swapPort, "v2")
	if err := f.client.Retire(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	silent(t, swapPort)
	serves(t, port, "v3")
}

// TestSwapFailureLeavesOldServing: a release that fails anywhere in a swap
// is stopped; the running release serves on, untouched, from its slot,
// and nothing is retiring. The cases run one after another on one agent,
// each after the ones before failed.
func TestSwapFailureLeavesOldServing(t *testing.T) {
	t.Parallel()
	gate := config.AppHealth{Path: "/healthz", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(500 * time.Millisecond)}
	tests := []struct {
		name   string
		spec   func() config.App
		phase  string
		reason []string
	}{
		{name: "never healthy", spec: func() config.App { s := helloSpec("--fail-health"); s.Health = gate; return s },
			phase: "health", reason: []string{"in the idle slot (port SWAP)", "503 Service Unavailable"}},
		{name: "exits at once", spec: func() config.App { return helloSpec("--no-such-flag") },
			phase: "health", reason: []string{"in the idle slot (port SWAP)", "exit status 2"}},
		{name: "hook fails", spec: func() config.App {
			s := helloSpec()
			s.Hooks.BeforeStart = [][]string{{"sh", "-c", "exit 3"}}
			return s
		}, phase: "hooks", reason: []string{"exit status 3"}},
	}
	f := swapFixture(t)
	port, swapPort := f.cfg.Port, f.cfg.SwapPort
	f.upload(helloRelease(t, "v1"))
	r1 := f.activate("v1")
	for i, tt := range tests {
		version := fmt.Sprintf("bad%d", i+1)
		t.Run(tt.name, func(t *testing.T) {
			f.t = t
			f.upload(memRelease(version, host.FormatFile, "hello", helloBinary(t), tt.spec()))
			p := startPoller(slotURL(port))
			proctest.Eventually(t, 5*time.Second, "the poller's first answer", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.ok > 0 })
			_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: version, Swap: true, Timeout: "5s"})
			okBefore := func() int { p.mu.Lock(); defer p.mu.Unlock(); return p.ok }()
			proctest.Eventually(t, 5*time.Second, "answers after the failed swap", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.ok > okBefore+3 })
			p.finish()

			checkSwapFailure(t, err, tt.phase, tt.reason, swapPort)
			if len(p.failures) > 0 || len(p.versions) != 1 {
				t.Fatalf("the client of v1's slot saw %d failures (%v) and versions %v", len(p.failures), p.failures, p.versions)
			}
			s := f.status()
			if s.Version != "v1" || s.PID != r1.PID || s.Port != port || s.Retiring != nil || !s.Healthy || s.Previous != "" {
				t.Errorf("status after the failed swap: %+v (retiring %+v); want v1, pid %d, port %d, nothing retiring", s, s.Retiring, r1.PID, port)
			}
			serves(t, port, "v1")
			silent(t, swapPort)
			if _, err := os.Stat(filepath.Join(f.cfg.Root, "run", "starting.pid")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the starting pid file is left: %v", err)
			}
		})
	}
	f.t = t
	// A good release swaps in after them.
	f.upload(helloRelease(t, "v2"))
	if r2 := f.swap("v2"); r2.Port != swapPort || r2.Retiring == nil || r2.Retiring.PID != r1.PID {
		t.Errorf("swap to v2 after the failures: %+v (retiring %+v)", r2, r2.Retiring)
	}
	serves(t, swapPort, "v2")
}

// TestSwapIdlePortTaken: a stranger on the idle slot's port fails the swap
// before anything starts; the running release is untouched.
func TestSwapIdlePortTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := swapFixture(t, func(c *config.Agent) { c.SwapPort = ln.Addr().(*net.TCPAddr).Port })
	f.upload(helloRelease(t, "v1"))
	f.upload(helloRelease(t, "v2"))
	r1 := f.activate("v1")
	_, err = f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v2", Swap: true})
	checkSwapFailure(t, err, "start", []string{"port SWAP is taken by a process the agent did not start"}, f.cfg.SwapPort)
	s := f.status()
	if s.Version != "v1" || s.PID != r1.PID || s.Port != f.cfg.Port || s.Retiring != nil || !s.Healthy {
		t.Errorf("status after the failed swap: %+v (retiring %+v)", s, s.Retiring)
	}
	serves(t, f.cfg.Port, "v1")
}

// checkSwapFailure checks err is a failed swap, in phase, that touched
// nothing: v1 runs. SWAP in reason stands for swapPort.
func checkSwapFailure(t *testing.T, err error, phase string, reason []string, swapPort int) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !errors.Is(err, host.ErrUnhealthy) || ae.Failure == nil {
		t.Fatalf("swap to a bad release: %v, want 422", err)
	}
	fl := ae.Failure
	if fl.Phase != phase || fl.Touched || fl.Restored != "v1" {
		t.Errorf("failure %+v, want phase %s, untouched, v1 running", fl, phase)
	}
	for _, want := range reason {
		want = strings.ReplaceAll(want, "SWAP", fmt.Sprint(swapPort))
		if !strings.Contains(fl.Reason, want) {
			t.Errorf("reason %q lacks %q", fl.Reason, want)
		}
	}
}

// TestSwapRollbackRevivesRetiring: a swap rollback while the previous
// release still runs in the other slot trades places with it, starting
// nothing; once it is retired, a swap rollback starts it afresh.
func TestSwapRollbackRevivesRetiring(t *testing.T) {
	t.Parallel()
	f := swapFixture(t)
	port, swapPort := f.cfg.Port, f.cfg.SwapPort
	f.upload(helloRelease(t, "v1"))
	f.upload(helloRelease(t, "v2"))
	r1 := f.activate("v1")
	r2 := f.swap("v2")

	rb, err := f.client.RollbackWith(ctxFor(t, time.Minute), RollbackRequest{Swap: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRetiring := RetiringInfo{Version: "v2", Port: swapPort, PID: r2.PID}
	if rb.Version != "v1" || rb.From != "v2" || rb.PID != r1.PID || rb.Port != port || rb.Retiring == nil || *rb.Retiring != wantRetiring {
		t.Fatalf("rollback %+v (retiring %+v); want v1's own pid %d back on port %d, v2 retiring", rb, rb.Retiring, r1.PID, port)
	}
	if got := phaseNames(rb.Phases); got != "hooks switch" {
		t.Errorf("phases %q: trading places starts nothing", got)
	}
	s := f.status()
	if s.Version != "v1" || s.Previous != "v2" || s.PID != r1.PID || s.Port != port || !s.Healthy || s.Retiring == nil || *s.Retiring != wantRetiring {
		t.Fatalf("status after the rollback: %+v (retiring %+v)", s, s.Retiring)
	}
	serves(t, port, "v1")
	serves(t, swapPort, "v2")

	// The supervisor watches the revived v1: a crash is restarted in its slot.
	if err := syscall.Kill(r1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "the revived v1 to be restarted after a crash", func() bool {
		s := f.status()
		return s.Restarts == 1 && s.PID != 0 && s.PID != r1.PID && s.Healthy
	})
	serves(t, port, "v1")

	if ret := f.retire(); ret.Stopped == nil || *ret.Stopped != wantRetiring {
		t.Fatalf("retire: %+v", ret)
	}
	silent(t, swapPort)
	// Nothing retiring: rolling back (to v2) starts it in the idle slot.
	rb2, err := f.client.RollbackWith(ctxFor(t, time.Minute), RollbackRequest{Swap: true})
	if err != nil {
		t.Fatal(err)
	}
	if rb2.Version != "v2" || rb2.PID == r2.PID || rb2.Port != swapPort || rb2.Retiring == nil || rb2.Retiring.Version != "v1" || rb2.Retiring.Port != port {
		t.Fatalf("second rollback %+v (retiring %+v)", rb2, rb2.Retiring)
	}
	if got := phaseNames(rb2.Phases); got != "hooks start health switch" {
		t.Errorf("phases of the second rollback %q", got)
	}
	serves(t, swapPort, "v2")
	serves(t, port, "v1")
}

// TestSwapNeedsSwapPort: an agent with one slot refuses a swap, through
// either call, before doing anything.
func TestSwapNeedsSwapPort(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct{ path, body string }{
		{"/v1/activate", `{"version":"v1","swap":true}`},
		{"/v1/rollback", `{"swap":true}`},
	}
	for _, tt := range tests {
		status, body := f.post(tt.path, tt.body)
		var eb errorBody
		if err := json.Unmarshal(body, &eb); err != nil {
			t.Fatalf("%s: %d %s", tt.path, status, body)
		}
		if status != http.StatusBadRequest || eb.Code != codeBadInput || !strings.Contains(eb.Error, "this agent has no swap_port in agent.yaml, so it cannot run a second release beside the first") {
			t.Errorf("%s %s: %d %+v; want 400 naming swap_port", tt.path, tt.body, status, eb)
		}
	}
	if s := f.status(); s.Version != "" || s.PID != 0 || s.Port != f.cfg.Port || s.LastActivation != nil {
		t.Errorf("status after the refused swaps: %+v", s)
	}
}

// TestSwapAgentRestart: an agent stopped after a swap leaves both releases
// running; the next one adopts the app in the swap port's slot and keeps
// the old release as retiring, to be retired as before.
func TestSwapAgentRestart(t *testing.T) {
	t.Parallel()
	f := swapFixture(t)
	port, swapPort := f.cfg.Port, f.cfg.SwapPort
	for _, v := range []string{"v1", "v2", "v3"} {
		f.upload(helloRelease(t, v))
	}
	r1 := f.activate("v1")
	r2 := f.swap("v2")
	f.stop(false) // the agent goes; both apps stay
	serves(t, port, "v1")
	serves(t, swapPort, "v2")

	g := startFixture(t, f.cfg)
	wantRetiring := RetiringInfo{Version: "v1", Port: port, PID: r1.PID}
	var s Status
	proctest.Eventually(t, 10*time.Second, "the new agent to adopt both slots", func() bool {
		s = g.status()
		return s.Activation == nil && s.PID == r2.PID && s.Healthy
	})
	if s.Version != "v2" || s.Port != swapPort || !s.Adopted || s.State != stateRunning || s.Retiring == nil || *s.Retiring != wantRetiring {
		t.Fatalf("status of the new agent: %+v (retiring %+v); want v2 adopted on port %d, %+v retiring", s, s.Retiring, swapPort, wantRetiring)
	}
	serves(t, port, "v1")
	serves(t, swapPort, "v2")
	// Still retiring: a swap is refused as before the restart.
	if _, err := g.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v3", Swap: true}); err == nil || !strings.Contains(err.Error(), "retire it first") {
		t.Fatalf("swap on the new agent while v1 is retiring: %v", err)
	}

	if ret := g.retire(); ret.Stopped == nil || *ret.Stopped != wantRetiring {
		t.Fatalf("retire on the new agent: %+v", ret)
	}
	silent(t, port)
	if processAlive(r1.PID) {
		t.Errorf("the adopted retiring v1 (pid %d) still runs", r1.PID)
	}
	// The adopted app in the swap port's slot is swapped out as any other.
	r3 := g.swap("v3")
	if r3.Port != port || r3.Retiring == nil || *r3.Retiring != (RetiringInfo{Version: "v2", Port: swapPort, PID: r2.PID}) {
		t.Fatalf("swap to v3 on the new agent: %+v (retiring %+v)", r3, r3.Retiring)
	}
	serves(t, port, "v3")
	serves(t, swapPort, "v2")

	// A third agent, after the swap back to port: same again.
	g.stop(false)
	h := startFixture(t, f.cfg)
	proctest.Eventually(t, 10*time.Second, "the third agent to adopt both slots", func() bool {
		s = h.status()
		return s.Activation == nil && s.PID == r3.PID && s.Healthy
	})
	if s.Port != port || s.Retiring == nil || s.Retiring.PID != r2.PID || s.Retiring.Port != swapPort {
		t.Fatalf("status of the third agent: %+v (retiring %+v)", s, s.Retiring)
	}
	h.retire()
	silent(t, swapPort)
	serves(t, port, "v3")
}

// A swap's before_start hooks get the idle slot's port as PORT, the port
// the release will run on.
func TestSwapHooksGetTheIdlePort(t *testing.T) {
	t.Parallel()
	f := swapFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	spec := helloSpec()
	spec.Hooks.BeforeStart = [][]string{{"sh", "-c", "echo $PORT > hook-port"}}
	f.upload(memRelease("v2", host.FormatFile, "hello", helloBinary(t), spec))
	f.swap("v2")
	b, err := os.ReadFile(filepath.Join(f.cfg.Root, "releases", "v2", "hook-port"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != fmt.Sprint(f.cfg.SwapPort) {
		t.Fatalf("the hook got PORT=%s, want the idle slot's %d (the running one is on %d)", got, f.cfg.SwapPort, f.cfg.Port)
	}
}

// A release still retiring in the other slot is never pruned, however few
// releases are kept.
func TestSwapRetiringIsNotPruned(t *testing.T) {
	t.Parallel()
	f := swapFixture(t, func(c *config.Agent) { c.KeepReleases = 1 })
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	f.upload(helloRelease(t, "v2"))
	f.swap("v2") // v1 retiring on port
	f.upload(helloRelease(t, "v3"))
	f.activate("v3") // an ordinary activation, in v2's slot: v1 still retiring
	s := f.status()
	if s.Retiring == nil || s.Retiring.Version != "v1" {
		t.Fatalf("retiring %+v, want v1", s.Retiring)
	}
	var stored []string
	for _, r := range s.Releases {
		stored = append(stored, r.Version)
	}
	if !slices.Contains(stored, "v1") {
		t.Fatalf("releases %v: the retiring v1 was pruned while it runs", stored)
	}
	serves(t, f.cfg.Port, "v1")
}

// The on-disk state of an agent killed while a swap's new release was
// still starting (before swapped): current v1, the app's pid file v1@port,
// starting.pid v2@swap_port, no retiring, an activation recorded.
func TestSwapRestartWhileStarting(t *testing.T) {
	t.Parallel()
	f := swapFixture(t)
	port, swapPort := f.cfg.Port, f.cfg.SwapPort
	for _, v := range []string{"v1", "v2"} {
		f.upload(helloRelease(t, v))
	}
	f.activate("v1")
	f.swap("v2") // v2 on swap_port, v1 retiring on port
	f.stop(false)
	run := filepath.Join(f.cfg.Root, "run")
	app, _ := os.ReadFile(filepath.Join(run, "app.pid"))
	ret, _ := os.ReadFile(filepath.Join(run, "retiring.pid"))
	if len(app) == 0 || len(ret) == 0 {
		entries, _ := os.ReadDir(run)
		t.Fatalf("pid files not found: %v", entries)
	}
	// Rewind to "v2 starting": the app pid file is v1's, starting is v2's.
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(run, "app.pid"), ret, 0o644))
	must(os.WriteFile(filepath.Join(run, "starting.pid"), app, 0o644))
	must(os.Remove(filepath.Join(run, "retiring.pid")))
	st, err := f.agent.store.State()
	must(err)
	st.Port, st.Retiring, st.Previous = 0, nil, ""
	st.Activation = &ActivationInfo{Kind: "activate", Version: "v2", From: "v1", Phase: "health", Since: time.Now().UTC(), PhaseSince: time.Now().UTC()}
	must(f.agent.store.SaveState(st))
	must(f.agent.store.SetCurrent("v1"))

	g := startFixture(t, f.cfg)
	var s Status
	proctest.Eventually(t, 10*time.Second, "adopted", func() bool { s = g.status(); return s.Activation == nil && s.Healthy })
	if s.Version != "v1" || s.Port != port {
		t.Errorf("after the restart: %s on port %d, want v1 on %d (swap_port %d)", s.Version, s.Port, port, swapPort)
	}
	if s.Retiring != nil {
		t.Errorf("a release that was only starting (never current, never in the balancer) is kept as retiring: %+v", *s.Retiring)
	}
}
