package httpdiff

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// FuzzProxy feeds zerodown lb a raw client byte stream and has the backend
// answer every request it parses with a raw answer (written in two parts,
// head then the rest, and followed by a close when closeAfter). Whatever
// the bytes, the proxy must not crash or panic, the backend must never see
// a request with two framings (invariant 2), and a well-formed request on a
// fresh connection afterwards must get its own answer (invariant 1).
//
// With plain `go test` only the seeds, built from the corpus, run. To
// search for new inputs:
//
//	go test -run XXX -fuzz FuzzProxy -fuzztime 60s ./test/httpdiff/
//
// Add -fuzzminimizetime 10x: coverage here depends on goroutine timing, so
// an input that widened it rarely does so again, and minimizing it would
// spend the default minute per input on reruns. -fuzz runs the seeds first
// and stops at the first that fails.
func FuzzProxy(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.client, s.answer, s.closeAfter)
	}
	f.Fuzz(func(t *testing.T, client, backendBytes []byte, closeAfter bool) {
		if len(client) > 64<<10 || len(backendBytes) > 64<<10 {
			return
		}
		r, err := fuzzFixture.get()
		if err != nil {
			t.Fatal(err)
		}
		r.warm++
		checkID := fmt.Sprintf("fc%d", r.warm)
		if err := r.isolate(); err != nil {
			t.Fatal(err)
		}
		scripted := splitAnswer(backendBytes)
		scripted.close = closeAfter
		r.be.setScript(func(rec *record) *answer {
			if rec.id == checkID {
				return nil
			}
			a := *scripted
			return &a
		})
		defer r.be.setScript(nil)
		panics := r.panics.count()
		mark := r.be.mark()

		if cc, err := dial(r.addr); err == nil {
			_ = cc.write(client)
			// A half-close lets the proxy end the connection as soon as it
			// has answered everything, rather than after an idle wait.
			_ = cc.c.CloseWrite()
			drain(cc, time.Second, 300*time.Millisecond)
			cc.close()
		}
		// As in the differential test: stray bytes reach the proxy before
		// the next request does.
		if err := r.be.quiesce(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		rep := roundTrip(r.addr, checkID, 3*time.Second)
		if err := r.be.quiesce(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		for _, rec := range r.be.since(mark) {
			for _, a := range rec.anomalies {
				t.Errorf("invariant 2: backend got %s (%s) with %s", orAnon(rec.id), truncate(rec.line()), a)
			}
		}
		if rep.status != 200 || rep.id != checkID || !rep.complete {
			t.Errorf("invariant 1: a well-formed request on a fresh connection after the input got %s", rep.short(checkID))
		}
		if n := r.panics.count() - panics; n > 0 {
			t.Errorf("zerodown recovered from %d panics: %s", n, r.panics.last())
		}
	})
}

// splitAnswer writes the head first and the rest a moment later, so bytes
// past a body reach the proxy after it has taken the answer for whole, the
// way a slow backend would send them.
func splitAnswer(b []byte) *answer {
	a := &answer{pause: 2 * time.Millisecond}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 && i+4 < len(b) {
		a.parts = [][]byte{b[:i+4], b[i+4:]}
	} else if len(b) > 0 {
		a.parts = [][]byte{b}
	}
	return a
}

// drain reads until the proxy closes the connection, falls silent for
// idle, or total has passed.
func drain(cc *clientConn, total, idle time.Duration) {
	end := time.Now().Add(total)
	buf := make([]byte, 32<<10)
	for {
		dl := time.Now().Add(idle)
		if dl.After(end) {
			dl = end
		}
		_ = cc.c.SetReadDeadline(dl)
		if _, err := cc.br.Read(buf); err != nil {
			return
		}
	}
}

type fuzzSeed struct {
	client, answer []byte
	closeAfter     bool
}

// fuzzSeeds are the corpus's exchanges: what each case's client sends and
// how the backend answers its first request.
func fuzzSeeds() []fuzzSeed {
	var seeds []fuzzSeed
	for i, c := range corpus() {
		ids := newIDs("s", i)
		p := c.build(ids)
		client := bytes.Join(p.writes, nil)
		rec := &record{method: p.reqs[0].method, id: ids.A, fields: []field{{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}}}
		a := okAnswer(ids.A, rec.method, false)
		if c.fault != nil {
			a = c.fault(ids, rec)
		}
		seeds = append(seeds, fuzzSeed{client, bytes.Join(a.parts, nil), a.close})
	}
	return seeds
}

// fuzzFixture is one backend and one zerodown lb shared by every FuzzProxy
// input a process runs, created on first use: starting them per input
// would spend the fuzzing time on setup. TestMain stops it.
var fuzzFixture fixture

type fixture struct {
	once   sync.Once
	rig    *rig
	err    error
	dir    string
	be     *backend
	stopLB func()
}

func (f *fixture) get() (*rig, error) {
	f.once.Do(func() {
		f.dir, f.err = os.MkdirTemp("", "httpdiff-fuzz-")
		if f.err != nil {
			return
		}
		f.be, f.err = startBackend()
		if f.err != nil {
			return
		}
		pl := &panicLog{}
		srv, stop, err := startZerodown(f.dir, f.be.addr(), slog.New(pl))
		if err != nil {
			f.err = err
			return
		}
		f.stopLB = stop
		be := f.be
		f.rig = &rig{name: "zerodown", prefix: "f", addr: srv.ListenerAddrs()[0], be: be, panics: pl,
			flush: func() error { return flushPool(srv, be.addr()) }}
	})
	return f.rig, f.err
}

func (f *fixture) stop() {
	if f.stopLB != nil {
		f.stopLB()
	}
	if f.be != nil {
		f.be.stop()
	}
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}
