package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const (
	modeOpen   = "open"
	modeClosed = "closed"

	// collectGrace is how long after a second ends the collector waits
	// before finishing its row, so that requests measured in that second
	// have been recorded.
	collectGrace = 100 * time.Millisecond
	// readBufSize is each worker's body buffer and the raw client's read
	// buffer.
	readBufSize = 32 << 10
)

// Generator fires requests at targets and measures what becomes of them.
// Use New, then Run; or Start, Mark while it runs, and Stop.
type Generator struct {
	cfg     Config
	lanes   []*lane
	cycle   []int
	closed  bool
	client  ClientKind
	hc      *http.Client
	tr      *http.Transport
	verKey  string
	highest int64 // µs, the histograms' top
	naddrs  int

	shards []*shard

	t0       time.Time
	tickets  chan ticket
	stopCh   chan struct{}
	issued   chan struct{} // closed when no more requests will be issued
	issuedMu sync.Once
	abortCtx context.Context
	abort    context.CancelCauseFunc
	wg       sync.WaitGroup
	schedEnd chan struct{}
	collStop chan struct{}
	collEnd  chan struct{}
	durTimer *time.Timer // closed loop: ends issuing after Duration

	workers    atomic.Int64
	idle       atomic.Int64
	inflight   atomic.Int64
	peak       atomic.Int64
	total      atomic.Int64
	seq        atomic.Uint64
	closedStop atomic.Bool

	jtlMu  sync.Mutex
	jtlErr error

	stopMu sync.Mutex // serializes Stop
	report *Report

	mu            sync.Mutex // guards the fields below
	state         int
	stopAt        time.Time
	natural       bool // issuing ended by itself (Duration reached)
	open          map[int64]*openRow
	spareOpen     []*openRow
	nextSec       int64
	tl            *timeline
	finished      Snapshot
	events        []Event
	eventsDropped int
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// ticket is one due request of the open model.
type ticket struct {
	due  time.Time
	lane int
}

// New validates cfg and prepares a generator; nothing is sent before
// Start or Run.
func New(cfg Config) (*Generator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lanes := buildLanes(&cfg)
	cycle, err := laneCycle(lanes)
	if err != nil {
		return nil, err
	}
	g := &Generator{
		cfg:      cfg,
		lanes:    lanes,
		cycle:    cycle,
		closed:   cfg.Connections > 0,
		client:   cfg.Client,
		verKey:   http.CanonicalHeaderKey(cfg.VersionHeader),
		stopCh:   make(chan struct{}),
		issued:   make(chan struct{}),
		schedEnd: make(chan struct{}),
		collStop: make(chan struct{}),
		collEnd:  make(chan struct{}),
		open:     map[int64]*openRow{},
		tl:       newTimeline(cfg.TimelineRows),
	}
	for _, l := range lanes {
		g.naddrs = max(g.naddrs, l.addrIdx+1)
	}
	if g.client == ClientAuto {
		g.client = ClientGo
		if g.closed {
			g.client = ClientRaw
			for _, l := range lanes {
				if l.u.Scheme != "http" {
					g.client = ClientGo
				}
			}
		}
	}
	// Latency from due time can reach MaxLag + Timeout and a little more;
	// the histograms go well past that, and at least a minute.
	top := max(time.Minute, 2*(cfg.MaxLag+cfg.Timeout))
	g.highest = top.Microseconds()
	workers := cfg.MaxConcurrency
	if g.closed {
		workers = cfg.Connections
	}
	nshards := min(max(4, 4*runtime.GOMAXPROCS(0)), workers)
	g.shards = make([]*shard, max(nshards, 1))
	for i := range g.shards {
		g.shards[i] = newShard(g.highest)
	}
	if g.client == ClientGo {
		g.tr = &http.Transport{
			Proxy: nil, // a load verifier talks to the target itself
			DialContext: (&net.Dialer{
				Timeout:   cfg.Timeout,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			DisableKeepAlives:   cfg.DisableKeepAlives,
			TLSHandshakeTimeout: cfg.Timeout,
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify}, //nolint:gosec // opt-in
		}
		g.hc = &http.Client{
			Transport: g.tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a redirect is an answer, not followed
			},
		}
		for _, l := range lanes {
			l.tmpl = newTemplate(l)
		}
	}
	g.abortCtx, g.abort = context.WithCancelCause(context.Background())
	return g, nil
}

// ClientKind returns the client the generator uses (Auto resolved).
func (g *Generator) ClientKind() ClientKind { return g.client }

// Start begins sending. It returns at once; the run ends when Duration has
// passed (see Done) or Stop is called.
func (g *Generator) Start() error {
	g.mu.Lock()
	if g.state != stateNew {
		g.mu.Unlock()
		return errors.New("load generator already started")
	}
	g.state = stateRunning
	g.t0 = time.Now()
	g.mu.Unlock()

	if g.cfg.JTL != nil {
		g.writeJTL([]byte(jtlHeader))
	}
	go g.collect()
	if g.closed {
		close(g.schedEnd)
		for range g.cfg.Connections {
			g.spawn(g.closedWorker)
		}
		if g.cfg.Duration > 0 {
			g.durTimer = time.AfterFunc(g.cfg.Duration, func() { g.endIssue(true) })
		}
		return nil
	}
	g.tickets = make(chan ticket, ticketBuffer(g.cfg))
	go g.schedule()
	return nil
}

// ticketBuffer sizes the open model's queue: room for every request due
// within twice the lag bound, within limits.
func ticketBuffer(c Config) int {
	n := 2 * c.Rate * c.MaxLag.Seconds()
	return int(min(max(n, 1024), 1<<20))
}

// Done is closed when the generator has issued its last request: its
// Duration has passed, or Stop was called.
func (g *Generator) Done() <-chan struct{} { return g.issued }

// Run starts the generator, waits until its Duration has passed or ctx is
// done, and stops it (waiting for requests in flight, each bounded by
// Timeout). A run cut short by ctx is marked Interrupted in the report.
func (g *Generator) Run(ctx context.Context) (*Report, error) {
	if err := g.Start(); err != nil {
		return nil, err
	}
	select {
	case <-g.issued:
	case <-ctx.Done():
	}
	return g.Stop(context.Background())
}

// endIssue marks the end of issuing; natural says Duration was reached.
func (g *Generator) endIssue(natural bool) {
	g.issuedMu.Do(func() {
		g.mu.Lock()
		g.natural = natural
		if natural {
			g.stopAt = g.t0.Add(g.cfg.Duration)
		} else {
			g.stopAt = time.Now()
		}
		g.mu.Unlock()
		g.closedStop.Store(true)
		close(g.issued)
	})
}

// Stop ends the run: no new request is issued, requests in flight finish
// (each within Timeout) or, if ctx ends first, are aborted (outcome
// "aborted"). It returns the report; calling it again returns the same
// report. The error is non-nil only when writing the JTL failed.
func (g *Generator) Stop(ctx context.Context) (*Report, error) {
	g.stopMu.Lock()
	defer g.stopMu.Unlock()
	if g.report != nil {
		return g.report, g.jtlError()
	}
	g.mu.Lock()
	if g.state != stateRunning {
		g.mu.Unlock()
		return nil, errors.New("load generator not started")
	}
	g.mu.Unlock()

	if g.durTimer != nil {
		g.durTimer.Stop()
	}
	g.endIssue(false)
	close(g.stopCh)
	<-g.schedEnd
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		g.abort(errAborted)
		<-done
	}
	close(g.collStop)
	<-g.collEnd
	g.finishRows(true)
	if g.tr != nil {
		g.tr.CloseIdleConnections()
	}
	g.abort(context.Canceled) // release the context's resources
	for _, s := range g.shards {
		s.mu.Lock()
		buf := s.jtl
		s.jtl = nil
		s.mu.Unlock()
		if len(buf) > 0 {
			g.writeJTL(buf)
		}
	}
	g.mu.Lock()
	g.state = stateStopped
	g.mu.Unlock()
	g.report = g.buildReport()
	return g.report, g.jtlError()
}

// Mark records an event (a rollout step) to show on the report's time axis.
// It may be called at any time, from any goroutine.
func (g *Generator) Mark(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.events) >= maxEvents {
		g.eventsDropped++
		return
	}
	g.events = append(g.events, e)
}

// Snapshot is the state of a running generator, for a live view. Counts
// cover the finished seconds of the timeline.
type Snapshot struct {
	Elapsed  time.Duration
	Sent     int64
	OK       int64
	Failed   int64
	Dropped  int64
	InFlight int64
	// Last is the last finished second (zero before the first).
	Last Row
}

// Snapshot returns the counts so far.
func (g *Generator) Snapshot() Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.finished
	s.Last = cloneRow(s.Last)
	if g.state != stateNew {
		s.Elapsed = time.Since(g.t0)
	}
	s.InFlight = g.inflight.Load()
	return s
}

// spawn starts a worker running loop.
func (g *Generator) spawn(loop func(*worker)) {
	id := int(g.workers.Add(1)) - 1
	w := &worker{
		g:     g,
		id:    id,
		shard: g.shards[id%len(g.shards)],
		buf:   make([]byte, readBufSize),
		conns: make([]*rawConn, g.naddrs),
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer w.closeConns()
		loop(w)
	}()
}

// schedule is the open model's clock: request i is due at t0 + i/Rate.
// It wakes when the next request is due and hands out every due ticket;
// when it was late, it catches up at once, each ticket keeping its own due
// time, so lateness shows as start lag and, past MaxLag, as drops.
func (g *Generator) schedule() {
	defer close(g.schedEnd)
	defer close(g.tickets)
	interval := float64(time.Second) / g.cfg.Rate
	n := int64(-1)
	if g.cfg.Duration > 0 {
		n = int64(math.Floor(g.cfg.Duration.Seconds()*g.cfg.Rate + 1e-9))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var i int64
	for {
		limit := time.Since(g.t0)
		stopping := false
		select {
		case <-g.stopCh:
			stopping = true
			g.mu.Lock()
			limit = g.stopAt.Sub(g.t0)
			g.mu.Unlock()
		default:
		}
		for n < 0 || i < n {
			due := time.Duration(float64(i) * interval)
			if due > limit || (stopping && due == limit) {
				break
			}
			g.emit(ticket{due: g.t0.Add(due), lane: g.cycle[i%int64(len(g.cycle))]})
			i++
		}
		if stopping {
			return
		}
		if n >= 0 && i >= n {
			g.endIssue(true)
			return
		}
		next := g.t0.Add(time.Duration(float64(i) * interval))
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-g.stopCh:
		}
	}
}

// emit queues a ticket and adds a worker when none is idle for it.
func (g *Generator) emit(t ticket) {
	g.total.Add(1)
	select {
	case g.tickets <- t:
	default:
		// The queue holds twice MaxLag's worth of tickets: when it is full
		// nothing has started for that long.
		w := &worker{g: g, shard: g.shards[0], id: -1}
		w.recordUnstarted(t, time.Now(), Dropped)
		return
	}
	if g.idle.Load() < int64(len(g.tickets)) && g.workers.Load() < int64(g.cfg.MaxConcurrency) {
		g.spawn(g.openWorker)
	}
}

func (g *Generator) openWorker(w *worker) {
	for {
		g.idle.Add(1)
		t, ok := <-g.tickets
		g.idle.Add(-1)
		if !ok {
			return
		}
		now := time.Now()
		switch {
		case g.abortCtx.Err() != nil:
			w.recordUnstarted(t, now, Aborted)
		case now.Sub(t.due) > g.cfg.MaxLag:
			w.recordUnstarted(t, now, Dropped)
		default:
			w.run(g.lanes[t.lane], t.due, now)
		}
	}
}

func (g *Generator) closedWorker(w *worker) {
	now := time.Now()
	for !g.closedStop.Load() && g.abortCtx.Err() == nil {
		i := g.seq.Add(1) - 1
		g.total.Add(1)
		w.run(g.lanes[g.cycle[i%uint64(len(g.cycle))]], now, now)
		now = w.res.end // the next request starts as this one ends
	}
}

// secOf is the second of the run that t falls in.
func (g *Generator) secOf(t time.Time) int64 {
	d := t.Sub(g.t0)
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// collect finishes one timeline row per second, shortly after the second
// ends.
func (g *Generator) collect() {
	defer close(g.collEnd)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.mu.Lock()
		next := g.t0.Add(time.Duration(g.nextSec+1)*time.Second + collectGrace)
		g.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
			g.finishRows(false)
		case <-g.collStop:
			return
		}
	}
}

// finishRows takes the shards' per-second rows and finishes the seconds
// that have ended (all of them when final).
func (g *Generator) finishRows(final bool) {
	var done []Row
	g.mu.Lock()
	upTo := g.secOf(time.Now())
	if final {
		upTo = g.nextSec
		if !g.stopAt.IsZero() {
			upTo = max(upTo, g.secOf(g.stopAt.Add(-time.Nanosecond))+1)
		}
	}
	for _, s := range g.shards {
		s.mu.Lock()
		keep := s.rows[:0]
		for _, r := range s.rows {
			switch {
			case r.sec >= upTo && !final:
				keep = append(keep, r)
				continue
			case r.sec < g.nextSec:
				g.tl.addLate(r.sec, r)
				g.finished.Sent += r.sent
				g.addFinished(&r.outcomes)
			default:
				g.openRow(r.sec).add(r)
				upTo = max(upTo, r.sec+1)
			}
			s.recycle(r)
		}
		clear(s.rows[len(keep):])
		s.rows = keep
		s.mu.Unlock()
	}
	for ; g.nextSec < upTo; g.nextSec++ {
		row := Row{T: g.nextSec, Seconds: 1}
		if o := g.open[g.nextSec]; o != nil {
			row = o.finish(g.nextSec)
			g.finished.Sent += o.sent
			g.addFinished(&o.outcomes)
			delete(g.open, g.nextSec)
			o.hist.Reset()
			o.versions.reset()
			*o = openRow{hist: o.hist, versions: o.versions}
			g.spareOpen = append(g.spareOpen, o)
		}
		g.tl.push(row)
		g.finished.Last = row
		if g.cfg.OnSecond != nil {
			done = append(done, cloneRow(row))
		}
	}
	g.mu.Unlock()
	for _, r := range done {
		g.cfg.OnSecond(r)
	}
}

func (g *Generator) addFinished(o *[numOutcomes]int64) {
	for i, n := range o {
		switch Outcome(i) {
		case OK:
			g.finished.OK += n
		case Dropped:
			g.finished.Dropped += n
			g.finished.Failed += n
		default:
			g.finished.Failed += n
		}
	}
}

// openRow returns the collector's row for sec. Called with g.mu held.
func (g *Generator) openRow(sec int64) *openRow {
	if o := g.open[sec]; o != nil {
		return o
	}
	var o *openRow
	if n := len(g.spareOpen); n > 0 {
		o = g.spareOpen[n-1]
		g.spareOpen = g.spareOpen[:n-1]
	} else {
		o = &openRow{hist: newHist(g.highest, rowDigits), versions: newBoundedCounts(maxRowVersions)}
	}
	g.open[sec] = o
	return o
}

func (g *Generator) writeJTL(b []byte) {
	g.jtlMu.Lock()
	defer g.jtlMu.Unlock()
	if g.jtlErr != nil {
		return
	}
	if _, err := g.cfg.JTL.Write(b); err != nil {
		g.jtlErr = fmt.Errorf("write JTL: %w", err)
	}
}

func (g *Generator) jtlError() error {
	g.jtlMu.Lock()
	defer g.jtlMu.Unlock()
	return g.jtlErr
}
