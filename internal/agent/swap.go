package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"
)

// Swap (docs/agent.md): with swap_port set, the app has two slots. A swap
// activation starts the new release in the idle slot beside the running
// one and, once it is healthy, makes it current and supervised; the old
// one keeps running, unsupervised, as the retiring release, so the load
// balancer can move from one to the other without a moment of nobody
// serving. The caller stops it with Retire once the balancer drained it.

// retiringApp is the release a swap left running in the other slot.
type retiringApp struct {
	rel  release
	proc *process
	port int
}

// RetiringInfo is the retiring release as status reports it.
type RetiringInfo struct {
	Version string `json:"version"`
	Port    int    `json:"port"`
	PID     int    `json:"pid"`
}

// RetireResult answers POST /v1/retire.
type RetireResult struct {
	// Stopped is the release that was stopped; nil when none was retiring.
	Stopped *RetiringInfo `json:"stopped"`
	// How says how it ended: "exited after SIGTERM", ...
	How string `json:"how,omitempty"`
}

// errNoSwapPort refuses a swap on an agent with one slot.
var errNoSwapPort = fmt.Errorf("%w: this agent has no swap_port in agent.yaml, so it cannot run a second release beside the first", errBadInput)

// port is the slot the current release runs in.
func (a *Agent) port() int {
	a.slotMu.Lock()
	defer a.slotMu.Unlock()
	return a.slotPort
}

// otherPort is the slot port is not.
func (a *Agent) otherPort(port int) int {
	if port == a.cfg.Port {
		return a.cfg.SwapPort
	}
	return a.cfg.Port
}

func (a *Agent) retiringInfo() *RetiringInfo {
	a.slotMu.Lock()
	defer a.slotMu.Unlock()
	r := a.retiring
	if r == nil {
		return nil
	}
	return &RetiringInfo{Version: r.rel.version, Port: r.port, PID: r.proc.pid}
}

func (a *Agent) retiringPidPath() string { return filepath.Join(a.store.run, "retiring.pid") }
func (a *Agent) startingPidPath() string { return filepath.Join(a.store.run, "starting.pid") }

// runSwap starts x's release in the idle slot while the current one keeps
// serving, and makes it current once healthy; the current one becomes the
// retiring release. A failure before that stops the new process and
// leaves everything as it was.
func (x *activation) runSwap(ctx context.Context) (ActivateResult, error) {
	a, rel := x.a, x.rel
	if x.revive() {
		return x.swapped(nil, 0)
	}
	if r := a.retiringInfo(); r != nil {
		return x.untouched(fmt.Errorf("%s is still retiring in the other slot (pid %d on port %d): retire it first (POST /v1/retire)", r.Version, r.PID, r.Port))
	}
	from := a.port()
	idle := a.otherPort(from)
	x.enter("start")
	if err := portFree(idle); err != nil {
		return x.untouched(err)
	}
	p, err := a.sup.start(rel, idle, "app")
	if err != nil {
		return x.untouched(err)
	}
	if err := writePidFile(a.startingPidPath(), p, rel.version, idle); err != nil {
		a.log.Warn("could not write the starting pid file", "err", err)
	}
	x.enter("health")
	if err := waitHealthy(ctx, p, idle, rel.spec.Health); err != nil {
		if serr := a.sup.stopProcess(rel, p); serr != nil {
			err = fmt.Errorf("%w; and stopping it: %v", err, serr)
		}
		_ = removePidFile(a.startingPidPath())
		return x.untouched(fmt.Errorf("in the idle slot (port %d): %w", idle, err))
	}
	return x.swapped(p, idle)
}

// revive is a rollback by swap whose target, the previous release, is
// still retiring in the other slot: it only trades places with the
// current one. It reports whether it did.
func (x *activation) revive() bool {
	a := x.a
	a.slotMu.Lock()
	r := a.retiring
	a.slotMu.Unlock()
	return x.kind == "rollback" && r != nil && r.rel.version == x.rel.version && r.proc.alive()
}

// swapped makes the release in the idle slot current: p on port, or, when
// p is nil, the retiring release brought back.
func (x *activation) swapped(p *process, port int) (ActivateResult, error) {
	a, rel := x.a, x.rel
	x.enter("switch")
	a.slotMu.Lock()
	back := a.retiring
	a.slotMu.Unlock()
	if p == nil {
		p, port = back.proc, back.port
	} else {
		back = nil
	}
	old := a.sup.detach()
	// The pid files first, the old release's before the app's is
	// overwritten: an agent killed at any point finds both processes
	// (recoverSlots), the app by the release current names.
	var ret *retiringApp
	if old != nil && old.proc != nil && old.proc.alive() {
		ret = &retiringApp{rel: old.rel, proc: old.proc, port: old.port}
		if err := writePidFile(a.retiringPidPath(), old.proc, old.rel.version, old.port); err != nil {
			a.log.Warn("could not write the retiring pid file", "err", err)
		}
	} else if err := removePidFile(a.retiringPidPath()); err != nil {
		a.log.Warn("could not remove the retiring pid file", "err", err)
	}
	if err := writePidFile(a.sup.pidPath, p, rel.version, port); err != nil {
		a.log.Error("the app runs but its pid file could not be written; a restarted agent will not find it", "err", err)
	}
	_ = removePidFile(a.startingPidPath())
	if err := a.store.SetCurrent(rel.version); err != nil {
		a.log.Error("the release runs in the new slot but current could not be switched; a restarted agent goes by the pid files", "err", err)
	}
	a.m.setCurrent(rel.version)
	a.slotMu.Lock()
	a.slotPort, a.retiring = port, ret
	a.slotMu.Unlock()
	a.sup.supervise(rel, p, true, port)
	a.m.up.Set(1)
	a.m.healthy.Set(1)
	x.enter("")
	took := time.Since(x.began)
	what := fmt.Sprintf("started in the idle slot (port %d)", port)
	if back != nil {
		what = fmt.Sprintf("back from retiring in port %d", port)
	}
	appendLog(rel.logPath, "%s of %s done by swap: %s, pid %d healthy after %s", x.kind, rel.version, what, p.pid, took.Round(time.Millisecond))
	x.clearJournal(func(st *agentState) {
		st.Port = port
		st.Retiring = nil
		if ret != nil {
			st.Retiring = &RetiringInfo{Version: ret.rel.version, Port: ret.port, PID: ret.proc.pid}
		}
		if x.from != rel.version {
			st.Previous = x.from
		}
	})
	res := ActivateResult{Version: rel.version, From: x.from, PID: p.pid, Millis: ms(took), Phases: x.phases, Port: port}
	if ret != nil {
		res.Retiring = &RetiringInfo{Version: ret.rel.version, Port: ret.port, PID: ret.proc.pid}
	}
	return res, nil
}

// Retire stops the retiring release, gracefully as its spec says. The
// caller does it once the load balancer has drained that slot.
func (a *Agent) Retire() (RetireResult, error) {
	if !a.actMu.TryLock() {
		return RetireResult{}, &busyError{a.activation()}
	}
	defer a.actMu.Unlock()
	a.slotMu.Lock()
	r := a.retiring
	a.slotMu.Unlock()
	if r == nil {
		return RetireResult{}, nil
	}
	info := &RetiringInfo{Version: r.rel.version, Port: r.port, PID: r.proc.pid}
	how, err := r.proc.stop(r.rel.spec.Stop.Signal, time.Duration(r.rel.spec.Stop.Timeout))
	if err != nil {
		return RetireResult{}, fmt.Errorf("retire %s (pid %d on port %d): %w", r.rel.version, r.proc.pid, r.port, err)
	}
	appendLog(r.rel.logPath, "retired from port %d: pid %d %s", r.port, r.proc.pid, how)
	a.log.Info("retired the old release", "version", r.rel.version, "pid", r.proc.pid, "port", r.port, "how", how)
	a.slotMu.Lock()
	a.retiring = nil
	a.slotMu.Unlock()
	if err := removePidFile(a.retiringPidPath()); err != nil {
		a.log.Warn("could not remove the retiring pid file", "err", err)
	}
	if err := a.updateState(func(st *agentState) { st.Retiring = nil }); err != nil {
		a.log.Warn("could not record the retirement", "err", err)
	}
	return RetireResult{Stopped: info, How: how}, nil
}

// recoverSlots adopts what a previous agent left running, going by the pid
// files rather than by current: the process of the current release (the
// app's pid file first, then a retiring or starting one) becomes the app
// and its port the current slot; another live release in the other slot
// is kept as retiring, since the load balancer may still send it
// requests; anything else is stopped.
func (a *Agent) recoverSlots(cur string, st agentState) *process {
	a.slotMu.Lock()
	a.slotPort = a.cfg.Port
	if a.cfg.SwapPort != 0 && st.Port == a.cfg.SwapPort {
		a.slotPort = a.cfg.SwapPort
	}
	a.slotMu.Unlock()
	type found struct {
		path string
		rec  pidRecord
		proc *process
	}
	var alive []found
	seen := map[int]bool{} // one process may be in two files mid-swap
	for _, path := range []string{a.sup.pidPath, a.retiringPidPath(), a.startingPidPath()} {
		rec, ok, err := readPidFile(path)
		if err != nil {
			a.log.Warn("pid file unreadable", "path", path, "err", err)
		}
		if ok && !seen[rec.PID] {
			if p, live := a.adopt(rec); live {
				alive = append(alive, found{path, rec, p})
				seen[rec.PID] = true
			}
		}
		if err := removePidFile(path); err != nil {
			a.log.Warn("could not remove a pid file", "path", path, "err", err)
		}
	}
	slot := func(port int) bool { return port == a.cfg.Port || (a.cfg.SwapPort != 0 && port == a.cfg.SwapPort) }
	var app *found
	for i := range alive {
		if f := &alive[i]; app == nil && cur != "" && f.rec.Version == cur && slot(f.rec.Port) {
			app = f
		}
	}
	var proc *process
	if app != nil {
		proc = app.proc
		a.slotMu.Lock()
		a.slotPort = app.rec.Port
		a.slotMu.Unlock()
		if err := writePidFile(a.sup.pidPath, proc, cur, app.rec.Port); err != nil {
			a.log.Warn("could not write the pid file", "err", err)
		}
		a.log.Info("adopted the running app", "version", cur, "pid", proc.pid, "port", app.rec.Port)
	}
	for i := range alive {
		f := &alive[i]
		if f == app {
			continue
		}
		// Only a release that was retiring stays so: one a swap was still
		// starting never served through the load balancer.
		other := a.cfg.SwapPort != 0 && f.path == a.retiringPidPath() && f.rec.Port == a.otherPort(a.port()) && f.rec.Version != cur
		if other && a.retiringInfo() == nil {
			rel, err := a.release(f.rec.Version)
			if err == nil {
				a.slotMu.Lock()
				a.retiring = &retiringApp{rel: rel, proc: f.proc, port: f.rec.Port}
				a.slotMu.Unlock()
				if err := writePidFile(a.retiringPidPath(), f.proc, rel.version, f.rec.Port); err != nil {
					a.log.Warn("could not write the retiring pid file", "err", err)
				}
				a.log.Info("adopted the retiring release", "version", rel.version, "pid", f.proc.pid, "port", f.rec.Port)
				continue
			}
		}
		rel, err := a.release(f.rec.Version)
		if err != nil {
			rel = release{version: f.rec.Version, logPath: a.store.LogPath(f.rec.Version)}
			rel.spec.ApplyDefaults()
		}
		a.log.Info("stopping a process the previous agent left", "pid", f.proc.pid, "version", f.rec.Version, "port", f.rec.Port)
		if err := a.sup.stopProcess(rel, f.proc); err != nil {
			a.log.Error("could not stop a leftover process", "pid", f.proc.pid, "err", err)
		}
	}
	port, ret := a.port(), a.retiringInfo()
	if err := a.updateState(func(s *agentState) { s.Port, s.Retiring = port, ret }); err != nil {
		a.log.Warn("could not record the slots", "err", err)
	}
	return proc
}

func (a *Agent) handleRetire(w http.ResponseWriter, r *http.Request) {
	if err := readBody(w, r, &struct{}{}, true); err != nil {
		a.answerError(w, err)
		return
	}
	res, err := a.Retire()
	if err != nil {
		a.answerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
