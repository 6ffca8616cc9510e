package httpdiff

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clientConn is one raw client connection to a proxy. Requests are written
// as bytes so the harness can send what no HTTP library would.
type clientConn struct {
	c  *net.TCPConn
	br *bufio.Reader
}

func dial(addr string) (*clientConn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &clientConn{c: c.(*net.TCPConn), br: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (cc *clientConn) close() { cc.c.Close() }

func (cc *clientConn) write(b []byte) error {
	_ = cc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := cc.c.Write(b)
	return err
}

// reply is one response as a client read it.
type reply struct {
	status    int // 0: no response head arrived
	proto     string
	id        string // X-Resp-Id: which request the backend answered
	bodyID    string // the id the body names, if it names one
	interim   []int  // 1xx answers before this one
	complete  bool   // the framing says where the body ends and all of it arrived
	closeEnd  bool   // the body was delimited by the connection's end
	connClose bool   // the proxy said it will close
	anomalies []string
	end       string // why reading stopped early: closed, reset, timeout, or a parse error
}

// usable reports whether the connection can carry another request after r.
func (r *reply) usable() bool {
	return r.status >= 200 && r.status != 101 && r.complete && r.end == "" &&
		!r.closeEnd && !r.connClose && r.proto == "HTTP/1.1"
}

// short describes r for the table: the status, whose answer it is when not
// the expected one, and how it ended when it did not end well.
func (r *reply) short(want string) string {
	if r.status == 0 {
		return r.end
	}
	s := strconv.Itoa(r.status)
	if r.id != "" && r.id != want {
		s += "[" + r.id + "]"
	}
	if !r.complete {
		s += "~" + r.end
	} else if r.closeEnd {
		s += "~eof"
	}
	return s
}

// classify names how a read ended.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error: " + err.Error()
}

// readReply reads the answer to s, skipping 1xx answers unless
// stopAtInterim. Nothing is refused: anomalies are recorded for invariant 2
// and the body is framed as a lenient client of s's HTTP version would.
func (cc *clientConn) readReply(s sent, deadline time.Time, stopAtInterim bool) *reply {
	_ = cc.c.SetReadDeadline(deadline)
	r := &reply{}
	w := &wireReader{br: cc.br}
	for i := 0; ; i++ {
		h, err := w.head()
		if err != nil {
			r.end = classify(err)
			return r
		}
		proto, code, ok := parseStatusLine(h.start)
		if !ok {
			r.end = fmt.Sprintf("garbled: %q", truncate(h.start))
			return r
		}
		r.proto = proto
		r.anomalies = append(r.anomalies, h.anomalies...)
		if code >= 100 && code < 200 && code != 101 {
			r.interim = append(r.interim, code)
			if stopAtInterim || i == 10 {
				r.status = code
				r.complete = true
				return r
			}
			continue
		}
		r.status = code
		lintFraming(h, false)
		for _, a := range h.anomalies {
			if !contains(r.anomalies, a) {
				r.anomalies = append(r.anomalies, a)
			}
		}
		r.id = h.get("X-Resp-Id")
		r.connClose = h.hasToken("Connection", "close") || (proto == "HTTP/1.0" && !h.hasToken("Connection", "keep-alive"))
		if s.http10 && len(h.values("Transfer-Encoding")) > 0 {
			// RFC 9112 section 6.1: an HTTP/1.0 client knows no transfer
			// codings, so it reads the chunks as the body itself.
			r.anomalies = append(r.anomalies, "Transfer-Encoding in an answer to an HTTP/1.0 request")
			h = &wireHead{fields: withoutField(h.fields, "Transfer-Encoding")}
		}
		r.readBody(w, h, s.method)
		return r
	}
}

func (r *reply) readBody(w *wireReader, h *wireHead, method string) {
	const keep = 4 << 10
	var body []byte
	var err error
	chunked, n, hasLength := bodyFraming(h)
	switch {
	case method == "HEAD" || r.status == 101 || r.status == 204 || r.status == 304 ||
		(method == "CONNECT" && r.status/100 == 2):
		// RFC 9112 section 6.3, rules 1 and 2: no body, whatever the head says.
	case chunked:
		body, err = w.chunked(h, keep)
	case hasLength:
		body, err = w.readN(n, keep)
	default:
		r.closeEnd = true
		body, err = w.readN(1<<40, keep)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// A clean close is how this body ends.
			err = nil
		}
	}
	r.complete = err == nil
	r.end = classify(err)
	if !r.complete && strings.HasPrefix(r.end, "error: ") {
		r.end = "bad body"
	}
	if rest, ok := strings.CutPrefix(string(body), "id="); ok {
		r.bodyID, _, _ = strings.Cut(rest, "\n")
	}
}

func withoutField(fields []field, name string) []field {
	var out []field
	for _, f := range fields {
		if !strings.EqualFold(f.name, name) {
			out = append(out, f)
		}
	}
	return out
}

func parseStatusLine(s string) (proto string, code int, ok bool) {
	if len(s) < 12 || !strings.HasPrefix(s, "HTTP/1.") || s[8] != ' ' {
		return "", 0, false
	}
	code, err := strconv.Atoi(s[9:12])
	if err != nil || code < 100 || code > 999 || (len(s) > 12 && s[12] != ' ') {
		return "", 0, false
	}
	return s[:8], code, true
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// get is a well-formed request for id, the one follow-ups and readiness
// checks send.
func get(id string) []byte {
	return []byte("GET /r/" + id + " HTTP/1.1\r\nHost: h\r\nX-Req-Id: " + id + "\r\n\r\n")
}

// roundTrip sends one well-formed request on a fresh connection.
func roundTrip(addr, id string, within time.Duration) *reply {
	cc, err := dial(addr)
	if err != nil {
		return &reply{end: classify(err)}
	}
	defer cc.close()
	if err := cc.write(get(id)); err != nil {
		return &reply{end: classify(err)}
	}
	return cc.readReply(sent{id: id, method: "GET"}, time.Now().Add(within), false)
}
