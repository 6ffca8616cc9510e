package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

const (
	// hookAllowance is added to the default activation timeout for a
	// release with before_start hooks.
	hookAllowance = time.Minute
	// restoreSlack is added to the previous release's health timeout when
	// it is put back after a failure.
	restoreSlack = 10 * time.Second
	// outputLines is how much of a failed release's output is reported.
	outputLines = 20
)

// busyError is a second activation while one runs (409).
type busyError struct{ info *ActivationInfo }

func (e *busyError) Error() string {
	i := e.info
	if i == nil {
		return "another activation is in progress"
	}
	if i.Kind == "recover" && i.Version == "" {
		return fmt.Sprintf("the agent is bringing the app back after its start (since %s); try again shortly", i.Since.Format(time.RFC3339))
	}
	return fmt.Sprintf("another activation is in progress: %s of %s (from %q) since %s, now in phase %s",
		i.Kind, i.Version, i.From, i.Since.Format(time.RFC3339), i.Phase)
}

// activationError is an activation that began and failed. The host runs
// Failure.Restored afterwards; status is 422 when that is healthy (or
// nothing was touched), 500 when the host is not serving.
type activationError struct {
	status  int
	failure ActivationFailure
}

func (e *activationError) Error() string {
	f := e.failure
	var b strings.Builder
	// The caller knows what it asked to activate: the message says what
	// happened, without repeating the call.
	fmt.Fprintf(&b, "failed in phase %s: %s", f.Phase, f.Reason)
	switch {
	case !f.Touched && f.Restored != "":
		fmt.Fprintf(&b, "; %s kept running untouched", f.Restored)
	case f.Restored != "" && f.RestoreError == "":
		fmt.Fprintf(&b, "; rolled back to %s, which is healthy", f.Restored)
	case f.Restored != "":
		fmt.Fprintf(&b, "; rolled back to %s, which is NOT healthy: %s", f.Restored, f.RestoreError)
	case f.RestoreError != "":
		fmt.Fprintf(&b, "; %s", f.RestoreError)
	default:
		b.WriteString("; no release was running before, so none runs now")
	}
	return b.String()
}

// activation is one switch to a release.
type activation struct {
	a       *Agent
	kind    string
	swap    bool // in the idle slot, beside the running release
	rel     release
	from    string
	fromRel *release
	began   time.Time
	phases  []Phase
	phaseAt time.Time
	phase   string
}

// Activate switches the app to version behind its health gate; see
// docs/agent.md. timeout 0 means the default for the release's spec.
func (a *Agent) Activate(version string, timeout time.Duration) (ActivateResult, error) {
	return a.switchTo("activate", version, "", timeout, false)
}

// Rollback activates the previous release.
func (a *Agent) Rollback(timeout time.Duration) (ActivateResult, error) {
	return a.switchTo("rollback", "", "", timeout, false)
}

// replayedError answers a request asked again after it ended: the answer
// it got the first time.
type replayedError struct{ o *ActivationOutcome }

func (e *replayedError) Error() string { return e.o.Error }

// switchTo runs one activation or rollback. A request with the ID of the
// one that ended last is not run again: it gets that one's answer.
func (a *Agent) switchTo(kind, version, id string, timeout time.Duration, swap bool) (ActivateResult, error) {
	if swap && a.cfg.SwapPort == 0 {
		return ActivateResult{}, errNoSwapPort
	}
	if !a.actMu.TryLock() {
		return ActivateResult{}, &busyError{a.activation()}
	}
	defer a.actMu.Unlock()
	if o := a.lastOutcome(); id != "" && o != nil && o.ID == id {
		if o.Result != nil {
			return *o.Result, nil
		}
		return ActivateResult{}, &replayedError{o}
	}
	began := time.Now()
	cur, err := a.store.Current()
	if err != nil {
		return ActivateResult{}, err
	}
	if kind == "rollback" {
		st, err := a.store.State()
		if err != nil {
			return ActivateResult{}, err
		}
		if st.Previous == "" {
			return ActivateResult{}, fmt.Errorf("%w: there is no previous release to roll back to", errNotFound)
		}
		version = st.Previous
	}
	unhold, err := a.store.hold(version, cur)
	if err != nil {
		return ActivateResult{}, err
	}
	defer unhold()
	rel, err := a.release(version)
	if err != nil {
		return ActivateResult{}, err
	}
	x := &activation{a: a, kind: kind, rel: rel, from: cur, began: began, phaseAt: began, swap: swap}
	if cur != "" {
		if r, err := a.release(cur); err == nil {
			x.fromRel = &r
		} else {
			a.log.Warn("the current release's metadata is unreadable; it cannot be restored if the activation fails", "current", cur, "err", err)
		}
	}
	a.setActivation(&ActivationInfo{Kind: kind, Version: version, From: cur, Phase: "hooks", Since: began.UTC(), PhaseSince: began.UTC(), ID: id})
	defer a.setActivation(nil)
	res, err := x.run(timeout)
	a.recordOutcome(kind, version, id, res, err)
	result := "ok"
	var ae *activationError
	switch {
	case res.Unchanged:
		result = "unchanged"
	case errors.As(err, &ae) && ae.status == http.StatusUnprocessableEntity:
		result = "failed"
	case err != nil:
		result = "broken"
	default:
		a.m.activation.Observe(time.Since(began).Seconds())
	}
	a.m.activations.WithLabelValues(kind, result).Inc()
	if err != nil {
		a.log.Error("activation failed", "kind", kind, "version", version, "from", cur, "err", err)
	} else {
		a.log.Info("activated", "kind", kind, "version", version, "from", cur, "took", time.Since(began), "unchanged", res.Unchanged)
	}
	return res, err
}

// defaultTimeout covers every step of the activation with the spec's own
// bounds.
func (x *activation) defaultTimeout() time.Duration {
	s := x.rel.spec
	d := time.Duration(s.Health.Timeout) + restoreSlack
	if len(s.Hooks.BeforeStart) > 0 {
		d += hookAllowance
	}
	if x.fromRel != nil {
		d += time.Duration(x.fromRel.spec.Stop.Timeout)
	}
	if x.preflight() {
		d += time.Duration(s.Health.Timeout) + time.Duration(s.Stop.Timeout)
	}
	return d
}

// port is the port the release will run on: the idle slot for a swap,
// else the current slot. Its before_start hooks get it as PORT.
func (x *activation) port() int {
	if x.swap {
		return x.a.otherPort(x.a.port())
	}
	return x.a.port()
}

func (x *activation) preflight() bool {
	// A swap starts the release beside the running one anyway.
	return *x.a.cfg.Preflight && !x.swap && x.from != "" && x.from != x.rel.version
}

func (x *activation) enter(phase string) {
	now := time.Now()
	if x.phase != "" {
		x.phases = append(x.phases, Phase{Name: x.phase, Millis: ms(now.Sub(x.phaseAt))})
	}
	x.phase, x.phaseAt = phase, now
	x.a.setPhase(phase)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (x *activation) run(timeout time.Duration) (ActivateResult, error) {
	a, rel := x.a, x.rel
	if x.from == rel.version {
		if snap := a.sup.snapshot(); snap.version == rel.version && snap.pid != 0 && snap.healthy {
			return ActivateResult{Version: rel.version, From: x.from, PID: snap.pid, Unchanged: true, Phases: []Phase{}}, nil
		}
	}
	if timeout <= 0 {
		timeout = x.defaultTimeout()
	}
	// Not the caller's context: an activation that began finishes (or
	// rolls back) even if the client goes away.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	info := a.activation()
	if err := a.updateState(func(st *agentState) { st.Activation = info }); err != nil {
		return ActivateResult{}, fmt.Errorf("activate %s: record the activation before starting it: %w", rel.version, err)
	}
	appendLog(rel.logPath, "%s of %s begins (from %q, timeout %s)", x.kind, rel.version, x.from, timeout)

	x.enter("hooks")
	// Who it runs as is settled before anything runs or stops: a refusal
	// (root without allow_root, a user agent.yaml does not allow) must
	// not come after the running release is gone.
	if _, err := a.sup.runAs(rel); err != nil {
		return x.untouched(err)
	}
	for i, argv := range rel.spec.Hooks.BeforeStart {
		if err := x.hook(ctx, i, argv); err != nil {
			return x.untouched(err)
		}
	}
	if x.swap {
		return x.runSwap(ctx)
	}
	if x.preflight() {
		x.enter("preflight")
		if err := x.runPreflight(ctx); err != nil {
			return x.untouched(err)
		}
	}

	x.enter("stop")
	if sv := a.sup.detach(); sv != nil && sv.proc != nil {
		if err := a.sup.stopProcess(sv.rel, sv.proc); err != nil {
			// It still holds the port; keep it, and say so.
			a.sup.supervise(sv.rel, sv.proc, false, sv.port)
			a.clearJournal(nil)
			return ActivateResult{}, &activationError{status: http.StatusInternalServerError, failure: ActivationFailure{
				Version: rel.version, Phase: "stop", Reason: err.Error(), Restored: sv.rel.version, Touched: true,
				RestoreError: "the running release could not be stopped", Output: x.output(),
			}}
		}
	}
	if err := removePidFile(a.sup.pidPath); err != nil {
		a.log.Warn("could not remove the pid file", "err", err)
	}
	a.m.up.Set(0)
	a.m.healthy.Set(0)

	x.enter("switch")
	if err := a.store.SetCurrent(rel.version); err != nil {
		return x.restore(err, nil)
	}
	a.m.setCurrent(rel.version)

	x.enter("start")
	if err := portFree(a.port()); err != nil {
		return x.restore(err, nil)
	}
	p, err := a.sup.start(rel, a.port(), "app")
	if err != nil {
		return x.restore(err, nil)
	}
	if err := writePidFile(a.sup.pidPath, p, rel.version, a.port()); err != nil {
		a.log.Error("the app runs but its pid file could not be written; a restarted agent will not find it", "err", err)
	}

	x.enter("health")
	if err := waitHealthy(ctx, p, a.port(), rel.spec.Health); err != nil {
		return x.restore(err, p)
	}
	x.enter("")
	a.sup.supervise(rel, p, true, a.port())
	a.m.up.Set(1)
	a.m.healthy.Set(1)
	took := time.Since(x.began)
	appendLog(rel.logPath, "%s of %s done: pid %d healthy after %s", x.kind, rel.version, p.pid, took.Round(time.Millisecond))
	x.clearJournal(func(st *agentState) {
		if x.from != rel.version {
			st.Previous = x.from
		}
	})
	a.prune()
	return ActivateResult{Version: rel.version, From: x.from, PID: p.pid, Millis: ms(took), Phases: x.phases}, nil
}

// clearJournal ends the activation in state.json, applying change too.
func (x *activation) clearJournal(change func(*agentState)) {
	x.a.clearJournal(change)
}

func (a *Agent) clearJournal(change func(*agentState)) {
	err := a.updateState(func(st *agentState) {
		st.Activation = nil
		if change != nil {
			change(st)
		}
	})
	if err != nil {
		a.log.Error("could not record the end of the activation; a restarted agent will check the app again", "err", err)
	}
}

func (x *activation) output() []string {
	lines, err := tailLog(x.rel.logPath, outputLines)
	if err != nil {
		return []string{"(output unreadable: " + err.Error() + ")"}
	}
	return lines
}

// untouched fails an activation before anything running was touched.
func (x *activation) untouched(cause error) (ActivateResult, error) {
	appendLog(x.rel.logPath, "%s of %s failed in phase %s: %v", x.kind, x.rel.version, x.phase, cause)
	f := ActivationFailure{Version: x.rel.version, Phase: x.phase, Reason: cause.Error(), Restored: x.from, Output: x.output()}
	x.clearJournal(nil)
	return ActivateResult{}, &activationError{status: http.StatusUnprocessableEntity, failure: f}
}

// restore puts the previous release back after the new one failed in the
// current phase; p is the new release's process, if it was started.
func (x *activation) restore(cause error, p *process) (ActivateResult, error) {
	a, rel := x.a, x.rel
	appendLog(rel.logPath, "%s of %s failed in phase %s: %v", x.kind, rel.version, x.phase, cause)
	f := ActivationFailure{Version: rel.version, Phase: x.phase, Reason: cause.Error(), Touched: true, Output: x.output()}
	fail := func(status int) (ActivateResult, error) {
		x.clearJournal(nil)
		return ActivateResult{}, &activationError{status: status, failure: f}
	}
	x.enter("rollback")
	if p != nil {
		if err := a.sup.stopProcess(rel, p); err != nil {
			f.RestoreError = err.Error()
			a.sup.supervise(rel, p, false, a.port())
			return fail(http.StatusInternalServerError)
		}
	}
	if err := removePidFile(a.sup.pidPath); err != nil {
		a.log.Warn("could not remove the pid file", "err", err)
	}
	switch {
	case x.from == "":
		if err := a.store.SetCurrent(""); err != nil {
			f.RestoreError = err.Error()
			return fail(http.StatusInternalServerError)
		}
		a.m.setCurrent("")
		return fail(http.StatusUnprocessableEntity)
	case x.from == rel.version || x.fromRel == nil:
		// Nothing else to go back to: keep trying this one.
		if x.fromRel == nil && x.from != rel.version {
			f.RestoreError = fmt.Sprintf("the previous release %s cannot be read; %s stays current and is restarted with backoff", x.from, rel.version)
		} else {
			f.RestoreError = "it is the release that failed; it is restarted with backoff"
		}
		f.Restored = rel.version
		a.sup.supervise(rel, nil, false, a.port())
		return fail(http.StatusInternalServerError)
	}
	prev := *x.fromRel
	if err := a.store.SetCurrent(prev.version); err != nil {
		f.RestoreError = err.Error()
		return fail(http.StatusInternalServerError)
	}
	a.m.setCurrent(prev.version)
	f.Restored = prev.version
	if err := portFree(a.port()); err != nil {
		f.RestoreError = err.Error()
		a.sup.supervise(prev, nil, false, a.port())
		return fail(http.StatusInternalServerError)
	}
	pp, err := a.sup.start(prev, a.port(), "app")
	if err != nil {
		f.RestoreError = err.Error()
		a.sup.supervise(prev, nil, false, a.port())
		return fail(http.StatusInternalServerError)
	}
	if err := writePidFile(a.sup.pidPath, pp, prev.version, a.port()); err != nil {
		a.log.Error("the app runs but its pid file could not be written; a restarted agent will not find it", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(prev.spec.Health.Timeout)+restoreSlack)
	defer cancel()
	herr := waitHealthy(ctx, pp, a.port(), prev.spec.Health)
	a.sup.supervise(prev, pp, herr == nil, a.port())
	if herr != nil {
		f.RestoreError = herr.Error()
		return fail(http.StatusInternalServerError)
	}
	a.m.up.Set(1)
	a.m.healthy.Set(1)
	appendLog(prev.logPath, "back to %s after %s of %s failed; pid %d healthy", prev.version, x.kind, rel.version, pp.pid)
	return fail(http.StatusUnprocessableEntity)
}

// hook runs before_start hook i in the release directory.
func (x *activation) hook(ctx context.Context, i int, argv []string) error {
	rel := x.rel
	name := fmt.Sprintf("before_start hook %d %q", i+1, argv)
	appendLog(rel.logPath, "running %s", name)
	p, err := x.a.sup.spawn(rel, x.port(), "hook", argv)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { _ = p.killAll() }() // anything it left in the background
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.killAll()
		t := time.NewTimer(killWait)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
		return fmt.Errorf("%s did not finish before the activation's deadline; killed", name)
	}
	if !p.succeeded() {
		return fmt.Errorf("%s %s", name, p.exited())
	}
	return nil
}

// runPreflight starts the release on a spare port and waits until it is
// healthy there, while the running release keeps serving; then stops it.
func (x *activation) runPreflight(ctx context.Context) error {
	a, rel := x.a, x.rel
	port, err := sparePort()
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	p, err := a.sup.start(rel, port, "preflight")
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	pidPath := a.preflightPidPath()
	if err := writePidFile(pidPath, p, rel.version, port); err != nil {
		a.log.Warn("could not write the preflight pid file", "err", err)
	}
	herr := waitHealthy(ctx, p, port, rel.spec.Health)
	serr := a.sup.stopProcess(rel, p)
	if err := removePidFile(pidPath); err != nil {
		a.log.Warn("could not remove the preflight pid file", "err", err)
	}
	if herr != nil {
		return fmt.Errorf("preflight on spare port %d: %w", port, herr)
	}
	if serr != nil {
		return fmt.Errorf("preflight on spare port %d: %w", port, serr)
	}
	return nil
}

func (a *Agent) preflightPidPath() string { return filepath.Join(a.store.run, "preflight.pid") }

// portFree checks that nothing listens on the app's port, which the
// health check would otherwise reach instead of the release it gates.
func portFree(port int) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		who := "a process the agent did not start"
		if w := whoListens(port); w != "" {
			who += ": " + w
		}
		return fmt.Errorf("port %d is taken by %s, so the app cannot listen there: %w", port, who, err)
	}
	return ln.Close()
}

// sparePort returns a loopback port nothing listens on right now.
func sparePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a spare port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// recover brings the app back when the agent starts: it stops a preflight
// a killed agent left behind, adopts the app if its pid file names a live
// process of the current release, finishes an activation the previous
// agent was stopped in (health gate, and rollback if it fails), and
// otherwise starts the current release.
func (a *Agent) recover() error {
	st, err := a.store.State()
	if err != nil {
		a.log.Error("agent state unreadable; starting from the current link alone", "err", err)
	}
	cur, err := a.store.Current()
	if err != nil {
		return err
	}
	a.stopLeftover(a.preflightPidPath())
	proc := a.recoverSlots(cur, st)
	keep := map[string]bool{}
	if proc != nil {
		keep[proc.cgroup] = true
	}
	a.slotMu.Lock()
	if a.retiring != nil {
		keep[a.retiring.proc.cgroup] = true
	}
	a.slotMu.Unlock()
	removed, killed, err := a.sup.contain.sweep(keep)
	if err != nil {
		a.log.Error("could not clear what a previous agent left in its cgroups", "err", err)
	}
	if removed > 0 {
		a.log.Info("removed empty cgroups a previous agent left", "count", removed)
	}
	if killed > 0 {
		a.log.Warn("stopped app processes a previous agent lost track of (started just before it was killed)", "cgroups", killed)
	}
	a.m.setCurrent(cur)
	if cur == "" {
		if st.Activation != nil {
			a.clearJournal(nil)
		}
		return nil
	}
	rel, err := a.release(cur)
	if err != nil {
		return fmt.Errorf("current release: %w", err)
	}
	if act := st.Activation; act != nil && act.Version == cur && act.From != cur {
		return a.finishInterrupted(rel, act, proc)
	}
	if st.Activation != nil {
		a.log.Info("the previous agent stopped before it switched; the current release stays", "current", cur, "was activating", st.Activation.Version)
		a.clearJournal(nil)
	}
	a.sup.supervise(rel, proc, false, a.port())
	if proc == nil {
		a.log.Info("starting the current release", "version", cur)
	}
	return nil
}

// adopt takes over the process rec names. When its leader is gone it
// stops what the instance left (processes of its cgroup or group, which
// would hold the port) and reports no process.
func (a *Agent) adopt(rec pidRecord) (*process, bool) {
	if p, ok := adoptProcess(a.ctx, rec); ok {
		return p, true
	}
	n, err := reapOrphans(rec)
	switch {
	case err != nil:
		a.log.Error("the app's leader is gone and what it started could not be stopped", "pid", rec.PID, "version", rec.Version, "cgroup", rec.Cgroup, "err", err)
	case n > 0:
		a.log.Warn("the app's leader is gone; stopped what it left running", "pid", rec.PID, "version", rec.Version, "cgroup", rec.Cgroup, "processes", n)
	}
	return nil, false
}

// stopLeftover stops the process a pid file names, if it still runs, and
// removes the file.
func (a *Agent) stopLeftover(pidPath string) {
	rec, ok, err := readPidFile(pidPath)
	if err != nil || !ok {
		return
	}
	if p, alive := a.adopt(rec); alive {
		rel, err := a.release(rec.Version)
		if err != nil {
			rel = release{version: rec.Version, logPath: a.store.LogPath(rec.Version)}
			rel.spec.ApplyDefaults()
		}
		a.log.Info("stopping a process the previous agent left", "pid", p.pid, "version", rec.Version, "port", rec.Port)
		if err := a.sup.stopProcess(rel, p); err != nil {
			a.log.Error("could not stop a leftover process", "pid", p.pid, "err", err)
		}
	}
	if err := removePidFile(pidPath); err != nil {
		a.log.Warn("could not remove a stale pid file", "err", err)
	}
}

// finishInterrupted completes an activation of rel that the previous agent
// was stopped in after it had switched current: rel must pass its health
// gate, or the release it came from is put back. How it ends is recorded
// under the request's ID, so a caller asking again is answered, not run
// again. (One stopped before it switched changed nothing and runs again
// when asked again.)
func (a *Agent) finishInterrupted(rel release, act *ActivationInfo, proc *process) (err error) {
	var res ActivateResult
	defer func() {
		if act.ID != "" {
			a.recordOutcome(act.Kind, rel.version, act.ID, res, err)
		}
	}()
	a.setActivation(&ActivationInfo{Kind: "recover", Version: rel.version, From: act.From, Phase: "start", Since: time.Now().UTC()})
	x := &activation{a: a, kind: "recover", rel: rel, from: act.From, began: time.Now(), phaseAt: time.Now(), phase: "start"}
	if act.From != "" {
		if r, err := a.release(act.From); err == nil {
			x.fromRel = &r
		}
	}
	a.log.Info("finishing an activation the previous agent was stopped in", "version", rel.version, "from", act.From)
	if proc == nil {
		p, err := a.sup.start(rel, a.port(), "app")
		if err != nil {
			_, err := x.restore(err, nil)
			return err
		}
		if err := writePidFile(a.sup.pidPath, p, rel.version, a.port()); err != nil {
			a.log.Error("the app runs but its pid file could not be written", "err", err)
		}
		proc = p
	}
	x.enter("health")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rel.spec.Health.Timeout))
	defer cancel()
	if err := waitHealthy(ctx, proc, a.port(), rel.spec.Health); err != nil {
		_, err := x.restore(err, proc)
		return err
	}
	a.sup.supervise(rel, proc, true, a.port())
	x.clearJournal(func(st *agentState) { st.Previous = act.From })
	a.log.Info("finished the interrupted activation", "version", rel.version, "pid", proc.pid)
	res = ActivateResult{Version: rel.version, From: act.From, PID: proc.pid, Millis: float64(time.Since(act.Since).Milliseconds())}
	return nil
}
