package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// bodyBufPool holds buffers for replayable request bodies and body copies.
var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// reqBody is the client's request body as the proxy forwards it: held in
// memory when small enough to be sent again on a retry, else streamed once.
type reqBody struct {
	buf        []byte
	pooled     *[]byte
	stream     io.Reader
	length     int64 // -1: unknown, send chunked
	replayable bool
	consumed   bool // a streamed body was (partly) read: no retry anymore
}

func (b *reqBody) release() {
	if b.pooled != nil {
		bodyBufPool.Put(b.pooled)
		b.pooled = nil
	}
}

// errBodyTooLarge is returned when a body without a declared length grows
// past client.max_body.
var errBodyTooLarge = errors.New("request body too large")

func readBody(r *http.Request, maxReplay, maxBody int64) (*reqBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return &reqBody{replayable: true, length: 0}, nil
	}
	var body io.Reader = r.Body
	if r.ContentLength < 0 {
		body = &limitedBody{r: r.Body, left: maxBody}
	}
	if r.ContentLength > maxReplay {
		return &reqBody{stream: body, length: r.ContentLength}, nil
	}
	want := maxReplay + 1
	if r.ContentLength > 0 {
		want = r.ContentLength
	}
	b := &reqBody{}
	if want <= 32<<10 {
		b.pooled = bodyBufPool.Get().(*[]byte)
		b.buf = (*b.pooled)[:want]
	} else {
		b.buf = make([]byte, want)
	}
	n, err := io.ReadFull(body, b.buf)
	switch {
	case r.ContentLength > 0 && err != nil:
		b.release()
		return nil, err
	case r.ContentLength < 0 && err == nil:
		// Longer than we replay: stream what we hold, then the rest.
		b.stream = io.MultiReader(bytesReader(b.buf[:n]), body)
		b.length = -1
		return b, nil
	case r.ContentLength < 0 && err != io.ErrUnexpectedEOF && err != io.EOF:
		b.release()
		return nil, err
	}
	b.buf = b.buf[:n]
	b.length = int64(n)
	b.replayable = true
	return b, nil
}

type limitedBody struct {
	r    io.Reader
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte past the limit proves the body is too large.
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

type byteSliceReader struct{ b []byte }

func bytesReader(b []byte) *byteSliceReader { return &byteSliceReader{b} }

func (r *byteSliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// handler serves one listener: it routes each request to a pool and
// forwards it.
type handler struct {
	srv    *Server
	https  bool
	name   string
	routes atomic.Pointer[[]route]
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

// hostMatches compares a Host header, port and case aside, with a route's
// host.
func hostMatches(hostHeader, want string) bool {
	if i := strings.LastIndexByte(hostHeader, ':'); i >= 0 && !strings.HasSuffix(hostHeader, "]") {
		hostHeader = hostHeader[:i]
	}
	return asciiEqualFold(hostHeader, want)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := h.match(r)
	if p == nil {
		writeError(w, http.StatusNotFound, "no route for host %q and path %q", r.Host, r.URL.Path)
		return
	}
	s := p.settings()
	maxBody := h.srv.maxBody()
	if r.ContentLength > maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "request body of %d bytes is over the limit of %d", r.ContentLength, maxBody)
		return
	}
	body, err := readBody(r, s.maxReplay, maxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is over the limit of %d bytes", maxBody)
			return
		}
		writeError(w, http.StatusBadRequest, "reading request body: %v", err)
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
			writeError(w, http.StatusServiceUnavailable, "no healthy target in pool %s", p.name)
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
				writeError(w, http.StatusServiceUnavailable, "no healthy target in pool %s", p.name)
				return
			}
			continue
		case retry:
			lastErr = err
			tried.add(t)
			attempts++
			if attempts > s.retries || (!body.replayable && body.consumed) {
				break
			}
			p.retries.Inc()
			continue
		}
		// Retries exhausted.
		t.requests[classIndexErr].Add(1)
		p.latency.Observe(time.Since(start).Seconds())
		h.srv.log.Warn("request failed", "pool", p.name, "target", t.addr, "tries", attempts, "err", lastErr)
		writeError(w, http.StatusBadGateway, "target failed after %d tries: %v", attempts, lastErr)
		return
	}
}

// forward sends r to t once. It decrements t's in-flight count before it
// returns.
// A retry uses a fresh connection: the idle ones may have been closed by the
// target just like the one that failed.
func (h *handler) forward(w http.ResponseWriter, r *http.Request, p *pool, t *target, body *reqBody, upgrade, fresh bool) (outcome, int, error) {
	defer t.inFlight.Add(-1)
	s := p.settings()
	if t.detached.Load() {
		return repick, 0, nil
	}
	now := time.Now()
	var c *upConn
	if !fresh {
		c = t.takeIdle(now, s.idleTimeout)
	}
	reused := c != nil
	if c == nil {
		d := net.Dialer{Timeout: s.connectTimeout, KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(r.Context(), "tcp", t.addr)
		if err != nil {
			if r.Context().Err() != nil {
				return done, statusClientGone, nil
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
	wb.deadline.Store(now.Add(s.responseTimeout).UnixNano())
	c.watch.Store(wb)
	err := writeRequestHead(c, r, body, h.https, upgrade)
	if err == nil && body.replayable && body.length > 0 {
		_, err = c.bw.Write(body.buf)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	t.dispatching.Add(-1)
	if err == nil && body.stream != nil {
		body.consumed = true
		err = writeStreamBody(c, body)
	}
	if err != nil {
		h.closeConn(t, c)
		if errors.Is(err, errBodyTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is over the limit of %d bytes", h.srv.maxBody())
			return done, http.StatusRequestEntityTooLarge, nil
		}
		if r.Context().Err() != nil {
			return done, statusClientGone, nil
		}
		t.errors.Add(1)
		switch {
		case c.cut.Load():
			writeError(w, http.StatusBadGateway, "target %s was removed while the request was in flight", t.addr)
			return done, http.StatusBadGateway, nil
		case wb.timedOut.Load():
			writeError(w, http.StatusGatewayTimeout, "target %s did not take the request within %s", t.addr, s.responseTimeout)
			return done, http.StatusGatewayTimeout, nil
		case body.replayable && (reused || isIdempotent(r.Method)):
			return retry, 0, fmt.Errorf("send to %s: %w", t.addr, err)
		}
		writeError(w, http.StatusBadGateway, "sending the request to the target failed: %v", err)
		return done, http.StatusBadGateway, nil
	}
	res, status, err := h.relay(w, r, p, t, c, wb, body, reused, upgrade)
	if res != done && r.Context().Err() != nil {
		return done, statusClientGone, nil
	}
	return res, status, err
}

// relay reads the target's answer and copies it to the client.
func (h *handler) relay(w http.ResponseWriter, r *http.Request, p *pool, t *target, c *upConn, wb *watchBox, body *reqBody, reused, upgrade bool) (outcome, int, error) {
	s := p.settings()
	for {
		gotBytes, err := c.readHead()
		if err != nil {
			h.closeConn(t, c)
			if r.Context().Err() != nil {
				return done, statusClientGone, nil
			}
			t.errors.Add(1)
			switch {
			case c.cut.Load():
				writeError(w, http.StatusBadGateway, "target %s was removed while the request was in flight", t.addr)
				return done, http.StatusBadGateway, nil
			case wb.timedOut.Load():
				writeError(w, http.StatusGatewayTimeout, "target %s did not answer within %s", t.addr, s.responseTimeout)
				return done, http.StatusGatewayTimeout, nil
			case !gotBytes && body.replayable && (reused || isIdempotent(r.Method)) && isConnLoss(err):
				return retry, 0, fmt.Errorf("read from %s: %w", t.addr, err)
			}
			writeError(w, http.StatusBadGateway, "reading the answer of target %s failed: %v", t.addr, err)
			return done, http.StatusBadGateway, nil
		}
		hd := &c.head
		if hd.status == http.StatusSwitchingProtocols {
			if upgrade {
				if !c.watch.CompareAndSwap(wb, nil) {
					h.closeConn(t, c)
					return done, statusClientGone, nil
				}
				return h.tunnel(w, t, c)
			}
			h.closeConn(t, c)
			writeError(w, http.StatusBadGateway, "target switched protocols without being asked to")
			return done, http.StatusBadGateway, nil
		}
		if hd.status >= 200 {
			break
		}
		// 100 Continue and other interim answers: the body was sent already.
	}
	// The head is in: from now on only a client that goes away stops the
	// exchange, however long the body takes.
	wb.deadline.Store(0)
	hd := &c.head
	out := w.Header()
	vals := make([]string, len(hd.headers))
	for i, hv := range hd.headers {
		if hopByHop[hv.key] {
			continue
		}
		vals[i] = hv.value
		if old, ok := out[hv.key]; ok && len(old) > 0 {
			out[hv.key] = append(old, hv.value)
		} else {
			out[hv.key] = vals[i : i+1 : i+1]
		}
	}
	for _, k := range hd.connTokens {
		delete(out, k)
	}
	if _, ok := out["Content-Type"]; !ok {
		// Without this net/http would sniff and add one the target never sent.
		out["Content-Type"] = nil
	}
	if _, ok := out["Date"]; !ok {
		out["Date"] = nil
	}
	// Once finish hands the connection back, another request may reuse its
	// head: copy what is needed first.
	status, closeConn, contentLength, chunked := hd.status, hd.closeConn, hd.contentLength, hd.chunked
	noBody := r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
	w.WriteHeader(status)
	if noBody {
		h.finish(t, c, p, wb, closeConn)
		return done, status, nil
	}
	var err error
	reusable := !closeConn
	switch {
	case contentLength >= 0:
		err = copyLength(w, c, contentLength)
	case chunked:
		err = copyStreaming(w, &chunkedReader{br: c.br})
	default:
		// No framing: the body ends when the target closes the connection.
		reusable = false
		err = copyStreaming(w, c.br)
	}
	if err != nil {
		h.closeConn(t, c)
		if r.Context().Err() != nil {
			return done, statusClientGone, nil
		}
		t.errors.Add(1)
		return respWrote, status, err
	}
	h.finish(t, c, p, wb, !reusable)
	return done, status, nil
}

// finish returns c to the idle pool, unless it must close or the watchdog
// already claimed it (then it is being closed and must not be reused).
func (h *handler) finish(t *target, c *upConn, p *pool, wb *watchBox, closeIt bool) {
	if !c.watch.CompareAndSwap(wb, nil) || closeIt || c.br.Buffered() > 0 {
		h.closeConn(t, c)
		return
	}
	t.putIdle(c, time.Now(), p.settings().maxIdle)
}

func (h *handler) closeConn(t *target, c *upConn) {
	t.forget(c)
	c.conn.Close()
}

// copyLength copies exactly n body bytes from the target's buffer to w,
// without an intermediate buffer.
func copyLength(w http.ResponseWriter, c *upConn, n int64) error {
	for n > 0 {
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return noEOF(err)
			}
		}
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

func writeStreamBody(c *upConn, body *reqBody) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	chunked := body.length < 0
	for {
		n, err := body.stream.Read(buf)
		if n > 0 {
			if chunked {
				if _, werr := fmt.Fprintf(c.bw, "%x\r\n", n); werr != nil {
					return werr
				}
			}
			if _, werr := c.bw.Write(buf[:n]); werr != nil {
				return werr
			}
			if chunked {
				if _, werr := c.bw.WriteString("\r\n"); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if chunked {
		if _, err := c.bw.WriteString("0\r\n\r\n"); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// writeRequestHead writes the request line and headers toward the target,
// leaving out hop-by-hop headers and adding X-Forwarded-*.
func writeRequestHead(c *upConn, r *http.Request, body *reqBody, https, upgrade bool) error {
	bw := c.bw
	uri := r.RequestURI
	if uri == "" || (uri[0] != '/' && uri != "*") {
		uri = r.URL.RequestURI()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	var dropped []string
	if conn := r.Header["Connection"]; len(conn) > 0 {
		for _, v := range conn {
			dropped = append(dropped, splitTokens(v)...)
		}
	}
	for k, vv := range r.Header {
		if hopByHop[k] || k == "X-Forwarded-For" || k == "X-Forwarded-Proto" {
			continue
		}
		if len(dropped) > 0 && listed(dropped, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	for _, v := range r.Header["X-Forwarded-For"] {
		bw.WriteString(v)
		bw.WriteString(", ")
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	bw.WriteString(host)
	if https {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n")
	}
	if upgrade {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(r.Header.Get("Upgrade"))
		bw.WriteString("\r\n")
	}
	switch {
	case body.length > 0:
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], body.length, 10))
		bw.WriteString("\r\n")
	case body.length < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	_, err = bw.WriteString("\r\n")
	return err
}

func listed(tokens []string, key string) bool {
	for _, t := range tokens {
		if asciiEqualFold(t, key) {
			return true
		}
	}
	return false
}

func isWebSocket(r *http.Request) bool {
	if r.ProtoMajor != 1 || !asciiEqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for _, tok := range splitTokens(v) {
			if asciiEqualFold(tok, "upgrade") {
				return true
			}
		}
	}
	return false
}

func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// isConnLoss reports whether err means the connection went away (closed,
// reset, broken pipe), as opposed to a malformed answer.
func isConnLoss(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// writeError answers with a short plain-text body saying what went wrong.
func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s: "+format+"\n", append([]any{status, http.StatusText(status)}, args...)...)
}
