package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// The raw client: a minimal HTTP/1.1 client for throughput. Each worker
// keeps one keep-alive connection per address and writes a request it
// serialized once; it parses status line, the framing headers
// (Content-Length, Transfer-Encoding: chunked, Connection) and the version
// header, and reads the body through. It never retries: a request that
// fails on a reused connection is a failure.

// Protocol errors of the raw client (outcome "error", or "truncated" in a
// body).
var (
	errMalformedStatus = errors.New("malformed HTTP status line")
	errMalformedHeader = errors.New("malformed HTTP header")
	errHeaderTooLong   = errors.New("HTTP header line too long")
	errBadLength       = errors.New("bad Content-Length")
	errBadChunk        = errors.New("malformed chunked encoding")
	errUpgrade         = errors.New("unexpected 101 Switching Protocols")
	errTooManyInterim  = errors.New("too many 1xx answers")
)

// rawConn is one connection of the raw client.
type rawConn struct {
	c        net.Conn
	br       *bufio.Reader
	stopWake func() bool
}

func (rc *rawConn) close() {
	rc.stopWake()
	rc.c.Close()
}

// dialRaw opens a connection; an abort (Stop's context ending) unblocks its
// reads and writes at once.
func (w *worker) dialRaw(l *lane, deadline time.Time) (*rawConn, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(w.g.abortCtx, "tcp", l.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	rc := &rawConn{c: c, br: bufio.NewReaderSize(c, readBufSize)}
	rc.stopWake = context.AfterFunc(w.g.abortCtx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return rc, nil
}

// doRaw sends one request with the raw client.
func (w *worker) doRaw(l *lane, r *result) {
	g := w.g
	deadline := r.start.Add(g.cfg.Timeout)
	rc := w.conns[l.addrIdx]
	fresh := rc == nil
	if fresh {
		var err error
		rc, err = w.dialRaw(l, deadline)
		if err != nil {
			r.end = time.Now()
			r.err = err
			r.outcome = classifyErr(g.abortCtx, err, false, false, false)
			return
		}
		r.connect = time.Since(r.start)
		w.conns[l.addrIdx] = rc
	}
	_ = rc.c.SetDeadline(deadline)
	r.bytesOut = int64(len(l.raw))
	if _, err := rc.c.Write(l.raw); err != nil {
		w.dropConn(l)
		r.end = time.Now()
		r.err = err
		r.outcome = classifyErr(g.abortCtx, err, false, false, true)
		return
	}
	keep, inBody, sawByte, err := w.readRaw(rc.br, l, r)
	r.end = time.Now()
	if err != nil || !keep || g.cfg.DisableKeepAlives {
		w.dropConn(l)
	}
	if err != nil {
		if err == io.EOF && inBody {
			err = io.ErrUnexpectedEOF
		}
		r.err = err
		r.outcome = classifyErr(g.abortCtx, err, inBody, sawByte, true)
		return
	}
	r.outcome = statusOutcome(r.code)
	if r.outcome == OK && l.check && !w.m.ok() {
		r.outcome = BodyMismatch
	}
}

func (w *worker) dropConn(l *lane) {
	if rc := w.conns[l.addrIdx]; rc != nil {
		rc.close()
		w.conns[l.addrIdx] = nil
	}
}

// readRaw reads one answer (skipping 1xx ones). keep says the connection
// may carry another request.
func (w *worker) readRaw(br *bufio.Reader, l *lane, r *result) (keep, inBody, sawByte bool, err error) {
	for interim := 0; ; interim++ {
		if interim > 10 {
			return false, false, true, errTooManyInterim
		}
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !sawByte {
			sawByte = true
			if w.g.cfg.JTL != nil { // only the JTL's Latency column needs it
				r.ttfb = time.Now()
			}
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errHeaderTooLong
			}
			return false, false, sawByte, err
		}
		r.bytesIn += int64(len(line))
		// "HTTP/1.1 200 OK\r\n"
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
			(len(line) > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
			return false, false, true, errMalformedStatus
		}
		minor := line[7]
		code, ok := atoi3(line[9:12])
		if !ok || code < 100 {
			return false, false, true, errMalformedStatus
		}
		keep = minor == '1'
		length := int64(-1)
		chunked := false
		for {
			h, err := br.ReadSlice('\n')
			if err != nil {
				if err == bufio.ErrBufferFull {
					err = errHeaderTooLong
				}
				return false, false, true, err
			}
			r.bytesIn += int64(len(h))
			h = trimCRLF(h)
			if len(h) == 0 {
				break
			}
			colon := indexByte(h, ':')
			if colon <= 0 {
				return false, false, true, errMalformedHeader
			}
			name, value := h[:colon], trimSpace(h[colon+1:])
			switch {
			case equalFold(name, "content-length"):
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 || (length >= 0 && n != length) {
					return false, false, true, errBadLength
				}
				length = n
			case equalFold(name, "transfer-encoding"):
				chunked = hasSuffixFold(value, "chunked")
			case equalFold(name, "connection"):
				if containsTokenFold(value, "close") {
					keep = false
				} else if containsTokenFold(value, "keep-alive") {
					keep = true
				}
			case equalFold(name, w.g.cfg.VersionHeader):
				v := value
				if len(v) > maxVersionLen {
					v = v[:maxVersionLen]
				}
				if string(v) != w.lastVer {
					w.lastVer = string(v)
				}
				r.version, r.hasVer = w.lastVer, true
			}
		}
		if code == 101 {
			return false, false, true, errUpgrade
		}
		if code < 200 {
			r.version, r.hasVer = "", false
			continue // 100 Continue, 103 Early Hints: the answer follows
		}
		r.code = code
		check := l.check && code <= 299
		if check {
			w.m.reset(l)
		}
		switch {
		case l.method == "HEAD" || code == 204 || code == 304:
			return keep, false, true, nil
		case chunked:
			return keep, true, true, w.readChunked(br, r, check)
		case length >= 0:
			return keep, true, true, w.readN(br, length, r, check)
		default:
			// No framing: the body runs to the end of the connection.
			for {
				n, err := br.Read(w.buf)
				r.bytesIn += int64(n)
				if check {
					w.m.feed(w.buf[:n])
				}
				if err == io.EOF {
					return false, true, true, nil
				}
				if err != nil {
					return false, true, true, err
				}
			}
		}
	}
}

// readN reads exactly n body bytes.
func (w *worker) readN(br *bufio.Reader, n int64, r *result, check bool) error {
	for n > 0 {
		if !check {
			d, err := br.Discard(int(min(n, 1<<30)))
			n -= int64(d)
			r.bytesIn += int64(d)
			if err != nil {
				return err
			}
			continue
		}
		k, err := io.ReadFull(br, w.buf[:min(n, int64(len(w.buf)))])
		n -= int64(k)
		r.bytesIn += int64(k)
		w.m.feed(w.buf[:k])
		if err != nil {
			return err
		}
	}
	return nil
}

// readChunked reads a chunked body and its trailers.
func (w *worker) readChunked(br *bufio.Reader, r *result, check bool) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return errBadChunk
			}
			return err
		}
		r.bytesIn += int64(len(line))
		line = trimCRLF(line)
		if i := indexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = trimSpace(line)
		size, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || size < 0 || len(line) == 0 || len(line) > 15 {
			return errBadChunk
		}
		if size == 0 {
			for { // trailers
				t, err := br.ReadSlice('\n')
				if err != nil {
					if err == bufio.ErrBufferFull {
						return errBadChunk
					}
					return err
				}
				r.bytesIn += int64(len(t))
				if len(trimCRLF(t)) == 0 {
					return nil
				}
			}
		}
		if err := w.readN(br, size, r, check); err != nil {
			return err
		}
		crlf, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return errBadChunk
			}
			return err
		}
		r.bytesIn += int64(len(crlf))
		if len(trimCRLF(crlf)) != 0 {
			return errBadChunk
		}
	}
}

func atoi3(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func hasSuffixFold(b []byte, s string) bool {
	b = trimSpace(b)
	return len(b) >= len(s) && equalFold(b[len(b)-len(s):], s)
}

// containsTokenFold reports whether a comma-separated header value has
// token s.
func containsTokenFold(b []byte, s string) bool {
	for len(b) > 0 {
		i := indexByte(b, ',')
		var tok []byte
		if i < 0 {
			tok, b = b, nil
		} else {
			tok, b = b[:i], b[i+1:]
		}
		if equalFold(trimSpace(tok), s) {
			return true
		}
	}
	return false
}
