package loadgen

import (
	"bytes"
	"time"
)

// worker sends one request at a time and records it into its shard.
type worker struct {
	g     *Generator
	id    int
	shard *shard
	buf   []byte
	conns []*rawConn // raw client: one connection per distinct address
	res   result
	m     matcher
	// lastVer caches the last version string so the raw client does not
	// allocate one per answer.
	lastVer string
}

// run sends one request and records its outcome.
func (w *worker) run(l *lane, due, start time.Time) {
	g := w.g
	r := &w.res
	*r = result{lane: l, due: due, start: start, worker: w.id}
	n := g.inflight.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	w.markSent(start)
	if g.client == ClientRaw {
		w.doRaw(l, r)
	} else {
		w.doGo(l, r)
	}
	if r.end.IsZero() {
		r.end = time.Now()
	}
	g.inflight.Add(-1)
	w.record(r)
	r.err = nil
}

// markSent counts a request in the second it started.
func (w *worker) markSent(start time.Time) {
	g, s := w.g, w.shard
	sec := g.secOf(start)
	s.mu.Lock()
	s.sent++
	s.row(sec, g.highest).sent++
	if start.After(s.lastSent) {
		s.lastSent = start
	}
	s.mu.Unlock()
}

// recordUnstarted gives a request that never started its outcome.
func (w *worker) recordUnstarted(t ticket, now time.Time, o Outcome) {
	r := &result{lane: w.g.lanes[t.lane], due: t.due, end: now, outcome: o, worker: w.id}
	if o == Aborted {
		r.err = errAborted
	}
	w.record(r)
}

// record adds a finished request to the worker's shard.
func (w *worker) record(r *result) {
	g, s := w.g, w.shard
	sec := g.secOf(r.end)
	var flush []byte
	s.mu.Lock()
	s.outcomes[r.outcome]++
	row := s.row(sec, g.highest)
	row.outcomes[r.outcome]++
	if r.code != 0 {
		if r.code < len(s.codes) {
			s.codes[r.code]++
		}
		v := r.version
		if !r.hasVer {
			v = NoVersion
		}
		s.versions.add(v, 1)
		row.versions.add(v, 1)
		s.recordVersion(r, g.highest)
	}
	if r.retried {
		s.retried++
	}
	s.bytesIn += r.bytesIn
	s.bytesOut += r.bytesOut
	if !r.start.IsZero() {
		lat := r.end.Sub(r.due)
		recordMicros(s.latency, lat)
		if !g.closed { // in the closed loop, due is start: service is latency
			recordMicros(s.service, r.end.Sub(r.start))
			recordMicros(s.lag, r.start.Sub(r.due))
		}
		recordMicros(row.hist, lat)
	}
	if s.firstAt.IsZero() || r.due.Before(s.firstAt) {
		s.firstAt = r.due
	}
	if r.end.After(s.lastEnd) {
		s.lastEnd = r.end
	}
	if r.outcome != OK && len(s.samples[r.outcome]) < samplesPerOutcome {
		s.samples[r.outcome] = append(s.samples[r.outcome], errSample{at: r.end, msg: failureText(r, g.cfg.MaxLag)})
	}
	if g.cfg.JTL != nil {
		s.jtl = appendJTL(s.jtl, r, g)
		if len(s.jtl) >= 32<<10 {
			flush = s.jtl
			s.jtl = make([]byte, 0, 40<<10)
		}
	}
	s.mu.Unlock()
	if flush != nil {
		g.writeJTL(flush)
	}
}

// closeConns closes the raw client's connections.
func (w *worker) closeConns() {
	for i, c := range w.conns {
		if c != nil {
			c.close()
			w.conns[i] = nil
		}
	}
}

// matcher checks a body as it streams by: that it contains sub, or that
// it equals echo.
type matcher struct {
	sub   []byte
	echo  []byte
	isEch bool
	found bool
	carry []byte
	pos   int
	bad   bool
}

func (m *matcher) reset(l *lane) {
	m.sub = m.sub[:0]
	m.sub = append(m.sub, l.ExpectBody...)
	m.echo = l.Body
	m.isEch = l.ExpectEcho
	m.found = len(m.sub) == 0
	m.carry = m.carry[:0]
	m.pos = 0
	m.bad = false
}

func (m *matcher) feed(p []byte) {
	if m.isEch {
		if m.bad {
			return
		}
		if m.pos+len(p) > len(m.echo) || !bytes.Equal(p, m.echo[m.pos:m.pos+len(p)]) {
			m.bad = true
			return
		}
		m.pos += len(p)
		return
	}
	if m.found || len(p) == 0 {
		return
	}
	k := len(m.sub) - 1
	if len(m.carry) > 0 {
		// A match across the boundary of two reads.
		joined := append(m.carry, p[:min(len(p), k)]...)
		if bytes.Contains(joined, m.sub) {
			m.found = true
			return
		}
		m.carry = joined[:len(m.carry)]
	}
	if bytes.Contains(p, m.sub) {
		m.found = true
		return
	}
	if k == 0 {
		return
	}
	if len(p) >= k {
		m.carry = append(m.carry[:0], p[len(p)-k:]...)
		return
	}
	m.carry = append(m.carry, p...)
	if len(m.carry) > k {
		m.carry = append(m.carry[:0], m.carry[len(m.carry)-k:]...)
	}
}

func (m *matcher) ok() bool {
	if m.isEch {
		return !m.bad && m.pos == len(m.echo)
	}
	return m.found
}
