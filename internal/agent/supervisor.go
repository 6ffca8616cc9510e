package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// logCapEvery is how often the running app's log size is checked.
const logCapEvery = time.Second

// release is what starting one version needs.
type release struct {
	version string
	spec    config.App
	dir     string
	logPath string
}

// supervisor runs the app: at most one supervised release at a time, kept
// running (restarted with backoff when it exits on its own), its health
// checked every interval and its log capped.
type supervisor struct {
	contain *containment
	// user and group are agent.yaml's: who apps run as unless their spec
	// says; allowRoot lets that be root; allowUsers and allowGroups are
	// the others a spec may name.
	user, group             string
	allowRoot               bool
	allowUsers, allowGroups []string
	backoff, maxBackoff     time.Duration
	logMax                  int64
	pidPath                 string
	log                     *slog.Logger
	m                       *metrics

	mu  sync.Mutex
	cur *supervised
}

// supervised is one release under supervision.
type supervised struct {
	rel release
	// port is the slot it runs in: the agent's port, or its swap_port.
	port     int
	cancel   context.CancelFunc
	loopDone chan struct{}

	mu        sync.Mutex
	proc      *process // nil while waiting to restart
	state     string
	healthy   bool
	healthErr string
	restarts  int
	lastExit  string
}

// appSnapshot is the supervised app as status reports it.
type appSnapshot struct {
	version   string
	state     string
	pid       int
	startedAt time.Time
	adopted   bool
	healthy   bool
	healthErr string
	restarts  int
	lastExit  string
}

func (s *supervisor) snapshot() appSnapshot {
	s.mu.Lock()
	sv := s.cur
	s.mu.Unlock()
	if sv == nil {
		return appSnapshot{state: stateStopped}
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	snap := appSnapshot{
		version: sv.rel.version, state: sv.state, healthy: sv.healthy, healthErr: sv.healthErr,
		restarts: sv.restarts, lastExit: sv.lastExit,
	}
	if sv.proc != nil && sv.proc.alive() {
		snap.pid, snap.startedAt, snap.adopted = sv.proc.pid, sv.proc.startedAt, sv.proc.adopted
	}
	return snap
}

// appEnv is the app's environment, built from its spec alone: never the
// agent's, which may hold the agent's token (under any name), or sockets
// and descriptors meant for the agent (NOTIFY_SOCKET, LISTEN_FDS). The
// system's few (baseEnv: PATH, and on Windows what its programs need) and
// HOST have defaults the spec may replace; PORT and VERSION are the
// agent's. HOST is 0.0.0.0, the address to listen on as PORT is the port:
// what the frameworks that read HOST (SvelteKit, Nitro) listen on unset,
// so both the agent's health check and the load balancer reach the app.
func appEnv(rel release, port int) []string {
	vars := baseEnv()
	vars["HOST"] = "0.0.0.0"
	for k, v := range rel.spec.Env {
		vars[k] = v
	}
	vars["PORT"] = fmt.Sprint(port)
	vars["VERSION"] = rel.version
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// expandVars replaces ${NAME} with NAME's value in env; other text,
// including ${NAME} of an unset NAME, stays as written.
func expandVars(s string, env []string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	lookup := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		lookup[k] = v
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		b.WriteString(s[:i])
		if v, ok := lookup[s[i+2:i+j]]; ok {
			b.WriteString(v)
		} else {
			b.WriteString(s[i : i+j+1])
		}
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return b.String()
}

// command builds the argv of a release's run command or hook: ${VAR}
// expanded, and a program with a slash taken relative to the release.
func command(rel release, argv, env []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = expandVars(a, env)
	}
	if strings.ContainsAny(out[0], `/\`) && !filepath.IsAbs(out[0]) {
		out[0] = filepath.Join(rel.dir, out[0])
	}
	return out
}

// start starts a release on port, without supervising it yet; role names
// its cgroup (app, preflight).
func (s *supervisor) start(rel release, port int, role string) (*process, error) {
	if err := capLog(rel.logPath, s.logMax); err != nil {
		s.log.Warn("could not rotate the app log", "version", rel.version, "err", err)
	}
	// The command as written: expanded, it could show values of env.
	appendLog(rel.logPath, "starting %s on port %d: %q", rel.version, port, rel.spec.Run)
	p, err := s.spawn(rel, port, role, rel.spec.Run)
	if err != nil {
		appendLog(rel.logPath, "could not start %s: %v", rel.version, err)
		return nil, fmt.Errorf("start %s: %w", rel.version, err)
	}
	s.log.Info("started app", "version", rel.version, "pid", p.pid, "port", port)
	return p, nil
}

// runAs is who rel's processes run as: its spec's user, else agent.yaml's;
// its spec's group, else agent.yaml's (when the spec names no user: a user
// of its own comes with its own group), else the user's. A spec may name
// only agent.yaml's user and group and those it allows.
func (s *supervisor) runAs(rel release) (*runAs, error) {
	u, g := s.user, s.group
	if su := rel.spec.User; su != "" {
		if su != s.user && !slices.Contains(s.allowUsers, su) {
			return nil, fmt.Errorf("the app spec asks to run as user %s, which agent.yaml does not allow (user: %q, allow_users: %q)", su, s.user, s.allowUsers)
		}
		u, g = su, ""
	}
	if sg := rel.spec.Group; sg != "" {
		if sg != s.group && !slices.Contains(s.allowGroups, sg) {
			return nil, fmt.Errorf("the app spec asks to run in group %s, which agent.yaml does not allow (group: %q, allow_groups: %q)", sg, s.group, s.allowGroups)
		}
		g = sg
	}
	return resolveRunAs(u, g, s.allowRoot)
}

// spawn starts argv (the run command or a hook) of rel with the app's
// environment for port, as the app's user, contained.
func (s *supervisor) spawn(rel release, port int, role string, argv []string) (*process, error) {
	id, err := s.runAs(rel)
	if err != nil {
		return nil, err
	}
	env := id.env(appEnv(rel, port), rel.spec.Env)
	cmd := command(rel, argv, env)
	// Found in the app's PATH, not the agent's.
	if cmd[0], err = lookPath(cmd[0], env); err != nil {
		return nil, err
	}
	return startProcess(s.contain, role, id, cmd, rel.dir, env, rel.logPath)
}

// stopProcess stops p the way rel's spec says, and notes it in its log.
func (s *supervisor) stopProcess(rel release, p *process) error {
	how, err := p.stop(rel.spec.Stop.Signal, time.Duration(rel.spec.Stop.Timeout))
	if err != nil {
		appendLog(rel.logPath, "could not stop pid %d: %v", p.pid, err)
		return fmt.Errorf("stop %s (pid %d): %w", rel.version, p.pid, err)
	}
	appendLog(rel.logPath, "pid %d %s", p.pid, how)
	s.log.Info("stopped app", "version", rel.version, "pid", p.pid, "how", how)
	return nil
}

// supervise takes over a running process of rel on port (or nil, to start
// one there).
func (s *supervisor) supervise(rel release, p *process, healthy bool, port int) {
	ctx, cancel := context.WithCancel(context.Background())
	sv := &supervised{rel: rel, port: port, cancel: cancel, loopDone: make(chan struct{}), proc: p, state: stateRunning, healthy: healthy}
	if p == nil {
		sv.state = stateStarting
	}
	s.mu.Lock()
	if s.cur != nil {
		s.mu.Unlock()
		panic("agent: supervise called while another release is supervised")
	}
	s.cur = sv
	s.mu.Unlock()
	s.m.up.Set(boolGauge(p != nil))
	s.m.healthy.Set(boolGauge(healthy))
	go s.loop(ctx, sv)
}

// detach ends supervision and returns what was supervised, with its
// process still running (or nil).
func (s *supervisor) detach() *supervised {
	s.mu.Lock()
	sv := s.cur
	s.cur = nil
	s.mu.Unlock()
	if sv == nil {
		return nil
	}
	sv.cancel()
	<-sv.loopDone
	return sv
}

// loop keeps one release running until ctx ends.
func (s *supervisor) loop(ctx context.Context, sv *supervised) {
	defer close(sv.loopDone)
	interval := time.Duration(sv.rel.spec.Health.Interval)
	healthTick := time.NewTicker(interval)
	defer healthTick.Stop()
	logTick := time.NewTicker(logCapEvery)
	defer logTick.Stop()
	sv.mu.Lock()
	first, healthy := sv.proc, sv.healthy
	sv.mu.Unlock()
	if first != nil && !healthy {
		s.check(ctx, sv, first) // an adopted app: say soon whether it is healthy
	}
	delay := time.Duration(0)
	for {
		sv.mu.Lock()
		p := sv.proc
		sv.mu.Unlock()
		if p == nil {
			if !s.restart(ctx, sv, &delay) {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			s.crashed(sv, p)
			if time.Since(p.startedAt) >= s.maxBackoff {
				delay = 0 // it ran long enough: the next restart is quick again
			}
		case <-healthTick.C:
			s.check(ctx, sv, p)
		case <-logTick.C:
			if err := capLog(sv.rel.logPath, s.logMax); err != nil {
				s.log.Warn("could not rotate the app log", "version", sv.rel.version, "err", err)
			}
		}
	}
}

func (s *supervisor) check(ctx context.Context, sv *supervised, p *process) {
	err := probe(ctx, healthURL(sv.port, sv.rel.spec.Health.Path), probeTimeout(sv.rel.spec.Health))
	if ctx.Err() != nil || !p.alive() {
		return
	}
	sv.mu.Lock()
	was := sv.healthy
	sv.healthy = err == nil
	sv.healthErr = ""
	if err != nil {
		sv.healthErr = err.Error()
	}
	sv.mu.Unlock()
	s.m.healthy.Set(boolGauge(err == nil))
	if was != (err == nil) {
		s.log.Info("app health changed", "version", sv.rel.version, "healthy", err == nil, "check", sv.healthErr)
	}
}

func (s *supervisor) crashed(sv *supervised, p *process) {
	how := p.exited()
	// What the app started and left behind would keep its port.
	if err := p.killAll(); err != nil {
		s.log.Warn("could not kill what the crashed app left behind", "pid", p.pid, "err", err)
	}
	sv.mu.Lock()
	sv.proc = nil
	sv.state = stateBackoff
	sv.healthy = false
	sv.healthErr = "not running"
	sv.restarts++
	sv.lastExit = how
	n := sv.restarts
	sv.mu.Unlock()
	s.m.up.Set(0)
	s.m.healthy.Set(0)
	s.m.restarts.Inc()
	if err := removePidFile(s.pidPath); err != nil {
		s.log.Warn("could not remove the pid file", "err", err)
	}
	appendLog(sv.rel.logPath, "pid %d %s; restarting (restart %d)", p.pid, how, n)
	s.log.Warn("app exited on its own; restarting", "version", sv.rel.version, "pid", p.pid, "exit", how, "restarts", n)
}

// restart waits out the backoff and starts the release again; false when
// ctx ended first.
func (s *supervisor) restart(ctx context.Context, sv *supervised, delay *time.Duration) bool {
	sv.mu.Lock()
	restarts := sv.restarts
	sv.mu.Unlock()
	if restarts > 0 { // nothing to wait for when supervise was given no process
		switch {
		case *delay == 0:
			*delay = s.backoff
		default:
			*delay = min(*delay*2, s.maxBackoff)
		}
		t := time.NewTimer(*delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	p, err := s.start(sv.rel, sv.port, "app")
	if err != nil {
		sv.mu.Lock()
		sv.restarts++
		sv.lastExit = err.Error()
		sv.mu.Unlock()
		s.m.restarts.Inc()
		s.log.Error("could not restart the app", "version", sv.rel.version, "err", err)
		return ctx.Err() == nil
	}
	if err := writePidFile(s.pidPath, p, sv.rel.version, sv.port); err != nil {
		s.log.Error("the app runs but its pid file could not be written; a restarted agent will not find it", "err", err)
	}
	sv.mu.Lock()
	sv.proc = p
	sv.state = stateRunning
	sv.mu.Unlock()
	s.m.up.Set(1)
	return true
}
