package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
)

// targetState is lb.State packed into an int32 for lock-free reads on the
// request path.
type targetState int32

const (
	stateInitial targetState = iota
	stateHealthy
	stateUnhealthy
	stateDraining
	stateUnused
)

func (s targetState) lbState() lb.State {
	switch s {
	case stateInitial:
		return lb.StateInitial
	case stateHealthy:
		return lb.StateHealthy
	case stateUnhealthy:
		return lb.StateUnhealthy
	case stateDraining:
		return lb.StateDraining
	default:
		return lb.StateUnused
	}
}

// Status classes counted per target: 1xx..5xx and one for answers the proxy
// made up itself because the target failed.
const (
	classCount    = 5
	classIndexErr = 5
)

// target is one backend address of a pool.
type target struct {
	addr string
	pool *pool

	state  atomic.Int32 // targetState
	weight atomic.Int32

	// detached is set before a detach call returns. A request admits itself
	// by raising dispatching and then reading detached; detach sets detached
	// and then waits for dispatching to reach zero. With sequentially
	// consistent atomics one of the two always sees the other, so no request
	// is written to the target once detach has returned.
	detached    atomic.Bool
	dispatching atomic.Int32
	inFlight    atomic.Int64

	requests    [classCount + 1]atomic.Uint64
	errors      atomic.Uint64 // dial, reset, timeout toward this target
	cut         atomic.Uint64 // requests cut when the deregistration delay ran out
	connFails   atomic.Int32  // connect failures in a row (passive health)
	passiveDown atomic.Bool   // marked unhealthy by connect failures since the last check
	// trusted targets were attached before a restart: one passed check makes
	// them healthy again, so a restart does not wait healthy_threshold checks.
	trusted     atomic.Bool
	checked     chan struct{} // closed after the first health check
	checkedOnce sync.Once
	generation  atomic.Uint64 // bumped on attach/detach so stale drainers and checkers stop

	mu          sync.Mutex
	idle        []*upConn // LIFO: the most recently used connection is reused first
	conns       map[*upConn]struct{}
	sockets     map[*tunnel]struct{} // open WebSocket tunnels
	stateSince  time.Time
	lastHealth  string // last failed health check, for people
	stopHealth  chan struct{}
	drainCancel chan struct{}
}

func newTarget(p *pool, addr string, weight int) *target {
	t := &target{
		addr:       addr,
		pool:       p,
		conns:      make(map[*upConn]struct{}),
		sockets:    make(map[*tunnel]struct{}),
		stateSince: time.Now(),
		checked:    make(chan struct{}),
	}
	t.weight.Store(int32(weight))
	t.state.Store(int32(stateInitial))
	return t
}

func (t *target) loadState() targetState { return targetState(t.state.Load()) }

// setState changes the state and records when; callers hold pool.mu so the
// pool's routable set can be rebuilt consistently.
func (t *target) setState(s targetState) bool {
	old := targetState(t.state.Swap(int32(s)))
	if old == s {
		return false
	}
	t.mu.Lock()
	t.stateSince = time.Now()
	t.mu.Unlock()
	return true
}

// takeIdle returns a pooled connection that is still within the idle
// timeout, closing the expired ones it meets.
func (t *target) takeIdle(now int64, idleTimeout time.Duration) *upConn {
	t.mu.Lock()
	for n := len(t.idle); n > 0; n = len(t.idle) {
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		// A non-blocking peek must find the connection quiet: a target
		// that closed it would fail the request, and one that sent bytes
		// nobody asked for (a body after a HEAD answer, bytes past its
		// length) would have them read as the next client's answer.
		idle := time.Duration(now - c.idleSince)
		if idle < idleTimeout && c.peekIdle() == peerQuiet {
			t.mu.Unlock()
			return c
		}
		delete(t.conns, c)
		t.mu.Unlock()
		c.conn.Close()
		t.mu.Lock()
	}
	t.mu.Unlock()
	return nil
}

// putIdle keeps c for reuse unless the target is detached or the pool of
// idle connections is full.
func (t *target) putIdle(c *upConn, now int64, maxIdle int) {
	t.mu.Lock()
	if t.detached.Load() || len(t.idle) >= maxIdle {
		delete(t.conns, c)
		t.mu.Unlock()
		c.conn.Close()
		return
	}
	c.idleSince = now
	t.idle = append(t.idle, c)
	t.mu.Unlock()
}

func (t *target) track(c *upConn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *target) forget(c *upConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// closeIdle closes idle connections; with olderThan > 0 only those idle for
// longer.
func (t *target) closeIdle(now int64, olderThan time.Duration) {
	t.mu.Lock()
	keep := t.idle[:0]
	var closing []*upConn
	for _, c := range t.idle {
		if olderThan > 0 && time.Duration(now-c.idleSince) < olderThan {
			keep = append(keep, c)
			continue
		}
		delete(t.conns, c)
		closing = append(closing, c)
	}
	for i := len(keep); i < len(t.idle); i++ {
		t.idle[i] = nil
	}
	t.idle = keep
	t.mu.Unlock()
	for _, c := range closing {
		c.conn.Close()
	}
}

// cutAll closes every connection to the target, busy ones included, and
// every WebSocket tunnel; it returns how many requests were in flight.
func (t *target) cutAll() int64 {
	n := t.inFlight.Load()
	t.mu.Lock()
	conns := make([]*upConn, 0, len(t.conns))
	for c := range t.conns {
		c.cut.Store(true)
		conns = append(conns, c)
	}
	t.conns = make(map[*upConn]struct{})
	for i := range t.idle {
		t.idle[i] = nil
	}
	t.idle = t.idle[:0]
	sockets := make([]*tunnel, 0, len(t.sockets))
	for s := range t.sockets {
		sockets = append(sockets, s)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.conn.Close()
	}
	for _, s := range sockets {
		s.close()
	}
	return n
}

func (t *target) closeSockets() {
	t.mu.Lock()
	sockets := make([]*tunnel, 0, len(t.sockets))
	for s := range t.sockets {
		sockets = append(sockets, s)
	}
	t.mu.Unlock()
	for _, s := range sockets {
		s.close()
	}
}

func (t *target) socketCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sockets)
}

// snapshot is what the admin API and metrics show of a target.
type snapshot struct {
	Address         string    `json:"address"`
	State           lb.State  `json:"state"`
	InFlight        int64     `json:"in_flight"`
	Weight          int       `json:"weight"`
	Requests        uint64    `json:"requests"`
	Errors          uint64    `json:"errors"`
	Cut             uint64    `json:"cut"`
	LastHealthError string    `json:"last_health_error"`
	StateSince      time.Time `json:"state_since"`
}

func (t *target) snapshot() snapshot {
	var total uint64
	for i := range t.requests {
		total += t.requests[i].Load()
	}
	t.mu.Lock()
	since, lastHealth := t.stateSince, t.lastHealth
	t.mu.Unlock()
	return snapshot{
		Address:         t.addr,
		State:           t.loadState().lbState(),
		InFlight:        t.inFlight.Load(),
		Weight:          int(t.weight.Load()),
		Requests:        total,
		Errors:          t.errors.Load(),
		Cut:             t.cut.Load(),
		LastHealthError: lastHealth,
		StateSince:      since.UTC(),
	}
}
