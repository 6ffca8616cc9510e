package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/secretfile"
)

// Options are what New needs besides the config.
type Options struct {
	// Logger gets the agent's structured log; nil discards it.
	Logger *slog.Logger
	// Out gets the one-line notices a user must see, such as where a
	// generated token was written; nil discards them.
	Out io.Writer
	// Version is zerodown's, reported in the status as the agent's.
	Version string
}

// Agent is `zerodown agent`: the release store, the supervised app and the
// HTTP API over both.
type Agent struct {
	cfg   *config.Agent
	store *Store
	sup   *supervisor
	log   *slog.Logger
	out   io.Writer
	// version is zerodown's, for the status.
	version string
	token   string
	m       *metrics
	tls     *tls.Config

	// actMu is held by the one activation (or recovery) in progress; act
	// says what it is doing, for status and for a second caller's 409.
	actMu   sync.Mutex
	actInfo sync.Mutex
	act     *ActivationInfo
	last    *ActivationOutcome // actInfo; how the last one ended
	// stateMu serializes read-modify-write of state.json.
	stateMu sync.Mutex

	// slotPort is the port the current release runs on: cfg.Port, or
	// cfg.SwapPort after a swap; retiring is the release a swap left
	// running on the other slot until the caller retires it.
	slotMu   sync.Mutex
	slotPort int
	retiring *retiringApp

	// ctx ends at Shutdown; adopted processes are polled until then.
	ctx    context.Context
	cancel context.CancelFunc
	srv    *http.Server
	ln     net.Listener
	bg     sync.WaitGroup
	served chan error
}

// New opens the release store under cfg.Root and loads or creates the
// token. Nothing runs until Start.
func New(cfg *config.Agent, opts Options) (*Agent, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	store, err := openStore(cfg.Root, int64(cfg.MaxArtifactBytes), int64(cfg.MaxUnpackedBytes), logger)
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	a := &Agent{
		cfg: cfg, store: store, log: logger, out: out, m: m, version: opts.Version,
		slotPort: cfg.Port,
		sup: &supervisor{
			contain:     newContainment(containName(cfg.Root)),
			user:        cfg.User,
			group:       cfg.Group,
			allowRoot:   cfg.AllowRoot,
			allowUsers:  cfg.AllowUsers,
			allowGroups: cfg.AllowGroups,
			backoff:     time.Duration(cfg.Restart.Backoff),
			maxBackoff:  time.Duration(cfg.Restart.MaxBackoff),
			logMax:      int64(cfg.LogMaxBytes),
			pidPath:     filepath.Join(store.run, "app.pid"),
			log:         logger,
			m:           m,
		},
	}
	if cfg.User != "" || cfg.Group != "" {
		// Found now, not at the first activation.
		if _, err := resolveRunAs(cfg.User, cfg.Group, cfg.AllowRoot); err != nil {
			store.close()
			return nil, fmt.Errorf("agent config %s: user %q, group %q: %w", cfg.Path, cfg.User, cfg.Group, err)
		}
	}
	if a.token, err = a.loadToken(); err != nil {
		store.close()
		return nil, err
	}
	if cfg.TLS != nil {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			store.close()
			return nil, fmt.Errorf("load agent TLS certificate %s and key %s: %w", cfg.TLS.Cert, cfg.TLS.Key, err)
		}
		a.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	return a, nil
}

// loadToken returns the API token: configured, read from token_file, or
// generated into token_file (0600) on first start. The token itself is
// never logged.
func (a *Agent) loadToken() (string, error) {
	if a.cfg.Token != "" {
		return a.cfg.Token, nil
	}
	path := a.cfg.TokenFile
	if path == "" {
		path = filepath.Join(a.store.root, config.DefaultAgentTokenFile)
	}
	tok, created, err := secretfile.Load(path, config.MinAgentTokenLength, 0o755)
	if err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	if !created {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			a.log.Warn("the agent token file can be read by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
		return tok, nil
	}
	fmt.Fprintf(a.out, "zerodown agent: generated an API token in %s\n", path)
	return tok, nil
}

// Token is the API token.
func (a *Agent) Token() string { return a.token }

// Start listens, serves the API and brings the app back: it adopts the
// app a previous agent left running, finishes an activation that agent was
// stopped in, or starts the current release. That recovery runs in the
// background; the API answers meanwhile and an activation gets 409.
func (a *Agent) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	if a.tls != nil {
		ln = tls.NewListener(ln, a.tls)
	}
	a.ln = ln
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.srv = &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.actMu.Lock() // released when recovery is done
	a.setActivation(&ActivationInfo{Kind: "recover", Phase: "adopt", Since: time.Now().UTC()})
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		defer a.actMu.Unlock()
		defer a.setActivation(nil)
		if err := a.recover(); err != nil {
			a.log.Error("could not bring the app back", "err", err)
		}
	}()
	a.served = make(chan error, 1)
	go func() { a.served <- a.srv.Serve(ln) }()
	a.log.Info("agent API listening", "addr", ln.Addr().String(), "tls", a.tls != nil, "root", a.store.root, "port", a.cfg.Port)
	a.log.Info("the app's processes are contained by "+a.sup.contain.String(), "cgroup", a.sup.contain.base != "")
	if os.Geteuid() == 0 && a.cfg.User == "" && !a.cfg.AllowRoot {
		a.log.Warn("the agent runs as root and agent.yaml names no user: an app whose spec names none is refused; set user: to an unprivileged user, or allow_root: true")
	}
	return nil
}

// Addr is the API's address once Start returned.
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// Served reports the API server's end (an error other than a shutdown).
func (a *Agent) Served() <-chan error { return a.served }

// Shutdown stops the API and waits, within ctx, for an activation in
// progress. The app keeps running: the next agent adopts it.
func (a *Agent) Shutdown(ctx context.Context) error {
	var err error
	if a.srv != nil {
		err = a.srv.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() {
		a.actMu.Lock()
		defer a.actMu.Unlock()
		a.bg.Wait()
		// Supervision ends; the process does not.
		a.sup.detach()
		close(done)
	}()
	select {
	case <-done:
		a.store.close() // the root is free for the next agent
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("an activation was still running at shutdown; the next agent finishes it: %w", ctx.Err())
		}
	}
	if a.cancel != nil {
		a.cancel()
	}
	return err
}

// StopApp stops the supervised app (and ends its supervision), waiting
// for an activation in progress first. The current release stays current.
func (a *Agent) StopApp(ctx context.Context) error {
	locked := make(chan struct{})
	go func() { a.actMu.Lock(); close(locked) }()
	select {
	case <-locked:
	case <-ctx.Done():
		go func() { <-locked; a.actMu.Unlock() }()
		return fmt.Errorf("stop app: an activation is in progress: %w", ctx.Err())
	}
	defer a.actMu.Unlock()
	sv := a.sup.detach()
	if sv == nil || sv.proc == nil {
		return nil
	}
	if err := a.sup.stopProcess(sv.rel, sv.proc); err != nil {
		return err
	}
	a.m.up.Set(0)
	a.m.healthy.Set(0)
	return removePidFile(a.sup.pidPath)
}

func (a *Agent) setActivation(info *ActivationInfo) {
	a.actInfo.Lock()
	defer a.actInfo.Unlock()
	a.act = info
}

func (a *Agent) setPhase(phase string) {
	a.actInfo.Lock()
	defer a.actInfo.Unlock()
	if a.act != nil {
		cp := *a.act
		cp.Phase = phase
		cp.PhaseSince = time.Now().UTC()
		a.act = &cp
	}
}

// recordOutcome keeps how an activation ended, for status and for the
// same request asked again.
func (a *Agent) recordOutcome(kind, version, id string, res ActivateResult, err error) {
	o := &ActivationOutcome{ID: id, Kind: kind, Version: version, Ended: time.Now().UTC()}
	if err == nil {
		o.Result = &res
	} else {
		status, body := errorAnswer(err)
		o.Status, o.Code, o.Error, o.Failure = status, body.Code, body.Error, body.Failure
	}
	a.actInfo.Lock()
	a.last = o
	a.actInfo.Unlock()
}

func (a *Agent) lastOutcome() *ActivationOutcome {
	a.actInfo.Lock()
	defer a.actInfo.Unlock()
	return a.last
}

func (a *Agent) activation() *ActivationInfo {
	a.actInfo.Lock()
	defer a.actInfo.Unlock()
	if a.act == nil {
		return nil
	}
	cp := *a.act
	return &cp
}

// updateState changes state.json under its lock.
func (a *Agent) updateState(change func(*agentState)) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	st, err := a.store.State()
	if err != nil {
		return err
	}
	change(&st)
	return a.store.SaveState(st)
}

// release loads what starting a stored version needs.
func (a *Agent) release(version string) (release, error) {
	info, err := a.store.Get(version)
	if err != nil {
		return release{}, err
	}
	return release{version: version, spec: info.Spec, dir: a.store.Dir(version), logPath: a.store.LogPath(version)}, nil
}

// Status reports the app and the releases.
func (a *Agent) Status() (Status, error) {
	snap := a.sup.snapshot()
	cur, err := a.store.Current()
	if err != nil {
		return Status{}, err
	}
	st, err := a.store.State()
	if err != nil {
		return Status{}, err
	}
	list, err := a.Releases()
	if err != nil {
		return Status{}, err
	}
	s := Status{
		Version: cur, Previous: st.Previous, Port: a.port(), Retiring: a.retiringInfo(),
		State: snap.state, PID: snap.pid, Healthy: snap.healthy, HealthError: snap.healthErr,
		Restarts: snap.restarts, LastExit: snap.lastExit, Adopted: snap.adopted,
		Activation: a.activation(), LastActivation: a.lastOutcome(), Releases: list,
		Agent: AgentInfo{Version: a.version, PID: os.Getpid()},
	}
	if snap.version != "" && snap.version != cur {
		// Only between two steps of an activation; say what runs.
		s.HealthError = strings.TrimSpace(s.HealthError + " (running " + snap.version + ")")
	}
	if snap.pid != 0 {
		t := snap.startedAt.UTC()
		s.StartedAt = &t
		s.UptimeSeconds = time.Since(snap.startedAt).Seconds()
	}
	return s, nil
}

// Releases lists the stored releases, oldest first, marking the current
// and the previous one.
func (a *Agent) Releases() ([]ReleaseInfo, error) {
	list, err := a.store.List()
	if err != nil {
		return nil, err
	}
	cur, err := a.store.Current()
	if err != nil {
		return nil, err
	}
	st, err := a.store.State()
	if err != nil {
		return nil, err
	}
	for i := range list {
		list[i].Current = list[i].Version == cur
		list[i].Previous = list[i].Version == st.Previous && st.Previous != ""
	}
	a.m.releases.Set(float64(len(list)))
	return list, nil
}

// prune deletes releases beyond keep_releases, never the current, the
// previous or one being activated.
func (a *Agent) prune(extra ...string) []string {
	cur, err := a.store.Current()
	if err != nil {
		a.log.Warn("not pruning releases", "err", err)
		return nil
	}
	st, err := a.store.State()
	if err != nil {
		a.log.Warn("not pruning releases", "err", err)
		return nil
	}
	protect := append([]string{cur, st.Previous}, extra...)
	if act := a.activation(); act != nil {
		protect = append(protect, act.Version, act.From)
	}
	if r := a.retiringInfo(); r != nil {
		protect = append(protect, r.Version) // still running in the other slot
	}
	deleted, err := a.store.Prune(a.cfg.KeepReleases, protect...)
	if err != nil {
		a.log.Warn("could not prune releases", "err", err)
	}
	if len(deleted) > 0 {
		a.log.Info("pruned releases", "deleted", deleted, "keep", a.cfg.KeepReleases)
	}
	return deleted
}
