package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/zerodown/zerodown/internal/proxy/h1"
)

// exchange is one request sent to one target, while its answer is relayed.
type exchange struct {
	w       http.ResponseWriter
	r       *http.Request
	p       *pool
	t       *target
	c       *upConn
	wb      *watchBox
	body    *reqBody
	upgrade bool
	// sendErr is a failure writing the request after some of it was sent:
	// the target may still answer (early answers), but the connection is
	// not reused.
	sendErr error
	// bodyDone receives the result of streaming the body; nil when the
	// body was sent with the head.
	bodyDone chan error
}

// stopBody ends the streaming of the request body, if it is still going,
// and returns its result. Making the target's side and the client's side
// fail at once unblocks the writer wherever it waits.
func (x *exchange) stopBody() error {
	if x.bodyDone == nil {
		return nil
	}
	var err error
	select {
	case err = <-x.bodyDone:
	default:
		past := time.Unix(1, 0)
		_ = x.c.conn.SetWriteDeadline(past)
		_ = http.NewResponseController(x.w).SetReadDeadline(past)
		// Whatever the writer says now is the deadlines' doing, not the
		// client's or the target's.
		<-x.bodyDone
		err = errBodyStopped
	}
	x.bodyDone = nil
	return err
}

// errBodyStopped: the body was still being sent when the answer came.
var errBodyStopped = errors.New("request body not sent whole: the target answered first")

// relay reads the target's answer and copies it to the client.
func (h *handler) relay(x *exchange) (outcome, int, error) {
	w, r, p, t, c, wb := x.w, x.r, x.p, x.t, x.c, x.wb
	s := p.settings()
	for {
		gotBytes, err := c.readHead()
		if err != nil {
			h.closeConn(t, c)
			bodyErr := x.stopBody()
			if r.Context().Err() != nil {
				return done, statusClientGone, nil
			}
			var cbe clientBodyError
			if errors.As(bodyErr, &cbe) {
				// The client's body broke off or grew too large; the target
				// lost the connection because of that, not by its own fault.
				if errors.Is(bodyErr, errBodyTooLarge) {
					return done, h.fail(w, p, t, http.StatusRequestEntityTooLarge, bodyErr), nil
				}
				return done, h.fail(w, p, t, http.StatusBadRequest, bodyErr), nil
			}
			t.errors.Add(1)
			switch {
			case c.cut.Load():
				return done, h.fail(w, p, t, http.StatusBadGateway, fmt.Errorf("target removed while the request was in flight: %w", err)), nil
			case wb.timedOut.Load():
				return done, h.fail(w, p, t, http.StatusGatewayTimeout, fmt.Errorf("no answer within %s", s.responseTimeout)), nil
			case !gotBytes && isConnLoss(err) && x.body.replayable && retryable(r):
				// Written, then lost before any answer: the target may have
				// acted on it, so only a request that may run twice is
				// sent again (net/http's Transport follows the same rule).
				return retry, 0, fmt.Errorf("read from %s: %w", t.addr, err)
			}
			return done, h.fail(w, p, t, http.StatusBadGateway, fmt.Errorf("reading the answer: %w", err)), nil
		}
		hd := &c.head
		if hd.Status == http.StatusSwitchingProtocols {
			if x.upgrade && x.bodyDone == nil && x.sendErr == nil {
				if !c.watch.CompareAndSwap(wb, nil) {
					h.closeConn(t, c)
					return done, statusClientGone, nil
				}
				return h.tunnel(w, t, c)
			}
			h.closeConn(t, c)
			_ = x.stopBody()
			return done, h.fail(w, p, t, http.StatusBadGateway, errors.New("target switched protocols without being asked to")), nil
		}
		if hd.Status >= 200 {
			break
		}
		// 100 Continue and other interim answers are not relayed.
	}
	// The head is in: from now on only a client that goes away stops the
	// exchange, however long the body takes.
	wb.deadline.Store(0)
	early := false
	if x.bodyDone != nil {
		select {
		case bodyErr := <-x.bodyDone:
			x.bodyDone = nil
			var cbe clientBodyError
			if errors.As(bodyErr, &cbe) {
				// The client's body broke off before the answer came; the
				// target answered a request it did not get whole.
				h.closeConn(t, c)
				if errors.Is(bodyErr, errBodyTooLarge) {
					return done, h.fail(w, p, t, http.StatusRequestEntityTooLarge, bodyErr), nil
				}
				return done, h.fail(w, p, t, http.StatusBadRequest, bodyErr), nil
			}
			if bodyErr != nil {
				x.sendErr = bodyErr
			}
		default:
			// An answer while the body is still being sent: an early answer
			// (413, 401) or a target that answers as it reads (an echo).
			// The body goes on streaming while the answer is relayed, as
			// HAProxy does, and is stopped once the answer is complete. The
			// client is told the connection ends with this answer: its
			// body may not be read to the end.
			early = true
		}
	}
	hd := &c.head
	out := w.Header()
	vals := make([]string, len(hd.Fields))
	for i, f := range hd.Fields {
		if h1.HopByHop(f.Key) {
			continue
		}
		vals[i] = f.Value
		if old, ok := out[f.Key]; ok && len(old) > 0 {
			out[f.Key] = append(old, f.Value)
		} else {
			out[f.Key] = vals[i : i+1 : i+1]
		}
	}
	for _, k := range hd.ConnTokens {
		delete(out, k)
	}
	if _, ok := out["Content-Type"]; !ok {
		// Without this net/http would sniff and add one the target never sent.
		out["Content-Type"] = nil
	}
	if _, ok := out["Date"]; !ok {
		out["Date"] = nil
	}
	if early {
		out["Connection"] = connectionClose
	}
	// Once finish hands the connection back, another request may reuse its
	// head: copy what is needed first.
	status, contentLength, chunked := hd.Status, hd.ContentLength, hd.Chunked
	reusable := !hd.Close && x.sendErr == nil
	w.WriteHeader(status)
	if !h1.BodyAllowed(r.Method, status) {
		h.finish(t, c, p, wb, !x.bodyComplete() || !reusable)
		return done, status, nil
	}
	var err error
	switch {
	case contentLength >= 0:
		err = copyLength(w, c, contentLength)
	case chunked:
		c.chunks.Reset(c.br)
		err = copyStreaming(w, &c.chunks)
	default:
		// No framing: the body ends when the target closes the connection.
		reusable = false
		err = copyStreaming(w, c.br)
	}
	if err != nil {
		h.closeConn(t, c)
		_ = x.stopBody()
		if r.Context().Err() != nil {
			return done, statusClientGone, nil
		}
		t.errors.Add(1)
		return respWrote, status, err
	}
	h.finish(t, c, p, wb, !x.bodyComplete() || !reusable)
	return done, status, nil
}

var connectionClose = []string{"close"}

// bodyComplete stops a body still streaming once the answer is complete,
// and reports whether the target got all of it: only then can the
// connection carry another request. A body cut short also leaves the
// client's connection unusable; the server closes it after the answer.
func (x *exchange) bodyComplete() bool {
	return x.stopBody() == nil
}

// finish returns c to the idle pool only when it is provably clean: the
// answer was framed and read to its end, the target asked for nothing
// else, nothing more is buffered, and the watchdog did not claim it. Bytes
// the kernel holds past the answer are looked for when the connection is
// taken again (target.takeIdle). Any doubt closes it.
func (h *handler) finish(t *target, c *upConn, p *pool, wb *watchBox, closeIt bool) {
	if !c.watch.CompareAndSwap(wb, nil) || closeIt || c.br.Buffered() > 0 {
		h.closeConn(t, c)
		return
	}
	t.putIdle(c, p.srv.clock.now(), p.settings().maxIdle)
}

// copyLength copies exactly n body bytes from the target's buffer to w,
// without an intermediate buffer. What was copied is flushed before
// waiting for more, so a slow answer with a length streams as it comes;
// an answer that arrives whole is written once.
func copyLength(w http.ResponseWriter, c *upConn, n int64) error {
	wrote := false
	for n > 0 {
		if c.br.Buffered() == 0 {
			if wrote {
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
			if _, err := c.br.Peek(1); err != nil {
				return h1.NoEOF(err)
			}
		}
		wrote = true
		k := c.br.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := c.br.Peek(k)
		if _, err := w.Write(b); err != nil {
			return clientGone{err}
		}
		_, _ = c.br.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyStreaming copies a body of unknown length, flushing every piece so
// chunked and text/event-stream answers reach the client as they come.
func copyStreaming(w http.ResponseWriter, src io.Reader) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return clientGone{werr}
			}
			if ferr := rc.Flush(); ferr != nil {
				return clientGone{ferr}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

type clientGone struct{ err error }

func (e clientGone) Error() string { return "writing to client: " + e.err.Error() }
func (e clientGone) Unwrap() error { return e.err }
