package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// statusClientGone is nginx's 499: the client went away before the answer.
const statusClientGone = 499

// outcome of one attempt to forward a request to one target.
type outcome int

const (
	done      outcome = iota // the response (or an error page) was written
	retry                    // failed before the target could act; try another
	repick                   // target was detached under us; try another, not counted
	respWrote                // failed after the response started; client aborted
)

// handler serves one listener: it routes each request to a pool and
// forwards it.
type handler struct {
	srv    *Server
	https  bool
	name   string
	routes atomic.Pointer[[]route]
	// draining is the HTTPS listener's: once set, HTTP/1 answers end
	// their connection.
	draining *atomic.Bool
}

// route is one compiled routing rule of a listener.
type route struct {
	host   string // lower case, no port; empty matches any
	prefix string
	pool   *pool
}

func (h *handler) match(r *http.Request) *pool {
	routes := *h.routes.Load()
	host := r.Host
	for i := range routes {
		rt := &routes[i]
		if rt.host != "" && !hostMatches(host, rt.host) {
			continue
		}
		if rt.prefix != "" && !strings.HasPrefix(r.URL.Path, rt.prefix) {
			continue
		}
		return rt.pool
	}
	return nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method == http.MethodConnect {
		// A reverse proxy has no business opening tunnels to where a client
		// says; rewriting the authority form into a path would be worse.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE")
		writeError(w, http.StatusMethodNotAllowed, "CONNECT is not supported")
		return
	}
	if h.https {
		if r.ProtoMajor == 1 && h.draining != nil && h.draining.Load() {
			w.Header()["Connection"] = connectionClose
		}
		if msg := checkForeignRequest(r); msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
	}
	p := h.match(r)
	if p == nil {
		writeError(w, http.StatusNotFound, "no route matches this request")
		return
	}
	s := p.settings()
	maxBody := h.srv.maxBody()
	if r.ContentLength > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the limit of %d bytes", maxBody))
		return
	}
	body, err := readBody(r, s.maxReplay, maxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the limit of %d bytes", maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "the request body could not be read")
		return
	}
	defer body.release()

	upgrade := isWebSocket(r)
	var tried triedSet
	attempts, repicks := 0, 0
	var lastErr error
	for {
		t := p.pick(&tried)
		if t == nil {
			p.noPick.Inc()
			writeError(w, http.StatusServiceUnavailable, "no healthy target")
			return
		}
		res, status, err := h.forward(w, r, p, t, body, upgrade, attempts > 0)
		switch res {
		case done:
			t.requests[status/100-1].Add(1)
			p.latency.Observe(time.Since(start).Seconds())
			if status == statusClientGone {
				// Nobody reads an answer; end the connection rather than
				// finish a response that would look complete.
				panic(http.ErrAbortHandler)
			}
			return
		case respWrote:
			t.requests[classIndexErr].Add(1)
			p.latency.Observe(time.Since(start).Seconds())
			h.srv.log.Warn("response cut short", "pool", p.name, "target", t.addr, "err", err)
			panic(http.ErrAbortHandler)
		case repick:
			repicks++
			if repicks > 8 {
				// Every pick met a target being detached; the routable set
				// is changing under us, so give the error a name.
				writeError(w, http.StatusServiceUnavailable, "no healthy target")
				return
			}
			continue
		case retry:
			lastErr = err
			tried.add(t)
			attempts++
			if attempts > s.retries {
				break
			}
			p.retries.Inc()
			continue
		}
		// Retries exhausted.
		t.requests[classIndexErr].Add(1)
		p.latency.Observe(time.Since(start).Seconds())
		h.srv.log.Warn("request failed", "pool", p.name, "target", t.addr, "tries", attempts, "err", lastErr)
		writeError(w, http.StatusBadGateway, "no target could take the request")
		return
	}
}

// forward sends r to t once. It decrements t's in-flight count before it
// returns. A retry uses a fresh connection: the idle ones may have been
// closed by the target just like the one that failed.
func (h *handler) forward(w http.ResponseWriter, r *http.Request, p *pool, t *target, body *reqBody, upgrade, fresh bool) (outcome, int, error) {
	defer t.inFlight.Add(-1)
	s := p.settings()
	if t.detached.Load() {
		return repick, 0, nil
	}
	now := p.srv.clock.now()
	var c *upConn
	if !fresh {
		c = t.takeIdle(now, s.idleTimeout)
	}
	if c == nil {
		d := net.Dialer{Timeout: s.connectTimeout, KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(r.Context(), "tcp", t.addr)
		if err != nil {
			if r.Context().Err() != nil {
				return done, statusClientGone, nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors here: no fault of the target's (it
				// must not be marked down for it), and no other target
				// would fare better.
				h.srv.log.Warn("out of file descriptors", "pool", p.name, "target", t.addr, "err", err)
				writeError(w, http.StatusServiceUnavailable, "the load balancer is out of resources")
				return done, http.StatusServiceUnavailable, nil
			}
			t.errors.Add(1)
			p.connectFailed(t, err)
			return retry, 0, fmt.Errorf("connect to %s: %w", t.addr, err)
		}
		t.connFails.Store(0)
		c = newUpConn(conn)
		t.track(c)
	}
	c.uses++

	// The admission gate: see target.detached.
	t.dispatching.Add(1)
	if t.detached.Load() {
		t.dispatching.Add(-1)
		t.putIdle(c, now, s.maxIdle)
		return repick, 0, nil
	}
	// From here the watchdog closes the connection if the client goes away
	// or no response head arrives in time; see watch.
	wb := &watchBox{ctx: r.Context()}
	wb.deadline.Store(now + int64(s.responseTimeout))
	c.watch.Store(wb)
	sentBefore := c.sent
	err := writeRequestHead(c, r, body, h.https, upgrade)
	if err == nil && body.replayable && body.length > 0 {
		_, err = c.bw.Write(body.buf)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	t.dispatching.Add(-1)
	if err != nil && c.sent == sentBefore {
		// Not one byte reached the target: whatever the method, it cannot
		// have acted on the request.
		h.closeConn(t, c)
		if r.Context().Err() != nil {
			return done, statusClientGone, nil
		}
		t.errors.Add(1)
		return retry, 0, fmt.Errorf("send to %s: %w", t.addr, err)
	}
	x := &exchange{w: w, r: r, p: p, t: t, c: c, wb: wb, body: body, upgrade: upgrade, sendErr: err}
	if err == nil && body.stream != nil {
		// A body too large to hold is streamed while the answer is awaited,
		// so an early answer (a 413, a 401) is seen and relayed at once.
		if b, ok := r.Body.(*h1Body); ok {
			b.sendContinue()
		}
		done := make(chan error, 1)
		x.bodyDone = done
		go func() { done <- writeStreamBody(c, body) }()
	}
	res, status, err := h.relay(x)
	if res != done && r.Context().Err() != nil {
		return done, statusClientGone, nil
	}
	return res, status, err
}

// fail answers the client with status after a failed exchange with t, and
// logs what happened; the client learns nothing about the target.
func (h *handler) fail(w http.ResponseWriter, p *pool, t *target, status int, err error) int {
	h.srv.log.Warn("request failed", "pool", p.name, "target", t.addr, "status", status, "err", err)
	var msg string
	switch status {
	case http.StatusGatewayTimeout:
		msg = "the target did not answer in time"
	case http.StatusRequestEntityTooLarge:
		msg = fmt.Sprintf("request body over the limit of %d bytes", h.srv.maxBody())
	case http.StatusBadRequest:
		msg = "the request body could not be read"
	default:
		msg = "the target failed to answer"
	}
	writeError(w, status, msg)
	return status
}

func (h *handler) closeConn(t *target, c *upConn) {
	t.forget(c)
	c.conn.Close()
}

// isConnLoss reports whether err means the connection went away (closed,
// reset, broken pipe), as opposed to a malformed answer.
func isConnLoss(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// writeError answers with a short plain-text body saying what went wrong.
// msg is for clients: it never names a target or an internal error.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s: %s\n", status, http.StatusText(status), msg)
}
