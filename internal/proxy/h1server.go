package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/proxy/h1"
)

// h1Server serves plain-HTTP listeners. It is a lean HTTP/1.1 server: one
// goroutine per connection, buffers and header maps reused across the
// requests of a connection, and no per-request background read, timer or
// context; a watchdog enforces idle and header timeouts and notices clients
// that hang up during long requests. net/http still serves HTTPS listeners,
// where it brings HTTP/2.
type h1Server struct {
	handler           http.Handler
	log               *slog.Logger
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	idleGrace         time.Duration // shutdownIdleGrace; shorter in tests
	limits            h1.Limits
	clock             *coarseClock // nil: real time
	// slots caps this listener's connections and global all listeners';
	// nil means no cap. A slot is taken before Accept, so connections over
	// the cap wait in the kernel's accept queue instead of being taken and
	// dropped.
	slots, global connSlots

	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	ln       net.Listener
	closing  atomic.Bool
	done     chan struct{}
	stopOnce sync.Once
}

// Connection phases, for the watchdog.
const (
	phaseIdle     int32 = iota // waiting for the next request
	phaseHead                  // reading a request head
	phaseBusy                  // handling a request
	phaseHijacked              // handed to a WebSocket tunnel; not ours to time out
)

type h1Conn struct {
	srv    *h1Server
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    context.Context
	cancel context.CancelFunc
	remote string

	phase      atomic.Int32
	phaseSince atomic.Int64
	served     atomic.Int64 // requests answered, for the first request's timeout
	headLate   atomic.Bool  // the watchdog ended a head that took too long
	// bodyStopped is set when the handler stopped reading the request body
	// (the target answered early); see h1Body.deadline.
	bodyStopped atomic.Bool
	hijacked    bool
	abort       bool // the response was cut short: reset, do not close cleanly
	linger      bool // the client may still be sending a body nobody read

	header http.Header   // request header map, cleared per request
	tmpl   *http.Request // empty request carrying ctx
	resp   h1Response
}

// connSlots is a counting semaphore of connections; nil is unlimited.
type connSlots chan struct{}

func newConnSlots(n int) connSlots {
	if n <= 0 {
		return nil
	}
	return make(connSlots, n)
}

func (s connSlots) release() {
	if s != nil {
		<-s
	}
}

func newH1Server(handler http.Handler, log *slog.Logger, readHeader, idle time.Duration, limits h1.Limits, slots, global connSlots) *h1Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &h1Server{
		handler:           handler,
		log:               log,
		readHeaderTimeout: readHeader,
		idleTimeout:       idle,
		idleGrace:         shutdownIdleGrace,
		limits:            limits,
		slots:             slots,
		global:            global,
		conns:             make(map[*h1Conn]struct{}),
		done:              make(chan struct{}),
	}
}

// acquire takes a listener slot and a global one, waiting while either cap
// is reached; false once the server is closing.
func (s *h1Server) acquire() bool {
	for _, sl := range []connSlots{s.slots, s.global} {
		if sl == nil {
			continue
		}
		select {
		case sl <- struct{}{}:
		case <-s.done:
			if sl == s.global {
				s.slots.release()
			}
			return false
		}
	}
	return true
}

func (s *h1Server) releaseSlots() {
	s.global.release()
	s.slots.release()
}

// temporaryAcceptError reports accept errors that pass: out of file
// descriptors or memory, a connection aborted before it was taken. The
// listener must keep serving through them.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Serve accepts connections until the listener is closed.
func (s *h1Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go s.watchdog()
	var backoff time.Duration
	for {
		if !s.acquire() {
			return http.ErrServerClosed
		}
		c, err := ln.Accept()
		if err != nil {
			s.releaseSlots()
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if temporaryAcceptError(err) {
				// Out of file descriptors and the like: back off and try
				// again, as net/http does; connections that close meanwhile
				// give descriptors back.
				if backoff == 0 {
					s.log.Warn("accepting connections failed; backing off", "err", err)
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-s.done:
					return http.ErrServerClosed
				}
				continue
			}
			return err
		}
		if backoff != 0 {
			s.log.Info("accepting connections again")
			backoff = 0
		}
		hc := s.newConn(c)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			s.releaseSlots()
			continue
		}
		s.conns[hc] = struct{}{}
		s.mu.Unlock()
		go hc.serve()
	}
}

// Buffers of connections are pooled: an idle server keeps none, a busy one
// does not allocate 32 KiB per new connection.
var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

func (s *h1Server) newConn(c net.Conn) *h1Conn {
	ctx, cancel := context.WithCancel(context.Background())
	hc := &h1Conn{
		srv:    s,
		conn:   c,
		br:     h1ReaderPool.Get().(*bufio.Reader),
		bw:     h1WriterPool.Get().(*bufio.Writer),
		ctx:    ctx,
		cancel: cancel,
		remote: c.RemoteAddr().String(),
		header: make(http.Header, 16),
	}
	hc.br.Reset(c)
	hc.bw.Reset(c)
	hc.tmpl = (&http.Request{}).WithContext(ctx)
	hc.resp.c = hc
	hc.resp.header = make(http.Header, 16)
	hc.setPhase(phaseIdle)
	return hc
}

func (c *h1Conn) setPhase(p int32) {
	c.phaseSince.Store(c.srv.clock.now())
	c.phase.Store(p)
}

// shutdownIdleGrace is how long a shutdown keeps a keep-alive connection
// that was idle when it began. Closing it at once loses a request the
// client is sending on it at that moment — and a client may replay a GET
// lost that way, never a POST. Kept a little, its next request is served
// with Connection: close; only one sent as the grace ends meets a close.
const shutdownIdleGrace = 2 * time.Second

// Shutdown stops accepting, lets busy connections finish their current
// request and idle ones bring one more within shutdownIdleGrace, each
// answered with Connection: close, until ctx ends; then it closes the rest.
func (s *h1Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	closeIdleAt := s.clock.now() + int64(s.idleGrace)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := 0
		closeIdle := s.clock.now() >= closeIdleAt
		for c := range s.conns {
			switch c.phase.Load() {
			case phaseIdle:
				if closeIdle {
					c.conn.Close()
				} else {
					n++
				}
			case phaseHead, phaseBusy:
				n++
			}
		}
		s.mu.Unlock()
		if n == 0 {
			s.stopOnce.Do(func() { close(s.done) })
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listener and every connection at once.
func (s *h1Server) Close() {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.conn.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.done) })
}

// livenessAfter is how long a request runs before the watchdog starts
// checking whether its client is still connected.
const livenessAfter = 500 * time.Millisecond

func (s *h1Server) watchdog() {
	tick := time.NewTicker(watchdogPeriod)
	defer tick.Stop()
	var closing []*h1Conn
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		closing = closing[:0]
		s.mu.Lock()
		for c := range s.conns {
			since := now - c.phaseSince.Load()
			switch c.phase.Load() {
			case phaseIdle:
				limit := s.idleTimeout
				if c.served.Load() == 0 {
					// A connection that never sent a request is held no
					// longer than a slow request head would be.
					limit = s.readHeaderTimeout
				}
				if limit > 0 && since > int64(limit) {
					closing = append(closing, c)
				}
			case phaseHead:
				if s.readHeaderTimeout > 0 && since > int64(s.readHeaderTimeout) && !c.headLate.Load() {
					// Wake the reader with a deadline in the past; it
					// answers 408 itself, owning the connection's writer.
					c.headLate.Store(true)
					_ = c.conn.SetReadDeadline(time.Unix(1, 0))
				}
			case phaseBusy:
				if since > int64(livenessAfter) && c.ctx.Err() == nil && peerOf(c.conn) == peerReset {
					// The client reset the connection: cancel so the
					// upstream request ends. A client that only closed its
					// sending side (FIN) may still read the answer, as
					// HAProxy assumes too, so that does not cancel.
					c.cancel()
				}
			}
		}
		s.mu.Unlock()
		for _, c := range closing {
			c.conn.Close()
		}
	}
}

func (c *h1Conn) close() {
	c.cancel()
	if !c.hijacked {
		tc, _ := c.conn.(*net.TCPConn)
		switch {
		case c.abort && tc != nil:
			// A reset tells even a client reading to the end of the
			// connection (HTTP/1.0, no length) that the answer is cut short.
			_ = tc.SetLinger(0)
		case c.linger && tc != nil:
			// Closing with unread bytes would reset the connection and
			// could destroy the answer before the client reads it; send
			// FIN and drop what still comes for a while, as nginx's
			// lingering close does.
			_ = c.bw.Flush()
			if tc.CloseWrite() == nil {
				_ = tc.SetReadDeadline(time.Now().Add(lingerTimeout))
				_, _ = io.CopyN(io.Discard, tc, maxLinger)
			}
		}
		c.conn.Close()
		c.br.Reset(nil)
		c.bw.Reset(nil)
		h1ReaderPool.Put(c.br)
		h1WriterPool.Put(c.bw)
	}
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	c.srv.mu.Unlock()
	if !c.hijacked {
		c.srv.releaseSlots()
	}
}

// slotConn gives a connection's slot back when it is closed.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *h1Conn) serve() {
	defer c.close()
	for {
		c.setPhase(phaseIdle)
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		c.setPhase(phaseHead)
		req, err := c.readRequest()
		if err != nil {
			var he *h1.HeadError
			switch {
			case errors.As(err, &he):
				c.replyError(he.Status, he.Msg)
			case c.headLate.Load():
				_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
				c.replyError(http.StatusRequestTimeout, "request head not received in time")
			}
			return
		}
		if c.headLate.Load() {
			// The head was complete just as the watchdog woke the reader:
			// the connection's read deadline is gone, so end it as late.
			c.replyError(http.StatusRequestTimeout, "request head not received in time")
			return
		}
		c.setPhase(phaseBusy)
		keep := c.handle(req)
		c.served.Add(1)
		// An answer sent while the server was closing said Connection:
		// close (keep is false). One sent keep-alive just before must not
		// be followed by a close the client was not told of: the
		// connection goes idle, and a shutdown gives it the idle grace.
		if c.hijacked || !keep {
			if !c.hijacked {
				_ = c.bw.Flush()
			}
			return
		}
	}
}

// handle runs the handler for one request and reports whether the
// connection may carry another.
func (c *h1Conn) handle(req *http.Request) (keep bool) {
	w := &c.resp
	w.reset(req)
	c.bodyStopped.Store(false)
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.srv.log.Error("panic serving request", "remote", c.remote, "panic", fmt.Sprint(v))
			}
			c.abort = true
			keep = false
		}
	}()
	c.srv.handler.ServeHTTP(w, req)
	if c.hijacked {
		return false
	}
	if err := w.finish(); err != nil {
		return false
	}
	// Whatever body the handler left unread must go before the next request.
	if b, ok := req.Body.(*h1Body); ok {
		if !b.drain() {
			c.linger = true
			return false
		}
		if b.armed {
			_ = c.conn.SetReadDeadline(time.Time{})
		}
	}
	return w.keepAlive
}

func (c *h1Conn) readRequest() (*http.Request, error) {
	// Copying the template carries the connection's context without the
	// second allocation WithContext would make.
	req := new(http.Request)
	*req = *c.tmpl
	h := c.header
	clear(h)
	req.Header = h
	req.RemoteAddr = c.remote
	fr, err := h1.ReadRequest(c.br, c.srv.limits, req)
	if err != nil {
		return nil, err
	}
	switch {
	case fr.Chunked:
		b := &h1Body{c: c, chunked: true}
		b.cr.Reset(c.br)
		req.Body = b
	case fr.ContentLength > 0:
		req.Body = &h1Body{c: c, left: fr.ContentLength}
	default:
		req.Body = http.NoBody
	}
	if fr.ExpectContinue {
		req.Body.(*h1Body).expectContinue = true
	}
	return req, nil
}

func (c *h1Conn) replyError(status int, msg string) {
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s\n",
		status, http.StatusText(status), len(msg)+1, msg)
	_ = c.bw.Flush()
}

// h1Body is a request body read from the client connection.
type h1Body struct {
	c              *h1Conn
	left           int64
	chunked        bool
	cr             h1.ChunkedReader
	expectContinue bool
	err            error
	armed          bool // a read deadline was set; cleared after the request
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.sendContinue()
	if b.chunked {
		b.deadline()
		n, err := b.cr.Read(p)
		if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.left <= 0 {
		b.err = io.EOF
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	b.deadline()
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	if err != nil {
		b.err = h1.NoEOF(err)
		return n, b.err
	}
	return n, nil
}

func (b *h1Body) Close() error { return nil }

// sendContinue answers Expect: 100-continue, once. The proxy calls it
// before a body is streamed from another goroutine, so the interim answer
// is never written while the final one is.
func (b *h1Body) sendContinue() {
	if b.expectContinue {
		b.expectContinue = false
		if _, err := b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err == nil {
			_ = b.c.bw.Flush()
		}
	}
}

// deadline bounds a pause in the body by the header timeout when nothing is
// buffered, so a client trickling a body cannot hold a connection forever.
func (b *h1Body) deadline() {
	if b.c.br.Buffered() == 0 && b.c.srv.readHeaderTimeout > 0 {
		_ = b.c.conn.SetReadDeadline(time.Now().Add(b.c.srv.readHeaderTimeout))
		b.armed = true
		if b.c.bodyStopped.Load() {
			// Stopped while this deadline was being set: keep it stopped.
			_ = b.c.conn.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// lingerTimeout and maxLinger bound the lingering close: how long and how
// much of a body nobody reads is dropped before the connection closes.
const (
	lingerTimeout = 5 * time.Second
	maxLinger     = 256 << 20
)

// maxDrain bounds how much of an unread request body is read and dropped to
// keep the connection; beyond it the connection is closed.
const maxDrain = 256 << 10

func (b *h1Body) drain() bool {
	if b.err == io.EOF {
		return true
	}
	if b.err != nil || b.expectContinue {
		// An unanswered Expect: 100-continue means the client has not sent it.
		return false
	}
	n, err := io.CopyN(io.Discard, b, maxDrain)
	return err == io.EOF && n < maxDrain
}

// h1Response is the http.ResponseWriter of one request, reused across the
// requests of a connection.
type h1Response struct {
	c           *h1Conn
	req         *http.Request
	header      http.Header
	wroteHeader bool
	status      int
	chunked     bool
	noBody      bool
	declared    int64 // Content-Length sent, -1 if none
	written     int64
	keepAlive   bool
}

func (w *h1Response) reset(req *http.Request) {
	clear(w.header)
	w.req = req
	w.wroteHeader = false
	w.status = 0
	w.chunked = false
	w.noBody = false
	w.declared = -1
	w.written = 0
	w.keepAlive = !req.Close
}

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if w.wroteHeader || w.c.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Interim answers are not relayed; the proxy drops them.
		return
	}
	w.wroteHeader = true
	w.status = code
	bw := w.c.bw
	var num [40]byte
	if text := http.StatusText(code); text != "" {
		bw.WriteString("HTTP/1.1 ")
		bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
		bw.WriteByte(' ')
		bw.WriteString(text)
		bw.WriteString("\r\n")
	} else {
		bw.WriteString("HTTP/1.1 ")
		bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
		bw.WriteString(" status\r\n")
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if cl, ok := w.header["Content-Length"]; ok && len(cl) > 0 {
		if n, ok := h1.ParseContentLength(cl[0]); ok {
			w.declared = n
		}
	}
	if w.declared < 0 && !w.noBody {
		if w.req.ProtoMinor >= 1 {
			w.chunked = true
		} else {
			w.keepAlive = false
		}
	}
	if conn, ok := w.header["Connection"]; ok && len(conn) > 0 && h1.HasToken(conn[0], "close") {
		// The handler asks to end the connection (an early answer left the
		// request body unread).
		w.keepAlive = false
	}
	for k, vv := range w.header {
		if k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if _, ok := w.header["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(appendDate(num[:0]))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !w.keepAlive || w.c.srv.closing.Load() {
		w.keepAlive = false
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	bw := w.c.bw
	if w.chunked {
		var num [16]byte
		bw.Write(strconv.AppendInt(num[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		n, err := bw.Write(p)
		if err == nil {
			_, err = bw.WriteString("\r\n")
		}
		return n, err
	}
	return bw.Write(p)
}

// FlushError sends what is buffered; http.ResponseController uses it.
func (w *h1Response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.c.bw.Flush()
}

func (w *h1Response) Flush() { _ = w.FlushError() }

// SetReadDeadline bounds reading the request body; http.ResponseController
// uses it. A deadline in the past stops a body read for good, even one
// that would arm its own deadline after this call.
func (w *h1Response) SetReadDeadline(t time.Time) error {
	w.c.bodyStopped.Store(!t.IsZero() && time.Now().After(t))
	return w.c.conn.SetReadDeadline(t)
}

// Hijack hands the connection to the caller (WebSocket tunnels).
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("hijack after the response started")
	}
	w.c.hijacked = true
	w.c.setPhase(phaseHijacked)
	_ = w.c.conn.SetDeadline(time.Time{})
	// The connection keeps its slot under the caps until the tunnel
	// closes it.
	conn := &slotConn{Conn: w.c.conn, release: w.c.srv.releaseSlots}
	return conn, bufio.NewReadWriter(w.c.br, w.c.bw), nil
}

// finish ends the response: the last chunk, or a check that the declared
// length was sent.
func (w *h1Response) finish() error {
	if !w.wroteHeader {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.c.bw.WriteString("0\r\n\r\n")
	} else if w.declared >= 0 && w.written < w.declared && !w.noBody {
		_ = w.c.bw.Flush()
		return io.ErrShortWrite
	}
	return w.c.bw.Flush()
}

// dateCache formats the Date header once per second.
var dateCache struct {
	mu   sync.Mutex
	sec  int64
	text []byte
}

func appendDate(b []byte) []byte {
	now := time.Now()
	dateCache.mu.Lock()
	if now.Unix() != dateCache.sec {
		dateCache.sec = now.Unix()
		dateCache.text = now.UTC().AppendFormat(dateCache.text[:0], http.TimeFormat)
	}
	b = append(b, dateCache.text...)
	dateCache.mu.Unlock()
	return b
}
