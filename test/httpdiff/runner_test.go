package httpdiff

import (
	"bytes"
	"fmt"
	"io"
	"time"
)

// rig is one proxy under test in front of a scripted backend of its own.
type rig struct {
	name   string
	prefix string // of every request id sent through this rig
	addr   string // the proxy's listener
	be     *backend
	panics *panicLog   // nil when the proxy is not in this process
	output *syncBuffer // the proxy's own output when it is a process
	// flush empties the proxy's pool of backend connections; nil when the
	// proxy drops stale ones itself.
	flush func() error
	warm  int
}

// Follow-up counts: a fault on the backend side is the one that can poison
// a pooled connection, so it gets the more thorough look.
var followUps = map[side]struct{ keep, fresh int }{
	clientSide:  {keep: 1, fresh: 3},
	backendSide: {keep: 3, fresh: 10},
}

// exchange is everything the clients of one case saw.
type exchange struct {
	replies  []*reply // on the case's connection: plan.reqs, then plan.maybe
	echo     string   // after a 101: "ok" or what went wrong
	keep     []*reply // follow-ups on the case's connection
	keepIDs  []string
	fresh    []*reply // follow-ups on connections of their own
	freshIDs []string
	err      error // the harness could not play the case as planned
}

// run plays one case through the rig and checks the invariants.
func (r *rig) run(idx int, c *caseSpec) *result {
	ids := newIDs(r.prefix, idx)
	p := c.build(ids)
	res := &result{}
	if err := r.isolate(); err != nil {
		res.harness(err)
		return res
	}
	if err := r.ready(10 * time.Second); err != nil {
		res.harness(err)
		return res
	}
	panicsBefore := r.panics.count()
	r.be.setScript(func(rec *record) *answer {
		if c.fault != nil && rec.id == ids.A {
			return c.fault(ids, rec)
		}
		return nil
	})
	mark := r.be.mark()
	x := r.exchange(c, p, ids)
	if x.err != nil {
		res.harness(x.err)
	}
	if err := r.be.quiesce(3 * time.Second); err != nil {
		res.harness(err)
	}
	recs := r.be.since(mark)
	r.be.setScript(nil)
	check(res, c, p, ids, x, recs)
	if n := r.panics.count() - panicsBefore; n > 0 {
		res.add(0, "%s recovered from %d panics: %s", r.name, n, r.panics.last())
	}
	return res
}

// isolate closes the backend's connections and empties the proxy's pool,
// so a case starts on connections no earlier case touched and whatever it
// leaves behind is its own.
func (r *rig) isolate() error {
	if err := r.be.reset(3 * time.Second); err != nil {
		return err
	}
	if r.flush != nil {
		return r.flush()
	}
	return nil
}

// ready polls with well-formed requests until the proxy forwards one to the
// backend and brings its answer back. A proxy that keeps no pool flush
// meets its stale connections here, before the case does.
func (r *rig) ready(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		r.warm++
		id := fmt.Sprintf("%sw%d", r.prefix, r.warm)
		rep := roundTrip(r.addr, id, 2*time.Second)
		if rep.status == 200 && rep.id == id && rep.complete {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not bring a well-formed request's answer back within %s: last got %s", r.name, within, rep.short(id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) exchange(c *caseSpec, p plan, ids caseIDs) *exchange {
	x := &exchange{}
	cc, err := dial(r.addr)
	if err != nil {
		x.replies = []*reply{{end: classify(err)}}
		return x
	}
	closed := false
	defer func() {
		if !closed {
			cc.close()
		}
	}()

	all := append(append([]sent(nil), p.reqs...), p.maybe...)
	next := 0 // the request whose answer comes next
	writes := p.writes
	if p.expect100 {
		// As curl does: send the head, wait a second for 100 Continue, then
		// send the body either way, unless a final answer came instead.
		if err := cc.write(writes[0]); err != nil {
			x.replies = []*reply{{end: classify(err)}}
			return x
		}
		writes = writes[1:]
		rep := cc.readReply(all[0], time.Now().Add(time.Second), true)
		if rep.status >= 200 {
			x.replies = append(x.replies, rep)
			next, writes = 1, nil
		}
	}
	for _, w := range writes {
		if err := cc.write(w); err != nil {
			break
		}
	}
	var uploaded chan struct{}
	if p.bigBody > 0 {
		uploaded = make(chan struct{})
		go func() {
			defer close(uploaded)
			piece := bytes.Repeat([]byte("x"), 64<<10)
			for left := p.bigBody; left > 0; left -= len(piece) {
				if cc.write(piece[:min(left, len(piece))]) != nil {
					return
				}
			}
		}()
	}
	if p.closeWrite {
		_ = cc.c.CloseWrite()
	}

	for i := next; i < len(all); i++ {
		wait := 3 * time.Second
		hiddenReq := i >= len(p.reqs)
		if hiddenReq {
			// Only a proxy that took the hidden request for a pipelined one
			// answers it, and then at once.
			wait = 500 * time.Millisecond
		}
		if k := len(x.replies); k > 0 && !x.replies[k-1].complete {
			break
		}
		rep := cc.readReply(all[i], time.Now().Add(wait), false)
		if hiddenReq && rep.status == 0 {
			break
		}
		x.replies = append(x.replies, rep)
		if rep.status == 0 || rep.status == 101 {
			break
		}
	}
	if len(p.echo) > 0 && len(x.replies) > 0 && x.replies[0].status == 101 {
		x.echo = echo(cc, p.echo)
	}

	// Follow-ups go once the backend has written all it was scripted to:
	// stray bytes are then at the proxy before the next request, where a
	// proxy can tell them from an answer. Sent any earlier, they would race
	// the next request, and no proxy could tell.
	if err := r.be.quiesce(3 * time.Second); err != nil {
		x.err = err
	}
	n := followUps[c.side]
	if k := len(x.replies); k > 0 && x.replies[k-1].usable() && !p.closeWrite && len(p.echo) == 0 && p.bigBody == 0 {
		for i := 1; i <= n.keep; i++ {
			id := ids.keep(i)
			x.keepIDs = append(x.keepIDs, id)
			if err := cc.write(get(id)); err != nil {
				x.keep = append(x.keep, &reply{end: classify(err)})
				break
			}
			rep := cc.readReply(sent{id: id, method: "GET"}, time.Now().Add(3*time.Second), false)
			x.keep = append(x.keep, rep)
			if !rep.usable() {
				break
			}
		}
	}
	cc.close()
	closed = true
	if uploaded != nil {
		// The close ends a write the proxy no longer reads; the write
		// deadline bounds it otherwise.
		<-uploaded
	}
	for i := 1; i <= n.fresh; i++ {
		id := ids.fresh(i)
		x.freshIDs = append(x.freshIDs, id)
		x.fresh = append(x.fresh, roundTrip(r.addr, id, 3*time.Second))
	}
	return x
}

// echo sends msg through an upgraded connection and expects it back.
func echo(cc *clientConn, msg []byte) string {
	if err := cc.write(msg); err != nil {
		return "write: " + classify(err)
	}
	_ = cc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cc.br, got); err != nil {
		return "read: " + classify(err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Sprintf("got %q", got)
	}
	return "ok"
}
