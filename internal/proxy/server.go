// Package proxy is the data plane and admin API of `zerodown lb`: listeners
// route requests to pools of targets, health checks decide which targets get
// traffic, and detached targets drain without a failed request.
package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerodown/zerodown/internal/atomicfile"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proxy/h1"
	"github.com/zerodown/zerodown/internal/secretfile"
)

// Options are what New needs besides the config.
type Options struct {
	Logger *slog.Logger
	// Out receives messages meant for the operator once, such as where a
	// generated admin token was written.
	Out io.Writer
	// Listen opens the listening sockets (default net.Listen). A process
	// that can hand its sockets to a new one passes a function that
	// returns the sockets it inherited, or remembers the new ones.
	Listen func(network, addr string) (net.Listener, error)
	// Upgrade starts a new process that takes over the sockets Listen
	// gave, and returns once it serves or has failed. Nil: no upgrades.
	// It is bounded by its own timeout, not by a caller's context.
	Upgrade func() error
	// Previous, when this process took its sockets over from another, is
	// closed once that process has exited; until then targets detached
	// there may still have requests in flight from it.
	Previous <-chan struct{}
}

// Server is a running load balancer.
type Server struct {
	log          *slog.Logger
	out          io.Writer
	metrics      *metrics
	healthClient *http.Client

	// conns caps client connections over all listeners (client.max_conns).
	conns connSlots
	clock *coarseClock

	mu        sync.Mutex // serialises Start, Reload, Shutdown and state saves
	cfg       *config.LB
	pools     atomic.Pointer[poolMap]
	maxBodyV  atomic.Int64
	listeners map[string]*listener // by address as configured
	// switches send the routes configured for a pool (key) to another
	// pool (value): blue-green's live route, kept in the state file.
	switches  map[string]string
	admin     *http.Server
	adminLn   net.Listener
	token     string
	statePath string
	stateErr  error
	closed    bool
	stopWatch chan struct{}

	listenFn    func(network, addr string) (net.Listener, error)
	upgrade     func() error
	previous    <-chan struct{}
	handingOver bool // s.mu; set while a new process takes over
	// idleGrace overrides shutdownIdleGrace (tests that start and stop
	// many servers).
	idleGrace *time.Duration
}

type poolMap struct {
	byName map[string]*pool
	order  []string
}

type listener struct {
	cfg     config.Listener
	handler *handler
	srv     *http.Server // HTTPS listeners
	h1      *h1Server    // plain-HTTP listeners
	ln      net.Listener
	cert    atomic.Pointer[tls.Certificate]

	// HTTPS listeners: draining is set when the shutdown begins; open
	// counts connections; idleGrace is shutdownIdleGrace (shorter in tests).
	draining  atomic.Bool
	open      atomic.Int64
	idleGrace time.Duration
}

// shutdown stops the listener and lets its connections finish. net/http's
// own Shutdown closes idle keep-alive connections at once, losing a request
// a client sends on one just then (and a POST is never replayed); so an
// HTTPS listener first stops accepting, answers HTTP/1 requests with
// Connection: close, and gives its connections the idle grace to go, as the
// plain-HTTP server does; HTTP/2 connections get their GOAWAY after it.
func (l *listener) shutdown(ctx context.Context) error {
	if l.h1 != nil {
		return l.h1.Shutdown(ctx)
	}
	l.draining.Store(true)
	_ = l.ln.Close()
	grace := time.NewTimer(l.idleGrace)
	defer grace.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for l.open.Load() > 0 {
		select {
		case <-grace.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
		}
	}
	err := l.srv.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil // the listener closed above
	}
	if err != nil {
		l.srv.Close()
	}
	return err
}

// New builds a server from cfg, restoring attached targets from the state
// file. Nothing listens until Start.
func New(cfg *config.LB, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	s := &Server{
		log:          opts.Logger,
		out:          opts.Out,
		healthClient: newHealthClient(),
		listeners:    make(map[string]*listener),
		cfg:          cfg,
		statePath:    statePath(cfg),
		listenFn:     opts.Listen,
		upgrade:      opts.Upgrade,
		previous:     opts.Previous,
	}
	s.metrics = newMetrics(s)
	s.maxBodyV.Store(int64(cfg.Client.MaxBodyBytes))
	s.conns = newConnSlots(s.connCap(cfg.Client.MaxConns))
	s.clock = newCoarseClock()
	token, err := s.loadToken(cfg)
	if err != nil {
		return nil, err
	}
	s.token = token
	saved, err := loadState(s.statePath)
	if err != nil {
		return nil, err
	}
	pm := &poolMap{byName: map[string]*pool{}}
	for _, name := range cfg.PoolOrder {
		pc := cfg.Pools[name]
		p := newPool(s, pc)
		pm.byName[name] = p
		pm.order = append(pm.order, name)
	}
	s.pools.Store(pm)
	for _, name := range pm.order {
		p := pm.byName[name]
		targets := seedTargets(cfg.Pools[name])
		if saved != nil {
			if st, ok := saved.Pools[name]; ok {
				if before, ok := saved.Config[name]; ok {
					st = mergeConfigEdits(st, before, targets)
				}
				targets = st
			}
		}
		for _, t := range targets {
			if t.Detached {
				p.restoreDetached(t.Address, t.Weight)
				continue
			}
			_, _ = p.attach(t.Address, t.Weight, true)
		}
	}
	if saved != nil {
		for name := range saved.Pools {
			if _, ok := pm.byName[name]; !ok {
				s.log.Warn("state file names a pool the config no longer has; its targets are dropped", "pool", name)
			}
		}
	}
	s.switches = map[string]string{}
	if saved != nil {
		for from, to := range saved.Switches {
			if pm.byName[from] == nil || pm.byName[to] == nil {
				s.log.Warn("state file switches a pool the config no longer has; the switch is dropped", "from", from, "to", to)
				continue
			}
			s.switches[from] = to
		}
	}
	return s, nil
}

// Switch sends every route configured for pool from to pool to, on every
// listener at once; to == from puts them back. A request already routed
// finishes on the pool it went to. The switch is kept in the state file.
// A pool with no healthy target is refused unless force is set.
func (s *Server) Switch(from, to string, force bool) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuseChange(); err != nil {
		return nil, err
	}
	pm := s.pools.Load()
	for _, name := range []string{from, to} {
		if pm.byName[name] == nil {
			return nil, errUnknownPool(name)
		}
	}
	if !s.routed(from) {
		return nil, &switchError{fmt.Sprintf("no route of lb.yaml names pool %s: switch a pool the routes name (switches now: %s; `switch X X` puts X's routes back)", from, describeSwitches(s.switches))}
	}
	if !force && !pm.byName[to].hasHealthy() {
		return nil, &switchError{fmt.Sprintf("pool %s has no healthy target: every request would fail after the switch (force switches anyway)", to)}
	}
	prev, had := s.switches[from]
	if to == from {
		delete(s.switches, from)
	} else {
		s.switches[from] = to
	}
	// Compile every listener's routes first: nothing changes unless all do.
	// The routes are the config's as last loaded (a reload may have edited
	// them), for the listeners open now.
	compiled := map[*listener][]route{}
	for _, lc := range s.cfg.Listeners {
		l := s.listeners[lc.Address]
		if l == nil {
			continue
		}
		routes, err := s.compileRoutes(lc, pm)
		if err != nil {
			if had {
				s.switches[from] = prev
			} else {
				delete(s.switches, from)
			}
			return nil, err
		}
		compiled[l] = routes
	}
	for l, routes := range compiled {
		l.handler.routes.Store(&routes)
	}
	s.log.Info("routes switched", "from", from, "to", to)
	return maps.Clone(s.switches), s.saveStateLocked()
}

// switchError is a switch refused as it stands: the caller's to change.
type switchError struct{ msg string }

func (e *switchError) Error() string { return e.msg }

// routed reports whether a route of the config names pool.
func (s *Server) routed(pool string) bool {
	for _, lc := range s.cfg.Listeners {
		for _, rc := range lc.Routes {
			if rc.Pool == pool {
				return true
			}
		}
	}
	return false
}

func describeSwitches(sw map[string]string) string {
	if len(sw) == 0 {
		return "none"
	}
	var parts []string
	for _, from := range slices.Sorted(maps.Keys(sw)) {
		parts = append(parts, from+"→"+sw[from])
	}
	return strings.Join(parts, ", ")
}

// Switches are the pools whose routes go to another pool.
func (s *Server) Switches() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.switches)
}

func seedTargets(pc *config.Pool) []savedTarget {
	out := make([]savedTarget, 0, len(pc.Targets))
	for _, t := range pc.Targets {
		w := config.DefaultWeight
		if t.Weight != nil {
			w = *t.Weight
		}
		out = append(out, savedTarget{Address: t.Address, Weight: w})
	}
	return out
}

func statePath(cfg *config.LB) string {
	if cfg.StateFile != "" {
		return cfg.StateFile
	}
	return filepath.Join(filepath.Dir(cfg.Path), "lb-state.json")
}

// loadToken returns the admin token: configured, read from token_file, or
// generated into token_file (or lb-admin.token beside the state file).
func (s *Server) loadToken(cfg *config.LB) (string, error) {
	if cfg.Admin.Token != "" {
		return cfg.Admin.Token, nil
	}
	path := cfg.Admin.TokenFile
	if path == "" {
		path = filepath.Join(filepath.Dir(s.statePath), "lb-admin.token")
	}
	tok, created, err := secretfile.Load(path, 1, 0o700)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if !created {
		return tok, nil
	}
	fmt.Fprintf(s.out, "zerodown lb: generated an admin token in %s\n", path)
	return tok, nil
}

func (s *Server) poolList() []*pool {
	pm := s.pools.Load()
	out := make([]*pool, 0, len(pm.order))
	for _, n := range pm.order {
		out = append(out, pm.byName[n])
	}
	return out
}

func (s *Server) pool(name string) *pool { return s.pools.Load().byName[name] }

func (s *Server) maxBody() int64 { return s.maxBodyV.Load() }

// Start runs one health check of every known target, then opens the
// listeners and the admin API. Targets restored from the state file or the
// config that pass that first check serve at once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitFirstChecks(ctx)
	opened := map[string]*listener{}
	for _, lc := range s.cfg.Listeners {
		l, err := s.openListener(lc, s.pools.Load())
		if err != nil {
			for _, o := range opened {
				o.ln.Close()
			}
			return err
		}
		opened[lc.Address] = l
	}
	adminLn, err := s.listenAdmin()
	if err != nil {
		for _, o := range opened {
			o.ln.Close()
		}
		return err
	}
	s.adminLn = adminLn
	s.admin = &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	for addr, l := range opened {
		s.listeners[addr] = l
		s.serve(l)
	}
	go func() { _ = s.admin.Serve(adminLn) }()
	s.stopWatch = make(chan struct{})
	go s.watchdog(s.stopWatch)
	go s.clock.run()
	s.log.Info("load balancer started", "listeners", s.ListenerAddrs(), "admin", adminLn.Addr().String())
	return nil
}

// waitFirstChecks waits, within the pools' health timeouts, until every
// target has been checked once.
func (s *Server) waitFirstChecks(ctx context.Context) {
	var longest time.Duration
	for _, p := range s.poolList() {
		if d := time.Duration(p.settings().health.Timeout); d > longest {
			longest = d
		}
	}
	ctx, cancel := context.WithTimeout(ctx, longest+500*time.Millisecond)
	defer cancel()
	for _, p := range s.poolList() {
		for _, t := range p.list() {
			select {
			case <-t.checked:
			case <-ctx.Done():
				return
			}
		}
	}
}

// listenAdmin opens the admin API's socket, with TLS when configured.
func (s *Server) listenAdmin() (net.Listener, error) {
	a := s.cfg.Admin
	var cert tls.Certificate
	if a.TLS != nil {
		var err error
		if cert, err = tls.LoadX509KeyPair(a.TLS.Cert, a.TLS.Key); err != nil {
			return nil, fmt.Errorf("admin API: load TLS certificate %s and key %s: %w", a.TLS.Cert, a.TLS.Key, err)
		}
	}
	ln, err := s.listen(a.Address)
	if err != nil {
		return nil, fmt.Errorf("admin API: listen on %s: %w", a.Address, err)
	}
	if a.TLS != nil {
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}
	return ln, nil
}

// openListener opens a listener whose routes point into pm.
func (s *Server) openListener(lc config.Listener, pm *poolMap) (*listener, error) {
	l := &listener{cfg: lc}
	if lc.TLS != nil {
		cert, err := tls.LoadX509KeyPair(lc.TLS.Cert, lc.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("listener %s: load TLS certificate %s and key %s: %w", lc.Address, lc.TLS.Cert, lc.TLS.Key, err)
		}
		l.cert.Store(&cert)
	}
	l.handler = &handler{srv: s, https: lc.TLS != nil, name: lc.Name, draining: &l.draining}
	routes, err := s.compileRoutes(lc, pm)
	if err != nil {
		return nil, err
	}
	l.handler.routes.Store(&routes)
	ln, err := s.listen(lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", lc.Address, err)
	}
	l.ln = ln
	c := s.cfg.Client
	if lc.TLS == nil {
		limits := h1.Limits{MaxHeaderBytes: int(c.MaxHeaderBytes), MaxHeaders: c.MaxHeaders}
		if limits.MaxHeaders <= 0 {
			limits.MaxHeaders = h1.DefaultMaxHeaders
		}
		if limits.MaxHeaderBytes <= 0 {
			limits.MaxHeaderBytes = h1.DefaultMaxHeaderBytes
		}
		l.h1 = newH1Server(l.handler, s.log, time.Duration(c.ReadHeaderTimeout), time.Duration(c.IdleTimeout), limits, newConnSlots(lc.MaxConns), s.conns)
		l.h1.clock = s.clock
		if s.idleGrace != nil {
			l.h1.idleGrace = *s.idleGrace
		}
		return l, nil
	}
	// net/http serves HTTPS; the caps apply to it through the listener.
	ln = &cappedListener{Listener: ln, slots: newConnSlots(lc.MaxConns), global: s.conns, done: make(chan struct{})}
	l.ln = ln
	l.idleGrace = shutdownIdleGrace
	if s.idleGrace != nil {
		l.idleGrace = *s.idleGrace
	}
	l.srv = &http.Server{
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				l.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				l.open.Add(-1)
			}
		},
		Handler:           l.handler,
		ReadHeaderTimeout: time.Duration(c.ReadHeaderTimeout),
		IdleTimeout:       time.Duration(c.IdleTimeout),
		MaxHeaderBytes:    int(c.MaxHeaderBytes),
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if lc.TLS != nil {
		l.srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return l.cert.Load(), nil
			},
		}
	}
	return l, nil
}

func (s *Server) serve(l *listener) {
	go func() {
		var err error
		if l.h1 != nil {
			err = l.h1.Serve(l.ln)
		} else {
			err = l.srv.ServeTLS(l.ln, "", "")
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !l.draining.Load() {
			s.log.Error("listener stopped", "address", l.cfg.Address, "err", err)
		}
	}()
}

func (s *Server) compileRoutes(lc config.Listener, pm *poolMap) ([]route, error) {
	routes := make([]route, 0, len(lc.Routes))
	for _, rc := range lc.Routes {
		name := rc.Pool
		if to, ok := s.switches[name]; ok && pm.byName[to] != nil {
			name = to // switched (blue-green); a pool the config dropped is not
		}
		p := pm.byName[name]
		if p == nil {
			return nil, fmt.Errorf("listener %s: route to unknown pool %q", lc.Address, name)
		}
		routes = append(routes, route{host: strings.ToLower(rc.Host), prefix: rc.PathPrefix, pool: p})
	}
	return routes, nil
}

// ListenerAddrs returns the bound address of each listener, in config order.
func (s *Server) ListenerAddrs() []string {
	var out []string
	for _, lc := range s.cfg.Listeners {
		if l, ok := s.listeners[lc.Address]; ok {
			out = append(out, l.ln.Addr().String())
		}
	}
	return out
}

// AdminAddr returns the bound address of the admin API.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// Token returns the admin API token.
func (s *Server) Token() string { return s.token }

// Reload applies a new config without dropping connections. Everything that
// can fail (certificates, new listeners) is prepared first, so a bad config
// changes nothing.
func (s *Server) Reload(cfg *config.LB) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuseChange(); err != nil {
		return err
	}
	// A switched pool stays: dropping it would move traffic back (or
	// forward) without anyone asking.
	for _, from := range slices.Sorted(maps.Keys(s.switches)) {
		to := s.switches[from]
		for _, name := range []string{from, to} {
			if _, ok := cfg.Pools[name]; !ok {
				return fmt.Errorf("the new config has no pool %s, which is switched (%s → %s): run `zerodown lb switch %s %s` first", name, from, to, from, from)
			}
		}
	}
	old := s.cfg
	oldPools := s.pools.Load()

	// New pool map: existing pools keep their targets and counters.
	pm := &poolMap{byName: map[string]*pool{}}
	var created []*pool
	for _, name := range cfg.PoolOrder {
		pc := cfg.Pools[name]
		if p, ok := oldPools.byName[name]; ok {
			pm.byName[name] = p
		} else {
			p := newPool(s, pc)
			pm.byName[name] = p
			created = append(created, p)
		}
		pm.order = append(pm.order, name)
	}

	// Prepare listeners: routes for all, certificates and sockets for new.
	type prepared struct {
		l      *listener
		routes []route
		cert   *tls.Certificate
		isNew  bool
	}
	var preps []prepared
	fail := func(err error) error {
		for _, pr := range preps {
			if pr.isNew {
				retire(pr.l.ln)
				pr.l.ln.Close()
			}
		}
		return err
	}
	for _, lc := range cfg.Listeners {
		routes, err := s.compileRoutes(lc, pm)
		if err != nil {
			return fail(err)
		}
		if l, ok := s.listeners[lc.Address]; ok && (l.cfg.TLS == nil) == (lc.TLS == nil) {
			pr := prepared{l: l, routes: routes}
			if lc.TLS != nil {
				cert, err := tls.LoadX509KeyPair(lc.TLS.Cert, lc.TLS.Key)
				if err != nil {
					return fail(fmt.Errorf("listener %s: load TLS certificate: %w", lc.Address, err))
				}
				pr.cert = &cert
			}
			preps = append(preps, pr)
			continue
		} else if ok {
			return fail(fmt.Errorf("listener %s: switching between HTTP and HTTPS needs a restart", lc.Address))
		}
		l, err := s.openListener(lc, pm)
		if err != nil {
			return fail(err)
		}
		preps = append(preps, prepared{l: l, routes: routes, isNew: true})
	}

	// Nothing below fails.
	s.cfg = cfg
	s.maxBodyV.Store(int64(cfg.Client.MaxBodyBytes))
	for _, name := range pm.order {
		pm.byName[name].cfg.Store(settingsFrom(cfg.Pools[name]))
	}
	s.pools.Store(pm)
	for _, p := range created {
		for _, t := range seedTargets(cfg.Pools[p.name]) {
			_, _ = p.attach(t.Address, t.Weight, false)
		}
	}
	for _, name := range pm.order {
		if oc, ok := old.Pools[name]; ok {
			s.applyTargetDiff(pm.byName[name], oc, cfg.Pools[name])
		}
	}
	keep := map[string]bool{}
	for _, pr := range preps {
		pr.l.handler.routes.Store(&pr.routes)
		if pr.cert != nil {
			pr.l.cert.Store(pr.cert)
		}
		keep[pr.l.cfg.Address] = true
		if pr.isNew {
			s.listeners[pr.l.cfg.Address] = pr.l
			s.serve(pr.l)
		}
	}
	for addr, l := range s.listeners {
		if !keep[addr] {
			delete(s.listeners, addr)
			retire(l.ln)
			go s.closeListener(l, time.Duration(cfg.ShutdownTimeout))
		}
	}
	for _, name := range oldPools.order {
		if _, ok := pm.byName[name]; !ok {
			oldPools.byName[name].shutdown()
		}
	}
	if old.Admin.Address != cfg.Admin.Address {
		s.log.Warn("admin address changes need a restart", "running", old.Admin.Address, "configured", cfg.Admin.Address)
	}
	if old.Client != cfg.Client {
		s.log.Warn("client timeouts and header limits apply to new listeners only; restart to apply them everywhere")
	}
	s.saveStateLocked()
	s.log.Info("config reloaded", "path", cfg.Path)
	return nil
}

// applyTargetDiff attaches targets added to a pool's config since the last
// load and detaches removed ones; targets changed through the admin API and
// not in either config are left alone.
func (s *Server) applyTargetDiff(p *pool, oldCfg, newCfg *config.Pool) {
	before := map[string]int{}
	for _, t := range seedTargets(oldCfg) {
		before[t.Address] = t.Weight
	}
	after := map[string]bool{}
	for _, t := range seedTargets(newCfg) {
		after[t.Address] = true
		w, had := before[t.Address]
		switch {
		case !had:
			_, _ = p.attach(t.Address, t.Weight, false)
		case w != t.Weight:
			_, _ = p.setWeight(t.Address, t.Weight)
		}
	}
	for addr := range before {
		if !after[addr] {
			_, _ = p.detach(addr)
		}
	}
}

func (s *Server) closeListener(l *listener, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = l.shutdown(ctx)
}

// saveStateLocked writes every pool's targets; s.mu is held. A failure is
// logged and reported by the admin API.
func (s *Server) saveStateLocked() error {
	st := savedState{Version: stateVersion, Pools: map[string][]savedTarget{}, Config: map[string][]savedTarget{}, Switches: s.switches}
	for _, p := range s.poolList() {
		st.Pools[p.name] = p.saved()
		if pc, ok := s.cfg.Pools[p.name]; ok {
			st.Config[p.name] = seedTargets(pc)
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(s.statePath), 0o700)
	}
	if err == nil {
		err = atomicfile.Write(s.statePath, append(data, '\n'), 0o644)
	}
	if err != nil {
		err = fmt.Errorf("save state to %s: %w", s.statePath, err)
		s.log.Error("state not saved", "err", err)
	}
	s.stateErr = err
	return err
}

// Attach attaches addr to a pool and records it in the state file.
func (s *Server) Attach(pool, addr string, weight int) (*target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuseChange(); err != nil {
		return nil, err
	}
	p := s.pool(pool)
	if p == nil {
		return nil, errUnknownPool(pool)
	}
	t, err := p.attach(addr, weight, false)
	if err != nil {
		return nil, err
	}
	s.log.Info("target attached", "pool", pool, "target", addr, "weight", t.weight.Load())
	return t, s.saveStateLocked()
}

// Detach detaches addr from a pool; when it returns no new request goes to
// the target.
func (s *Server) Detach(pool, addr string) (*target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuseChange(); err != nil {
		return nil, err
	}
	p := s.pool(pool)
	if p == nil {
		return nil, errUnknownPool(pool)
	}
	t, err := p.detach(addr)
	if err != nil {
		return nil, err
	}
	s.log.Info("target detached", "pool", pool, "target", addr, "in_flight", t.inFlight.Load())
	return t, s.saveStateLocked()
}

// SetWeight changes a target's weight and records it.
func (s *Server) SetWeight(pool, addr string, weight int) (*target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuseChange(); err != nil {
		return nil, err
	}
	p := s.pool(pool)
	if p == nil {
		return nil, errUnknownPool(pool)
	}
	t, err := p.setWeight(addr, weight)
	if err != nil {
		return nil, err
	}
	s.log.Info("target weight changed", "pool", pool, "target", addr, "weight", weight)
	return t, s.saveStateLocked()
}

// errShuttingDown refuses changes once Shutdown has begun, so nothing starts
// that the shutdown would not stop.
var errShuttingDown = errors.New("load balancer is shutting down")

type unknownPoolError struct{ name string }

func (e *unknownPoolError) Error() string { return fmt.Sprintf("unknown pool %q", e.name) }

func errUnknownPool(name string) error { return &unknownPoolError{name} }

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends; then it closes what is left, WebSockets included.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	listeners := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		listeners = append(listeners, l)
	}
	s.mu.Unlock()

	// The admin API goes first: after a handover its clients must reach
	// the new process, not read this one's state or be told 503 while it
	// drains; after a stop they must learn at once it is gone.
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		if s.admin == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s.admin.Shutdown(actx) != nil {
			s.admin.Close()
		}
	}()

	// WebSockets live as long as their users want; they do not hold up a
	// shutdown. Clients reconnect to another load balancer.
	for _, p := range s.poolList() {
		for _, t := range p.list() {
			t.closeSockets()
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.shutdown(ctx); err != nil {
				errs <- fmt.Errorf("listener %s: %w", l.cfg.Address, err)
			}
		}()
	}
	wg.Wait()
	for _, p := range s.poolList() {
		p.shutdown()
	}
	if s.stopWatch != nil {
		close(s.stopWatch)
	}
	s.clock.close()
	<-adminDone
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
