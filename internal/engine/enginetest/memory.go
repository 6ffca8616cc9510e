// Package enginetest has in-memory load balancer and host drivers that
// model time the way the real ones behave (a drain takes a while, a new
// version needs a health check), for the engine's tests and benchmarks.
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
)

// LB is an in-memory load balancer pool. A detached target drains for
// DrainDelay (with InFlight requests until then); an attached one is
// healthy after HealthDelay unless its host is unhealthy.
type LB struct {
	DrainDelay time.Duration
	// DrainDelays overrides DrainDelay per target.
	DrainDelays map[string]time.Duration
	HealthDelay time.Duration
	InFlight    int
	// Bound, when set, is the balancer's draining bound: a drain longer
	// than it is cut there, its InFlight requests counted as cut.
	Bound time.Duration
	// Healthy reports whether the host behind a target passes checks; nil
	// means always.
	Healthy func(addr string) bool

	mu      sync.Mutex
	targets map[string]*memTarget
	order   []string
	Calls   []string // "detach addr", "attach addr", in order
}

type memTarget struct {
	state lb.State
	since time.Time
	cut   int64
}

// NewLB returns a pool with the given targets healthy.
func NewLB(addrs ...string) *LB {
	l := &LB{targets: map[string]*memTarget{}}
	for _, a := range addrs {
		l.targets[a] = &memTarget{state: lb.StateHealthy, since: time.Now()}
		l.order = append(l.order, a)
	}
	return l
}

// advance moves time-driven states forward; l.mu is held.
func (l *LB) advance(now time.Time) {
	for addr, t := range l.targets {
		switch t.state {
		case lb.StateDraining:
			delay, ok := l.DrainDelays[addr]
			if !ok {
				delay = l.DrainDelay
			}
			if l.Bound > 0 && delay > l.Bound && now.Sub(t.since) >= l.Bound {
				t.state, t.since = lb.StateUnused, now
				t.cut += int64(l.InFlight)
			} else if now.Sub(t.since) >= delay {
				t.state, t.since = lb.StateUnused, now
			}
		case lb.StateInitial, lb.StateUnhealthy:
			if now.Sub(t.since) >= l.HealthDelay && (l.Healthy == nil || l.Healthy(addr)) {
				t.state, t.since = lb.StateHealthy, now
			}
		case lb.StateHealthy:
			if l.Healthy != nil && !l.Healthy(addr) {
				t.state, t.since = lb.StateUnhealthy, now
			}
		}
	}
}

// Targets implements lb.Balancer.
func (l *LB) Targets(context.Context) ([]lb.Target, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.advance(now)
	out := make([]lb.Target, 0, len(l.order))
	for _, a := range l.order {
		t := l.targets[a]
		tg := lb.Target{Address: a, State: t.state, Weight: 1, Cut: t.cut}
		if t.state == lb.StateDraining {
			tg.InFlight = l.InFlight
		}
		out = append(out, tg)
	}
	return out, nil
}

// DrainBound implements lb.DrainBounder.
func (l *LB) DrainBound(context.Context) (time.Duration, error) { return l.Bound, nil }

// Attach implements lb.Balancer.
func (l *LB) Attach(_ context.Context, addr string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "attach "+addr)
	t, ok := l.targets[addr]
	if !ok {
		t = &memTarget{}
		l.targets[addr] = t
		l.order = append(l.order, addr)
	}
	if t.state == lb.StateDraining || t.state == lb.StateUnused || !ok {
		t.state, t.since = lb.StateInitial, time.Now()
	}
	return nil
}

// Detach implements lb.Balancer.
func (l *LB) Detach(_ context.Context, addr string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "detach "+addr)
	t, ok := l.targets[addr]
	if !ok {
		return fmt.Errorf("unknown target %s", addr)
	}
	if t.state != lb.StateDraining && t.state != lb.StateUnused {
		t.state, t.since = lb.StateDraining, time.Now()
	}
	return nil
}

// State returns a target's state now.
func (l *LB) State(addr string) lb.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(time.Now())
	if t, ok := l.targets[addr]; ok {
		return t.state
	}
	return lb.StateUnused
}

// Host is an in-memory host: it stores releases and switches between them.
// Activating a version in Bad fails, and the host goes back to the one it
// ran, as the agent does.
type Host struct {
	ActivateDelay time.Duration
	Bad           map[string]bool

	mu         sync.Mutex
	releases   map[string]bool
	current    string
	previous   string
	healthy    bool
	activating string // an activation another caller started (BusyWith)
	Uploads    int
}

// NewHost returns a host running version.
func NewHost(version string) *Host {
	return &Host{releases: map[string]bool{version: true}, current: version, healthy: true, Bad: map[string]bool{}}
}

// ErrUnhealthy is what a bad version's activation fails with.
var ErrUnhealthy = errors.New("new version did not become healthy; previous version restored")

// Upload implements host.Deployer.
func (h *Host) Upload(context.Context, host.Release) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Uploads++
	return nil
}

// Store marks a version as uploaded.
func (h *Host) store(v string) { h.releases[v] = true }

// Activate implements host.Deployer.
func (h *Host) Activate(ctx context.Context, version string) error {
	if h.ActivateDelay > 0 {
		select {
		case <-time.After(h.ActivateDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.activating != "" {
		return fmt.Errorf("activate %s: activating %s: %w", version, h.activating, host.ErrBusy)
	}
	h.store(version)
	if h.Bad[version] {
		return fmt.Errorf("activate %s: %w", version, ErrUnhealthy)
	}
	if version != h.current {
		h.previous, h.current = h.current, version
	}
	return nil
}

// BusyWith starts an activation of version as another caller would (a
// run's executor that died since): for d, Status shows it in progress and
// Activate is refused with host.ErrBusy, as the agent does; then version
// runs.
func (h *Host) BusyWith(version string, d time.Duration) {
	h.mu.Lock()
	h.activating = version
	h.mu.Unlock()
	time.AfterFunc(d, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.activating = ""
		h.store(version)
		if version != h.current {
			h.previous, h.current = h.current, version
		}
	})
}

// Rollback implements host.Deployer.
func (h *Host) Rollback(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.previous == "" {
		return errors.New("no previous release")
	}
	h.current, h.previous = h.previous, h.current
	return nil
}

// Status implements host.Deployer.
func (h *Host) Status(context.Context) (host.Status, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return host.Status{Version: h.current, Previous: h.previous, Running: true, Healthy: h.healthy, Activating: h.activating}, nil
}

// Version is the running version.
func (h *Host) Version() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}
