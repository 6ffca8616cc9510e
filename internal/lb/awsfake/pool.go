package awsfake

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// minCheckTimeout is the least a health check waits for its answer, however
// small the scale: a loaded test machine must not fail checks that AWS
// would pass.
const minCheckTimeout = time.Second

// phase is a registered target's place in the state machine.
type phase int

const (
	phaseInitial phase = iota
	phaseHealthy
	phaseUnhealthy
	phaseDraining
)

// check is how a pool health-checks its members, on the scaled clock.
type check struct {
	tcp       bool // a TCP connect check (classic TCP:port), else HTTP GET path
	path      string
	interval  time.Duration
	timeout   time.Duration
	healthy   int
	unhealthy int
}

// member is one registered target: an instance, or an ELBv2 (id, port).
type member struct {
	key    string
	addr   string // what the checks and the proxy reach
	phase  phase
	reason string // ELBv2's reason code of the last failed check
	desc   string
	ok     int
	fail   int
	flying map[*flight]struct{}
	stop   chan struct{} // closed to end the member's checker or drain
	idle   chan struct{} // closed when a draining member that may end early has no request in flight
}

// flight is one proxied request on a member, cancelled if it is cut.
type flight struct {
	cancel context.CancelFunc
	cut    atomic.Bool
}

// pool is the data plane of one classic load balancer or target group: its
// registered members, their health checks and draining, and the proxy.
type pool struct {
	mu      sync.Mutex
	check   check
	members map[string]*member
	rr      int

	requests, failures, cut atomic.Uint64

	client *http.Client
	rp     *httputil.ReverseProxy
	tr     *http.Transport
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	wg     sync.WaitGroup
}

type ctxKey struct{}

// target is what the reverse proxy's Rewrite reads from a request.
type target struct {
	addr   string
	flight *flight
}

func newPool(listen string, c check) (*pool, error) {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &pool{check: c, members: map[string]*member{}, ln: ln, done: make(chan struct{})}
	p.tr = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	p.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: max(c.timeout, minCheckTimeout)}
	p.rp = &httputil.ReverseProxy{
		Transport: p.tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(ctxKey{}).(*target)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = t.addr
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t := r.Context().Value(ctxKey{}).(*target)
			if t.flight.cut.Load() {
				p.cut.Add(1)
			}
			p.failures.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// serve proxies one request to the next healthy member, round robin. The
// member is picked and the request counted in flight under one lock, so a
// deregistration sees every request it must wait for.
func (p *pool) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	m, fl := p.pick()
	if m == nil {
		p.failures.Add(1)
		http.Error(w, "no healthy target", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	fl.cancel = cancel
	defer p.land(m, fl)
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, ctxKey{}, &target{addr: m.addr, flight: fl})))
}

func (p *pool) pick() (*member, *flight) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var up []*member
	for _, m := range p.members {
		if m.phase == phaseHealthy {
			up = append(up, m)
		}
	}
	if len(up) == 0 {
		return nil, nil
	}
	sort.Slice(up, func(i, j int) bool { return up[i].key < up[j].key })
	m := up[p.rr%len(up)]
	p.rr++
	fl := &flight{cancel: func() {}}
	m.flying[fl] = struct{}{}
	return m, fl
}

// land ends a request; the last one of a member draining early ends its drain.
func (p *pool) land(m *member, fl *flight) {
	fl.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(m.flying, fl)
	if len(m.flying) == 0 && m.idle != nil {
		close(m.idle)
		m.idle = nil
	}
}

// register adds a member, or takes back one that is draining; it starts in
// phaseInitial unless proven says it has passed its checks already (a
// target registered before the fake started).
func (p *pool) register(key, addr string, proven bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.members[key]; ok {
		if m.phase != phaseDraining {
			return
		}
		// Registered again while draining: its drain ends, its requests
		// in flight go on, and it proves its health again.
		close(m.stop)
		m.phase, m.ok, m.fail, m.idle = phaseInitial, 0, 0, nil
		m.stop = make(chan struct{})
		p.wg.Add(1)
		go p.checker(m)
		return
	}
	m := &member{key: key, addr: addr, flying: map[*flight]struct{}{}, stop: make(chan struct{})}
	if proven {
		m.phase = phaseHealthy
	}
	p.members[key] = m
	p.wg.Add(1)
	go p.checker(m)
}

// deregister starts a member's drain: no new request, those in flight go
// on until delay passes, or (endWhenIdle, classic ELB) until none is left.
// A zero delay removes it at once, cutting what is in flight.
func (p *pool) deregister(key string, delay time.Duration, endWhenIdle bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[key]
	if !ok || m.phase == phaseDraining {
		return
	}
	close(m.stop) // ends its checker
	if delay <= 0 || (endWhenIdle && len(m.flying) == 0) {
		delete(p.members, key)
		p.cutLocked(m)
		return
	}
	m.phase = phaseDraining
	m.stop = make(chan struct{})
	var idle chan struct{}
	if endWhenIdle {
		idle = make(chan struct{})
		m.idle = idle
	}
	p.wg.Add(1)
	go func(stop chan struct{}) {
		defer p.wg.Done()
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-idle: // nil unless endWhenIdle
		case <-stop:
			return // registered again
		case <-p.done:
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.members[key] == m {
			delete(p.members, key)
			p.cutLocked(m)
		}
	}(m.stop)
}

// cutLocked cancels the requests still in flight on a removed member.
func (p *pool) cutLocked(m *member) {
	for fl := range m.flying {
		fl.cut.Store(true)
		fl.cancel()
	}
}

// checker health-checks m every interval, the first at once, until m is
// deregistered.
func (p *pool) checker(m *member) {
	defer p.wg.Done()
	p.mu.Lock()
	stop := m.stop
	p.mu.Unlock()
	ticker := time.NewTicker(p.check.interval)
	defer ticker.Stop()
	for {
		ok, reason, desc := p.probe(m.addr, stop)
		p.mu.Lock()
		select {
		case <-stop:
			p.mu.Unlock()
			return
		default:
		}
		p.record(m, ok, reason, desc)
		p.mu.Unlock()
		select {
		case <-ticker.C:
		case <-stop:
			return
		case <-p.done:
			return
		}
	}
}

// record counts one check's result and moves m by the thresholds.
func (p *pool) record(m *member, ok bool, reason, desc string) {
	if ok {
		m.ok, m.fail = m.ok+1, 0
		if m.phase != phaseHealthy && m.ok >= p.check.healthy {
			m.phase, m.reason, m.desc = phaseHealthy, "", ""
		}
		return
	}
	m.ok, m.fail = 0, m.fail+1
	m.reason, m.desc = reason, desc
	if m.phase != phaseUnhealthy && m.fail >= p.check.unhealthy {
		m.phase = phaseUnhealthy
	}
}

// probe runs one health check against addr, as ELBv2 words its failures.
func (p *pool) probe(addr string, stop chan struct{}) (ok bool, reason, desc string) {
	ctx, cancel := context.WithTimeout(context.Background(), max(p.check.timeout, minCheckTimeout))
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if p.check.tcp {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, "Target.FailedHealthChecks", "Health checks failed"
		}
		c.Close()
		return true, "", ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.check.path, nil)
	if err != nil {
		return false, "Target.FailedHealthChecks", "Health checks failed"
	}
	req.Header.Set("User-Agent", "ELB-HealthChecker/2.0")
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return false, "Target.Timeout", "Request timed out"
		}
		return false, "Target.FailedHealthChecks", "Health checks failed"
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, "Target.ResponseCodeMismatch", "Health checks failed with these codes: [" + itoa(resp.StatusCode) + "]"
	}
	return true, "", ""
}

// snapshot returns a copy of a member's state, and whether it is registered.
func (p *pool) snapshot(key string) (member, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[key]
	if !ok {
		return member{}, false
	}
	return member{key: m.key, addr: m.addr, phase: m.phase, reason: m.reason, desc: m.desc}, true
}

// keys lists the registered members.
func (p *pool) keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.members))
	for k := range p.members {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (p *pool) close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	_ = p.srv.Close()
	p.mu.Lock()
	for _, m := range p.members {
		p.cutLocked(m)
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.tr.CloseIdleConnections()
}
