package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	maxHeaderBytes    int

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
	hijacked   bool

	header http.Header   // request header map, cleared per request
	tmpl   *http.Request // empty request carrying ctx
	resp   h1Response
}

func newH1Server(handler http.Handler, log *slog.Logger, readHeader, idle time.Duration, maxHeader int) *h1Server {
	return &h1Server{
		handler:           handler,
		log:               log,
		readHeaderTimeout: readHeader,
		idleTimeout:       idle,
		maxHeaderBytes:    maxHeader,
		conns:             make(map[*h1Conn]struct{}),
		done:              make(chan struct{}),
	}
}

// Serve accepts connections until the listener is closed.
func (s *h1Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go s.watchdog()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		hc := s.newConn(c)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[hc] = struct{}{}
		s.mu.Unlock()
		go hc.serve()
	}
}

func (s *h1Server) newConn(c net.Conn) *h1Conn {
	ctx, cancel := context.WithCancel(context.Background())
	hc := &h1Conn{
		srv:    s,
		conn:   c,
		br:     bufio.NewReaderSize(c, 16<<10),
		bw:     bufio.NewWriterSize(c, 16<<10),
		ctx:    ctx,
		cancel: cancel,
		remote: c.RemoteAddr().String(),
		header: make(http.Header, 16),
	}
	hc.tmpl = (&http.Request{}).WithContext(ctx)
	hc.resp.c = hc
	hc.resp.header = make(http.Header, 16)
	hc.setPhase(phaseIdle)
	return hc
}

func (c *h1Conn) setPhase(p int32) {
	c.phaseSince.Store(time.Now().UnixNano())
	c.phase.Store(p)
}

// Shutdown stops accepting, closes idle connections and lets busy ones
// finish their current request, until ctx ends; then it closes the rest.
func (s *h1Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := 0
		for c := range s.conns {
			switch c.phase.Load() {
			case phaseIdle:
				c.conn.Close()
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
				if s.idleTimeout > 0 && since > int64(s.idleTimeout) {
					closing = append(closing, c)
				}
			case phaseHead:
				if s.readHeaderTimeout > 0 && since > int64(s.readHeaderTimeout) {
					closing = append(closing, c)
				}
			case phaseBusy:
				if since > int64(livenessAfter) && c.ctx.Err() == nil && peerClosed(c.conn) {
					// The client hung up: cancel so the upstream request ends.
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
		c.conn.Close()
	}
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	c.srv.mu.Unlock()
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
			var he *headError
			if errors.As(err, &he) {
				c.replyError(he.status, he.msg)
			}
			return
		}
		c.setPhase(phaseBusy)
		keep := c.handle(req)
		if c.hijacked || !keep || c.srv.closing.Load() {
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
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.srv.log.Error("panic serving request", "remote", c.remote, "panic", fmt.Sprint(v))
			}
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
			return false
		}
		if b.armed {
			_ = c.conn.SetReadDeadline(time.Time{})
		}
	}
	return w.keepAlive
}

// headError is a malformed request head, answered before closing.
type headError struct {
	status int
	msg    string
}

func (e *headError) Error() string { return e.msg }

func badHead(status int, format string, args ...any) error {
	return &headError{status, fmt.Sprintf(format, args...)}
}

func (c *h1Conn) readRequest() (*http.Request, error) {
	limit := c.srv.maxHeaderBytes
	line, err := c.readLine(&limit)
	if err != nil {
		return nil, err
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1 {
		return nil, badHead(http.StatusBadRequest, "malformed request line")
	}
	method, uri, proto := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if len(uri) == 0 || bytes.IndexByte(uri, ' ') >= 0 {
		// A target with a space would reach the backend as a different
		// request line than the one parsed here (RFC 9112 section 3.2).
		return nil, badHead(http.StatusBadRequest, "malformed request target")
	}
	var minor int
	switch string(proto) {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
		minor = 0
	default:
		return nil, badHead(http.StatusHTTPVersionNotSupported, "unsupported protocol")
	}
	for _, b := range method {
		if !isTokenByte(b) {
			return nil, badHead(http.StatusBadRequest, "malformed method")
		}
	}
	// Copying the template carries the connection's context without the
	// second allocation WithContext would make.
	req := new(http.Request)
	*req = *c.tmpl
	req.Method = internMethod(method)
	req.Proto = string(proto)
	req.ProtoMajor, req.ProtoMinor = 1, minor
	req.RemoteAddr = c.remote
	req.RequestURI = string(uri)
	req.URL, err = url.ParseRequestURI(req.RequestURI)
	if err != nil {
		return nil, badHead(http.StatusBadRequest, "malformed request target")
	}
	h := c.header
	clear(h)
	req.Header = h
	var contentLength int64 = -1
	chunked, hasLength, hostSeen := false, false, false
	for {
		line, err := c.readLine(&limit)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return nil, badHead(http.StatusBadRequest, "malformed header line")
		}
		for _, b := range line[:colon] {
			if !isTokenByte(b) {
				return nil, badHead(http.StatusBadRequest, "malformed header name")
			}
		}
		key := canonicalKey(line[:colon])
		value := string(bytes.TrimSpace(line[colon+1:]))
		for i := 0; i < len(value); i++ {
			if b := value[i]; (b < ' ' && b != '\t') || b == 0x7f {
				return nil, badHead(http.StatusBadRequest, "invalid character in header value")
			}
		}
		switch key {
		case "Host":
			if hostSeen {
				return nil, badHead(http.StatusBadRequest, "more than one Host header")
			}
			hostSeen = true
			req.Host = value
			continue
		case "Content-Length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || (hasLength && n != contentLength) {
				return nil, badHead(http.StatusBadRequest, "bad Content-Length")
			}
			contentLength, hasLength = n, true
		case "Transfer-Encoding":
			if !asciiEqualFold(value, "chunked") || chunked {
				return nil, badHead(http.StatusNotImplemented, "unsupported Transfer-Encoding")
			}
			chunked = true
		}
		h[key] = append(h[key], value)
	}
	if minor == 1 && !hostSeen {
		return nil, badHead(http.StatusBadRequest, "missing Host header")
	}
	if chunked && hasLength {
		// Both framings at once is the classic request-smuggling vector.
		return nil, badHead(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
	}
	if req.URL.Host != "" {
		req.Host = req.URL.Host
	}
	switch {
	case chunked:
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Body = &h1Body{c: c, chunked: true, cr: chunkedReader{br: c.br}}
	case contentLength > 0:
		req.ContentLength = contentLength
		req.Body = &h1Body{c: c, left: contentLength}
	default:
		req.Body = http.NoBody
	}
	if req.Body != http.NoBody && asciiEqualFold(h.Get("Expect"), "100-continue") && minor == 1 {
		req.Body.(*h1Body).expectContinue = true
	}
	req.Close = wantsClose(minor, h)
	return req, nil
}

func wantsClose(minor int, h http.Header) bool {
	closeTok, keepTok := false, false
	for _, v := range h["Connection"] {
		for _, tok := range splitTokens(v) {
			switch {
			case asciiEqualFold(tok, "close"):
				closeTok = true
			case asciiEqualFold(tok, "keep-alive"):
				keepTok = true
			}
		}
	}
	if minor == 0 {
		return !keepTok
	}
	return closeTok
}

// readLine reads one CRLF- or LF-terminated line within the header budget.
func (c *h1Conn) readLine(limit *int) ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	*limit -= len(line)
	if *limit < 0 || errors.Is(err, bufio.ErrBufferFull) {
		return nil, badHead(http.StatusRequestHeaderFieldsTooLarge, "request head too large")
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func (c *h1Conn) replyError(status int, msg string) {
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s\n",
		status, http.StatusText(status), len(msg)+1, msg)
	_ = c.bw.Flush()
}

var methods = map[string]string{}

func init() {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"} {
		methods[m] = m
	}
}

func internMethod(b []byte) string {
	if m, ok := methods[string(b)]; ok {
		return m
	}
	return string(b)
}

// tokenBytes marks the bytes allowed in methods and header names (RFC 9110
// tchar); a table keeps the check cheap on every request.
var tokenBytes = func() (t [256]bool) {
	for b := '!'; b < 0x7f; b++ {
		t[b] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, b)
	}
	return t
}()

func isTokenByte(b byte) bool { return tokenBytes[b] }

// h1Body is a request body read from the client connection.
type h1Body struct {
	c              *h1Conn
	left           int64
	chunked        bool
	cr             chunkedReader
	expectContinue bool
	err            error
	armed          bool // a read deadline was set; cleared after the request
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.expectContinue {
		b.expectContinue = false
		if _, err := b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err == nil {
			_ = b.c.bw.Flush()
		}
	}
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
		b.err = noEOF(err)
		return n, b.err
	}
	return n, nil
}

func (b *h1Body) Close() error { return nil }

// deadline bounds a pause in the body by the header timeout when nothing is
// buffered, so a client trickling a body cannot hold a connection forever.
func (b *h1Body) deadline() {
	if b.c.br.Buffered() == 0 && b.c.srv.readHeaderTimeout > 0 {
		_ = b.c.conn.SetReadDeadline(time.Now().Add(b.c.srv.readHeaderTimeout))
		b.armed = true
	}
}

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
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
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

// Hijack hands the connection to the caller (WebSocket tunnels).
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("hijack after the response started")
	}
	w.c.hijacked = true
	w.c.setPhase(phaseHijacked)
	_ = w.c.conn.SetDeadline(time.Time{})
	return w.c.conn, bufio.NewReadWriter(w.c.br, w.c.bw), nil
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
