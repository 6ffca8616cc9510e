package httpdiff

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// backend is the origin server behind a proxy under test: a raw TCP server,
// not net/http, because it must accept and report what net/http would
// refuse or repair (two lengths, bare LF, obs-fold) and answer with bytes
// no well-behaved server would send. It records every request it parses
// and answers as the current case scripts.
type backend struct {
	ln net.Listener

	mu     sync.Mutex
	script func(*record) *answer // nil: every request gets okAnswer
	recs   []*record
	conns  map[*bconn]struct{}
	nconn  int

	answering atomic.Int32 // connections writing a scripted answer
	wg        sync.WaitGroup
}

// record is one request as the backend parsed it.
type record struct {
	conn      int // which backend connection, in accept order
	method    string
	target    string
	proto     string
	id        string
	fields    []field
	anomalies []string // framing and syntax problems: invariant 2
	raw       []byte   // the bytes of this request as received, capped
	bodyDone  bool     // the body arrived whole
}

func (r *record) line() string { return r.method + " " + r.target + " " + r.proto }

// answer is what the backend writes back to one request.
type answer struct {
	delay  time.Duration // before the first part
	parts  [][]byte      // written one by one
	pause  time.Duration // between parts
	early  bool          // answer after the head, leaving the body unread
	close  bool          // close the connection after the parts
	linger time.Duration // before that close
	echo   bool          // then copy whatever arrives back (an upgraded connection)
}

const (
	connFresh  int32 = iota // no request parsed yet
	connHealth              // carried health checks
	connCase                // carried a case's requests
)

type bconn struct {
	c        net.Conn
	n        int
	kind     atomic.Int32
	gotBytes atomic.Bool
	inHead   atomic.Bool // reading a request head
	partial  atomic.Bool // holds bytes of a head not parsed yet
	closed   chan struct{}
	once     sync.Once
	done     chan struct{}
}

func (bc *bconn) close() {
	bc.once.Do(func() {
		close(bc.closed)
		bc.c.Close()
	})
}

// wait pauses as a script says, or returns false as soon as the connection
// is closed under it.
func (bc *bconn) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-bc.closed:
		return false
	}
}

func (bc *bconn) Read(p []byte) (int, error) {
	n, err := bc.c.Read(p)
	if n > 0 {
		bc.gotBytes.Store(true)
		if bc.inHead.Load() {
			bc.partial.Store(true)
		}
	}
	return n, err
}

func startBackend() (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	b := &backend{ln: ln, conns: map[*bconn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.nconn++
		bc := &bconn{c: c, n: b.nconn, closed: make(chan struct{}), done: make(chan struct{})}
		b.conns[bc] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(bc)
	}
}

// stop closes the listener and every connection and waits for their
// goroutines.
func (b *backend) stop() {
	b.ln.Close()
	b.mu.Lock()
	for bc := range b.conns {
		bc.close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *backend) setScript(s func(*record) *answer) {
	b.mu.Lock()
	b.script = s
	b.mu.Unlock()
}

// mark returns a position in the log of requests; since returns what came
// after it.
func (b *backend) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.recs)
}

func (b *backend) since(mark int) []record {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]record, 0, len(b.recs)-mark)
	for _, r := range b.recs[mark:] {
		out = append(out, *r)
	}
	return out
}

// reset closes every connection that carried a case's requests or holds
// bytes that are not a request yet, and waits until they are gone, so the
// next case starts on connections no earlier case touched. Health-check
// connections are left alone: cutting one would fail a check.
func (b *backend) reset(within time.Duration) error {
	b.mu.Lock()
	var closing []*bconn
	for bc := range b.conns {
		k := bc.kind.Load()
		if k == connCase || (k == connFresh && bc.gotBytes.Load()) {
			closing = append(closing, bc)
		}
	}
	b.mu.Unlock()
	for _, bc := range closing {
		bc.close()
	}
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for _, bc := range closing {
		select {
		case <-bc.done:
		case <-timeout.C:
			return fmt.Errorf("backend connection %d still open %s after it was closed", bc.n, within)
		}
	}
	return nil
}

// quiesce waits until no scripted answer is being written and no request
// head that has begun to arrive is still unparsed, so a case's records are
// complete before they are checked and its stray bytes have been sent.
func (b *backend) quiesce(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		busy := b.answering.Load() != 0
		partial := 0
		b.mu.Lock()
		for bc := range b.conns {
			if bc.partial.Load() {
				partial = bc.n
			}
		}
		b.mu.Unlock()
		if !busy && partial == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if busy {
				return fmt.Errorf("backend still writing a scripted answer after %s", within)
			}
			return fmt.Errorf("backend connection %d has held part of a request head for %s", partial, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// idPattern finds the request id in a target: every request the harness
// sends is /r/<id>.
var idPattern = regexp.MustCompile(`/r/([A-Za-z0-9]+)`)

var alnum = regexp.MustCompile(`^[A-Za-z0-9]+$`)

func (b *backend) serve(bc *bconn) {
	defer b.wg.Done()
	defer close(bc.done)
	defer func() {
		bc.close()
		b.mu.Lock()
		delete(b.conns, bc)
		b.mu.Unlock()
	}()
	br := bufio.NewReaderSize(bc, 64<<10)
	for {
		// reset ends every case's connections; the deadline only bounds a
		// wait the harness forgot.
		_ = bc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		w := &wireReader{br: br, rawCap: 64 << 10}
		bc.inHead.Store(true)
		bc.partial.Store(br.Buffered() > 0)
		h, err := w.head()
		bc.inHead.Store(false)
		bc.partial.Store(false)
		if err != nil {
			return
		}
		rec := parseRequest(h, bc.n)
		rec.raw = w.raw
		healthCheck := strings.HasPrefix(rec.target, "/healthz")
		reqClose := wantsClose(rec.proto, h)
		if healthCheck {
			if bc.kind.Load() == connFresh {
				bc.kind.Store(connHealth)
			}
			msg := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
			if reqClose {
				msg += "Connection: close\r\n"
			}
			if _, err := io.WriteString(bc.c, msg+"\r\nok"); err != nil || reqClose {
				return
			}
			continue
		}
		bc.kind.Store(connCase)
		b.mu.Lock()
		b.recs = append(b.recs, rec)
		script := b.script
		b.mu.Unlock()

		var a *answer
		if script != nil {
			a = script(rec)
		}
		if a == nil {
			a = okAnswer(rec.id, rec.method, reqClose)
		}
		if !a.early {
			if !b.readBody(bc, w, h, rec) {
				return
			}
		}
		if !b.play(bc, a) {
			return
		}
		if a.echo {
			_ = bc.c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(bc.c, br)
			return
		}
		if a.early || reqClose {
			return
		}
	}
}

// readBody reads the request body as a lenient server would, answering an
// Expect: 100-continue first, and completes rec. It reports whether the
// connection can carry another request.
func (b *backend) readBody(bc *bconn, w *wireReader, h *wireHead, rec *record) bool {
	chunked, n, _ := bodyFraming(h)
	if (chunked || n > 0) && h.hasToken("Expect", "100-continue") {
		if _, err := io.WriteString(bc.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return false
		}
	}
	var err error
	switch {
	case chunked:
		_, err = w.chunked(h, 0)
	case n > 0:
		_, err = w.readN(n, 0)
	}
	b.mu.Lock()
	rec.raw = w.raw
	rec.anomalies = append(rec.anomalies[:0:0], h.anomalies...)
	rec.bodyDone = err == nil
	b.mu.Unlock()
	return err == nil
}

// play writes a scripted answer; false means the connection is done.
func (b *backend) play(bc *bconn, a *answer) bool {
	b.answering.Add(1)
	defer b.answering.Add(-1)
	if !bc.wait(a.delay) {
		return false
	}
	for i, p := range a.parts {
		if i > 0 && !bc.wait(a.pause) {
			return false
		}
		if _, err := bc.c.Write(p); err != nil {
			return false
		}
	}
	if a.close {
		bc.wait(a.linger)
		return false
	}
	return true
}

func parseRequest(h *wireHead, conn int) *record {
	rec := &record{conn: conn}
	parts := strings.Split(h.start, " ")
	switch {
	case len(parts) == 3:
		rec.method, rec.target, rec.proto = parts[0], parts[1], parts[2]
	case len(parts) > 3:
		h.flag("malformed request line %q", h.start)
		rec.method, rec.proto = parts[0], parts[len(parts)-1]
		rec.target = strings.Join(parts[1:len(parts)-1], " ")
	default:
		h.flag("malformed request line %q", h.start)
		rec.method = parts[0]
	}
	for i := 0; i < len(rec.method); i++ {
		if !isToken(rec.method[i]) {
			h.flag("malformed method %q", rec.method)
			break
		}
	}
	if !validTarget(rec.method, rec.target) {
		h.flag("malformed request target %q", rec.target)
	}
	if rec.proto != "HTTP/1.1" && rec.proto != "HTTP/1.0" {
		h.flag("protocol %q", rec.proto)
	}
	lintFraming(h, true)
	if m := idPattern.FindStringSubmatch(rec.target); m != nil {
		rec.id = m[1]
	} else if v := h.get("X-Req-Id"); alnum.MatchString(v) {
		rec.id = v
	}
	rec.fields = h.fields
	rec.anomalies = append([]string(nil), h.anomalies...)
	return rec
}

// validTarget checks the request-target forms of RFC 9112 section 3.2; a
// target of none of them reads differently to different servers.
func validTarget(method, t string) bool {
	if t == "" || strings.ContainsAny(t, " \t\r\n\x00") {
		return false
	}
	switch {
	case method == "CONNECT":
		host, port, err := net.SplitHostPort(t)
		return err == nil && host != "" && port != "" && !strings.Contains(t, "/")
	case t == "*":
		return method == "OPTIONS"
	case t[0] == '/':
		return true
	}
	return strings.HasPrefix(t, "http://") || strings.HasPrefix(t, "https://")
}

func wantsClose(proto string, h *wireHead) bool {
	if proto == "HTTP/1.0" {
		return !h.hasToken("Connection", "keep-alive")
	}
	return h.hasToken("Connection", "close")
}

// okAnswer is the well-formed answer to request id: the id in X-Resp-Id
// and in the body, so a client can tell its own answer from another's.
func okAnswer(id, method string, closeConn bool) *answer {
	if id == "" {
		id = "anon"
	}
	status := "200 OK"
	if method == "CONNECT" {
		// An origin server has no tunnel to offer.
		status = "405 Method Not Allowed"
		closeConn = true
	}
	body := "id=" + id + "\n"
	head := fmt.Sprintf("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nX-Resp-Id: %s\r\nContent-Length: %d\r\n", status, id, len(body))
	if closeConn {
		head += "Connection: close\r\n"
	}
	head += "\r\n"
	if method == "HEAD" {
		body = ""
	}
	return &answer{parts: [][]byte{[]byte(head + body)}, close: closeConn}
}

// websocketAnswer accepts a WebSocket handshake and echoes what follows.
func websocketAnswer(id string, rec *record) *answer {
	h := wireHead{fields: rec.fields}
	key := h.get("Sec-WebSocket-Key")
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\nX-Resp-Id: " + id + "\r\n\r\n"
	return &answer{parts: [][]byte{[]byte(head)}, echo: true}
}
