package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zerodown/zerodown/internal/config"
)

// settings are a pool's tunables, swapped as a whole on reload.
type settings struct {
	balance             string
	health              config.HealthCheck
	passiveFailures     int
	failOpen            bool
	deregistrationDelay time.Duration
	websocketGrace      time.Duration
	retries             int
	maxReplay           int64
	connectTimeout      time.Duration
	responseTimeout     time.Duration
	idleTimeout         time.Duration
	maxIdle             int
}

func settingsFrom(c *config.Pool) *settings {
	s := &settings{
		balance:             c.Balance,
		health:              c.Health,
		passiveFailures:     config.DefaultPassiveFailures,
		failOpen:            true,
		deregistrationDelay: time.Duration(c.DeregistrationDelay),
		websocketGrace:      time.Duration(c.WebSocketGrace),
		retries:             config.DefaultRetries,
		maxReplay:           int64(c.MaxReplayBytes),
		connectTimeout:      time.Duration(c.Upstream.ConnectTimeout),
		responseTimeout:     time.Duration(c.Upstream.ResponseTimeout),
		idleTimeout:         time.Duration(c.Upstream.IdleTimeout),
		maxIdle:             c.Upstream.MaxIdlePerTarget,
	}
	if c.Health.PassiveFailures != nil {
		s.passiveFailures = *c.Health.PassiveFailures
	}
	if c.FailOpen != nil {
		s.failOpen = *c.FailOpen
	}
	if c.Retries != nil {
		s.retries = *c.Retries
	}
	return s
}

// routeSet is the immutable set of targets that may get new requests, rebuilt
// on every state or weight change and read without locks.
type routeSet struct {
	targets  []*target
	weights  []int32
	equal    bool    // all weights equal: plain rotation, no weighting
	sequence []int32 // smooth weighted round-robin order, when weights differ
	failOpen bool    // set when no target is healthy and the pool fails open
}

// pool is a named set of targets behind one balancing algorithm.
type pool struct {
	name string
	srv  *Server
	cfg  atomic.Pointer[settings]

	mu      sync.Mutex
	targets map[string]*target
	order   []string // attach order, for stable listings

	routes atomic.Pointer[routeSet]
	next   atomic.Uint64

	latency prometheus.Observer
	retries prometheus.Counter
	noPick  prometheus.Counter
}

func newPool(srv *Server, c *config.Pool) *pool {
	p := &pool{name: c.Name, srv: srv, targets: make(map[string]*target)}
	p.cfg.Store(settingsFrom(c))
	p.routes.Store(&routeSet{})
	p.latency = srv.metrics.latency.WithLabelValues(p.name)
	p.retries = srv.metrics.retries.WithLabelValues(p.name)
	p.noPick = srv.metrics.noTarget.WithLabelValues(p.name)
	return p
}

func (p *pool) settings() *settings { return p.cfg.Load() }

// hasHealthy reports whether a request routed to the pool now would find
// a healthy target (failing open does not count).
func (p *pool) hasHealthy() bool {
	rs := p.routes.Load()
	return len(rs.targets) > 0 && !rs.failOpen
}

// rebuild recomputes the routable set; the caller holds p.mu.
func (p *pool) rebuild() {
	s := p.settings()
	rs := &routeSet{}
	for _, addr := range p.order {
		t := p.targets[addr]
		if t.loadState() == stateHealthy && t.weight.Load() > 0 && !t.detached.Load() {
			rs.targets = append(rs.targets, t)
		}
	}
	if len(rs.targets) == 0 && s.failOpen {
		// Like AWS: with no healthy target, send to every attached one rather
		// than fail every request.
		for _, addr := range p.order {
			t := p.targets[addr]
			st := t.loadState()
			if (st == stateUnhealthy || st == stateInitial) && t.weight.Load() > 0 && !t.detached.Load() {
				rs.targets = append(rs.targets, t)
			}
		}
		rs.failOpen = len(rs.targets) > 0
	}
	rs.weights = make([]int32, len(rs.targets))
	rs.equal = true
	for i, t := range rs.targets {
		rs.weights[i] = t.weight.Load()
		if rs.weights[i] != rs.weights[0] {
			rs.equal = false
		}
	}
	if !rs.equal {
		// Both algorithms send unequal weights through this order.
		rs.sequence = smoothSequence(rs.weights)
	}
	p.routes.Store(rs)
}

// maxSequence bounds the precomputed weighted order; beyond it weighted
// random choice is used, which converges to the same shares.
const maxSequence = 4096

// smoothSequence is nginx's smooth weighted round robin unrolled over one
// period, after dividing the weights by their gcd.
func smoothSequence(weights []int32) []int32 {
	g := int32(0)
	for _, w := range weights {
		g = gcd(g, w)
	}
	total := 0
	for _, w := range weights {
		total += int(w / g)
	}
	if total > maxSequence {
		return nil
	}
	seq := make([]int32, 0, total)
	current := make([]int, len(weights))
	for len(seq) < total {
		best := -1
		for i, w := range weights {
			current[i] += int(w / g)
			if best < 0 || current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, int32(best))
	}
	return seq
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// maxTried is how many targets one request remembers having failed on.
const maxTried = 4

type triedSet struct {
	n     int
	addrs [maxTried]*target
}

func (ts *triedSet) add(t *target) {
	if ts.n < maxTried {
		ts.addrs[ts.n] = t
		ts.n++
	}
}

func (ts *triedSet) has(t *target) bool {
	for i := 0; i < ts.n; i++ {
		if ts.addrs[i] == t {
			return true
		}
	}
	return false
}

// pick chooses a target for a new request and counts it in flight; nil when
// the pool has nothing routable. Targets already tried are avoided while
// others remain.
func (p *pool) pick(tried *triedSet) *target {
	rs := p.routes.Load()
	n := len(rs.targets)
	if n == 0 {
		return nil
	}
	var t *target
	if n == 1 {
		t = rs.targets[0]
	} else if p.settings().balance == config.BalanceRoundRobin {
		t = p.pickRoundRobin(rs, tried)
	} else {
		t = p.pickLeastOutstanding(rs, tried)
	}
	t.inFlight.Add(1)
	return t
}

func (p *pool) pickRoundRobin(rs *routeSet, tried *triedSet) *target {
	n := len(rs.targets)
	for attempt := 0; attempt < n; attempt++ {
		i := p.next.Add(1)
		var t *target
		switch {
		case rs.equal:
			t = rs.targets[i%uint64(n)]
		case rs.sequence != nil:
			t = rs.targets[rs.sequence[i%uint64(len(rs.sequence))]]
		default:
			t = rs.targets[weightedRandom(rs.weights)]
		}
		if tried.n == 0 || !tried.has(t) {
			return t
		}
	}
	return rs.targets[p.next.Add(1)%uint64(n)]
}

// pickLeastOutstanding picks the target with the fewest in-flight requests
// when the weights are equal; the scan starts at a rotating index so ties
// spread. With unequal weights it is weighted round robin.
func (p *pool) pickLeastOutstanding(rs *routeSet, tried *triedSet) *target {
	if !rs.equal {
		// Weights that differ are shares of the requests (a canary's
		// 10%): fewest-in-flight-per-weight would send every request to
		// the heaviest target while the pool is idle.
		return p.pickRoundRobin(rs, tried)
	}
	n := len(rs.targets)
	start := int(p.next.Add(1) % uint64(n))
	var best *target
	var bestLoad, bestWeight int64
	for k := 0; k < n; k++ {
		i := start + k
		if i >= n {
			i -= n
		}
		t := rs.targets[i]
		if tried.n > 0 && tried.has(t) {
			continue
		}
		load, w := t.inFlight.Load()+1, int64(rs.weights[i])
		// load/w < bestLoad/bestWeight without division.
		if best == nil || load*bestWeight < bestLoad*w {
			best, bestLoad, bestWeight = t, load, w
		}
	}
	if best == nil {
		return rs.targets[start]
	}
	return best
}

func weightedRandom(weights []int32) int {
	total := 0
	for _, w := range weights {
		total += int(w)
	}
	r := rand.IntN(total)
	for i, w := range weights {
		r -= int(w)
		if r < 0 {
			return i
		}
	}
	return len(weights) - 1
}

// errUnknownTarget is returned for a target the pool has never had.
var errUnknownTarget = errors.New("unknown target")

// attach registers addr (or re-registers a draining or unused target). It
// starts in `initial` and gets traffic once its health checks pass. weight <
// 0 keeps the current weight.
func (p *pool) attach(addr string, weight int, trusted bool) (*target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.targets[addr]
	if !ok {
		if weight < 0 {
			weight = config.DefaultWeight
		}
		t = newTarget(p, addr, weight)
		t.trusted.Store(trusted)
		p.targets[addr] = t
		p.order = append(p.order, addr)
		p.startHealth(t)
		p.rebuild()
		return t, nil
	}
	if weight >= 0 {
		t.weight.Store(int32(weight))
	}
	switch t.loadState() {
	case stateDraining, stateUnused:
		t.generation.Add(1)
		t.detached.Store(false)
		t.mu.Lock()
		if t.drainCancel != nil {
			close(t.drainCancel)
			t.drainCancel = nil
		}
		t.mu.Unlock()
		t.connFails.Store(0)
		t.setState(stateInitial)
		p.startHealth(t)
	}
	p.rebuild()
	return t, nil
}

// detach stops new requests to addr before it returns, closes its idle
// connections and lets in-flight requests finish in the background.
func (p *pool) detach(addr string) (*target, error) {
	p.mu.Lock()
	t, ok := p.targets[addr]
	if !ok {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w %s in pool %s", errUnknownTarget, addr, p.name)
	}
	st := t.loadState()
	if st == stateDraining || st == stateUnused {
		p.mu.Unlock()
		return t, nil
	}
	t.detached.Store(true)
	gen := t.generation.Add(1)
	t.setState(stateDraining)
	p.stopHealth(t)
	p.rebuild()
	cancel := make(chan struct{})
	t.mu.Lock()
	t.drainCancel = cancel
	t.mu.Unlock()
	p.mu.Unlock()

	// Requests that admitted themselves before detached was set finish
	// writing their request head; after that the target gets nothing new.
	deadline := time.Now().Add(p.settings().connectTimeout + time.Second)
	for t.dispatching.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
	t.closeIdle(time.Now().UnixNano(), 0)
	go p.drain(t, gen, cancel)
	return t, nil
}

// drainPoll is how often a draining target's in-flight count is looked at.
const drainPoll = 5 * time.Millisecond

// drain waits for in-flight requests to finish, closes WebSockets after
// their grace period and cuts whatever is left at the deregistration delay.
func (p *pool) drain(t *target, gen uint64, cancel <-chan struct{}) {
	s := p.settings()
	start := time.Now()
	socketsClosed := false
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		if t.generation.Load() != gen {
			return
		}
		elapsed := time.Since(start)
		if !socketsClosed && elapsed >= s.websocketGrace && t.socketCount() > 0 {
			socketsClosed = true
			t.closeSockets()
		}
		if t.inFlight.Load() <= 0 && p.srv.previousGone() {
			break
		}
		if elapsed >= s.deregistrationDelay {
			n := t.cutAll()
			if n > 0 {
				t.cut.Add(uint64(n))
				p.srv.log.Warn("deregistration delay passed, cutting requests",
					"pool", p.name, "target", t.addr, "cut", n, "delay", s.deregistrationDelay)
			}
			break
		}
		select {
		case <-cancel:
			return
		case <-tick.C:
		}
	}
	p.mu.Lock()
	if t.generation.Load() == gen {
		t.setState(stateUnused)
		t.closeIdle(time.Now().UnixNano(), 0)
		p.srv.log.Info("target drained", "pool", p.name, "target", t.addr, "took", time.Since(start).Round(time.Millisecond))
	}
	p.mu.Unlock()
}

// setWeight changes a target's share of new requests.
func (p *pool) setWeight(addr string, weight int) (*target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.targets[addr]
	if !ok {
		return nil, fmt.Errorf("%w %s in pool %s", errUnknownTarget, addr, p.name)
	}
	t.weight.Store(int32(weight))
	p.rebuild()
	return t, nil
}

func (p *pool) lookup(addr string) *target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targets[addr]
}

// list returns the targets in attach order.
func (p *pool) list() []*target {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*target, 0, len(p.order))
	for _, addr := range p.order {
		out = append(out, p.targets[addr])
	}
	return out
}

// saved is what the state file records: every target, detached or not.
func (p *pool) saved() []savedTarget {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]savedTarget, 0, len(p.order))
	for _, addr := range p.order {
		t := p.targets[addr]
		out = append(out, savedTarget{Address: addr, Weight: int(t.weight.Load()), Detached: t.detached.Load()})
	}
	return out
}

// restoreDetached lists addr as a detached target, as the state file had
// it. While the process that handed its sockets over is still finishing
// requests, the target may have some in flight there: it reads draining
// until that process is gone.
func (p *pool) restoreDetached(addr string, weight int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.targets[addr]; ok {
		return
	}
	t := newTarget(p, addr, weight)
	t.detached.Store(true)
	t.checkedOnce.Do(func() { close(t.checked) })
	p.targets[addr] = t
	p.order = append(p.order, addr)
	p.rebuild()
	if p.srv.previousGone() {
		t.state.Store(int32(stateUnused))
		return
	}
	t.state.Store(int32(stateDraining))
	gen := t.generation.Load()
	cancel := make(chan struct{})
	t.drainCancel = cancel
	go p.drain(t, gen, cancel)
}

// waitState polls until the target reaches want, or ctx ends; the error
// says what state it was left in.
func (p *pool) waitState(ctx context.Context, t *target, want targetState) error {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		st := t.loadState()
		if st == want {
			return nil
		}
		if want == stateHealthy && (st == stateDraining || st == stateUnused) {
			return fmt.Errorf("target %s was detached while waiting for it to become healthy", t.addr)
		}
		select {
		case <-ctx.Done():
			snap := t.snapshot()
			msg := fmt.Sprintf("target %s in pool %s is %s, not %s", t.addr, p.name, snap.State, want.lbState())
			if want == stateUnused {
				msg += fmt.Sprintf(": %d requests still in flight", snap.InFlight)
			}
			if snap.LastHealthError != "" && want == stateHealthy {
				msg += ": last health check: " + snap.LastHealthError
			}
			return &waitError{msg: msg}
		case <-tick.C:
		}
	}
}

type waitError struct{ msg string }

func (e *waitError) Error() string { return e.msg }

// shutdown stops health checks and drainers of every target.
func (p *pool) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		p.stopHealth(t)
		t.generation.Add(1)
		t.closeIdle(time.Now().UnixNano(), 0)
	}
}
