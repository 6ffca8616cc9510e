package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync/atomic"
	"time"
)

// upConn is one HTTP/1.1 connection to a target. The proxy speaks HTTP/1.1
// to targets itself instead of going through http.Transport: a pooled
// connection with its own buffers needs no goroutines or channels per
// request, which is most of the cost of httputil.ReverseProxy.
type upConn struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	uses      int
	cut       atomic.Bool // closed because the deregistration delay ran out
	// watch is set while a request uses the connection; see watchBox.
	watch atomic.Pointer[watchBox]

	head respHead // reused for every response on this connection
}

const (
	upReadBuffer  = 16 << 10
	upWriteBuffer = 8 << 10
	// maxResponseHead bounds the status line and headers of a response.
	maxResponseHead = 64 << 10
)

func newUpConn(c net.Conn) *upConn {
	return &upConn{
		conn: c,
		br:   bufio.NewReaderSize(c, upReadBuffer),
		bw:   bufio.NewWriterSize(c, upWriteBuffer),
	}
}

// watchBox lets the server's watchdog end an exchange whose client went
// away or whose response head is late, without a timer or context callback
// per request. Whoever swaps it out of upConn.watch first owns the
// connection's fate: the watchdog closes it, the request path pools it.
type watchBox struct {
	ctx      context.Context
	deadline atomic.Int64 // unix nanoseconds for the response head; 0 once it arrived
	timedOut atomic.Bool
}

// header is one response header line as received.
type header struct{ key, value string }

// respHead is a parsed status line and header block.
type respHead struct {
	status        int
	statusLine    string // as received, for 101 answers relayed verbatim
	proto10       bool
	headers       []header
	contentLength int64 // -1 when absent
	chunked       bool
	closeConn     bool // Connection: close, or HTTP/1.0 without keep-alive
	keepAlive10   bool
	connTokens    []string // other header names listed in Connection
}

// errMalformed marks a response the proxy cannot parse; never retried.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return "malformed response from target: " + e.msg }

// readHead reads a status line and headers. gotBytes tells whether any byte
// of the response arrived, which decides whether a failure may be retried.
func (c *upConn) readHead() (gotBytes bool, err error) {
	h := &c.head
	h.headers = h.headers[:0]
	h.connTokens = h.connTokens[:0]
	h.contentLength = -1
	h.chunked, h.closeConn, h.keepAlive10, h.proto10 = false, false, false, false

	line, err := c.readLine()
	if err != nil {
		return len(line) > 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return true, &malformedError{fmt.Sprintf("bad status line %q", truncate(line))}
	}
	h.proto10 = line[7] == '0'
	code, ok := parseStatus(line[9:12])
	if !ok || (len(line) > 12 && line[12] != ' ') {
		return true, &malformedError{fmt.Sprintf("bad status line %q", truncate(line))}
	}
	h.status = code
	if code == http.StatusSwitchingProtocols {
		h.statusLine = string(line)
	}
	total := len(line)
	for {
		line, err = c.readLine()
		if err != nil {
			return true, err
		}
		if len(line) == 0 {
			break
		}
		total += len(line)
		if total > maxResponseHead {
			return true, &malformedError{"response head too large"}
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return true, &malformedError{fmt.Sprintf("bad header line %q", truncate(line))}
		}
		key := canonicalKey(line[:colon])
		value := string(bytes.TrimSpace(line[colon+1:]))
		switch key {
		case "Content-Length":
			n, perr := strconv.ParseInt(value, 10, 64)
			if perr != nil || n < 0 || (h.contentLength >= 0 && h.contentLength != n) {
				return true, &malformedError{fmt.Sprintf("bad Content-Length %q", value)}
			}
			h.contentLength = n
		case "Transfer-Encoding":
			if !asciiEqualFold(value, "chunked") {
				return true, &malformedError{fmt.Sprintf("unsupported Transfer-Encoding %q", value)}
			}
			h.chunked = true
			continue
		case "Connection":
			for _, tok := range splitTokens(value) {
				switch {
				case asciiEqualFold(tok, "close"):
					h.closeConn = true
				case asciiEqualFold(tok, "keep-alive"):
					h.keepAlive10 = true
				case asciiEqualFold(tok, "upgrade"):
				default:
					h.connTokens = append(h.connTokens, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
		h.headers = append(h.headers, header{key, value})
	}
	if h.chunked && h.contentLength >= 0 {
		// A length next to chunked framing is ignored, as RFC 9112 says,
		// and not passed on.
		h.contentLength = -1
		kept := h.headers[:0]
		for _, hv := range h.headers {
			if hv.key != "Content-Length" {
				kept = append(kept, hv)
			}
		}
		h.headers = kept
	}
	if h.proto10 && !h.keepAlive10 {
		h.closeConn = true
	}
	return true, nil
}

// readLine returns one line without its CRLF; the slice is valid until the
// next read.
func (c *upConn) readLine() ([]byte, error) { return readLine(c.br) }

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return line, &malformedError{"header line too long"}
		}
		return line, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func parseStatus(b []byte) (int, bool) {
	if b[0] < '1' || b[0] > '5' || b[1] < '0' || b[1] > '9' || b[2] < '0' || b[2] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0'), true
}

func truncate(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// commonKeys interns header names backends send on nearly every response so
// canonicalising them costs no allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Content-Length", "Content-Type", "Date", "Server", "Connection", "Keep-Alive",
		"Transfer-Encoding", "Cache-Control", "Etag", "Last-Modified", "Location",
		"Set-Cookie", "Vary", "Expires", "Content-Encoding", "X-Version", "X-Host",
		"Access-Control-Allow-Origin", "Upgrade", "Sec-Websocket-Accept", "Trailer",
		"Proxy-Connection", "Te", "Accept-Ranges", "Age", "X-Content-Type-Options",
	} {
		m[k] = k
		m[lowerASCII(k)] = k
	}
	return m
}()

func canonicalKey(b []byte) string {
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func splitTokens(v string) []string {
	var out []string
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		tok := trimOWS(v[:i])
		if tok != "" {
			out = append(out, tok)
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return out
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// hopByHop lists request and response headers that belong to one connection
// and are never forwarded (RFC 9110 section 7.6.1).
var hopByHop = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// chunkedReader decodes a chunked body straight from the connection's
// buffer, trailers included, so the connection can be reused after it.
type chunkedReader struct {
	br      *bufio.Reader
	left    int64 // bytes left in the current chunk
	started bool
	done    bool
}

func (cr *chunkedReader) Read(p []byte) (int, error) {
	if cr.done {
		return 0, io.EOF
	}
	if cr.left == 0 {
		if cr.started {
			if err := cr.expectCRLF(); err != nil {
				return 0, err
			}
		}
		cr.started = true
		line, err := readLine(cr.br)
		if err != nil {
			return 0, noEOF(err)
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 63)
		if err != nil {
			return 0, &malformedError{fmt.Sprintf("bad chunk size %q", truncate(line))}
		}
		if size == 0 {
			// Trailers are dropped; read up to the empty line.
			for {
				line, err := readLine(cr.br)
				if err != nil {
					return 0, noEOF(err)
				}
				if len(line) == 0 {
					break
				}
			}
			cr.done = true
			return 0, io.EOF
		}
		cr.left = int64(size)
	}
	if int64(len(p)) > cr.left {
		p = p[:cr.left]
	}
	n, err := cr.br.Read(p)
	cr.left -= int64(n)
	if err != nil {
		return n, noEOF(err)
	}
	return n, nil
}

func (cr *chunkedReader) expectCRLF() error {
	line, err := readLine(cr.br)
	if err != nil {
		return noEOF(err)
	}
	if len(line) != 0 {
		return &malformedError{"missing CRLF after chunk"}
	}
	return nil
}

// noEOF turns a clean EOF in the middle of a body into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
