package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
)

// Limits on a response head from a target. Backends send more headers than
// clients do (cookies, caching, tracing), so the count is looser.
const (
	MaxResponseHeadBytes = 64 << 10
	MaxResponseHeaders   = 256
)

// Field is one header line as received.
type Field struct{ Key, Value string }

// ResponseHead is a parsed status line and header block, reused for every
// response on one upstream connection.
type ResponseHead struct {
	Status     int
	StatusLine string // as received, for 101 answers relayed verbatim
	Proto10    bool
	Fields     []Field
	// ContentLength is -1 when absent or when the body is chunked.
	ContentLength int64
	Chunked       bool
	// Close is set when the connection may not carry another exchange:
	// Connection: close, HTTP/1.0 without keep-alive, or both framings
	// sent at once.
	Close bool
	// ConnTokens are other header names listed in Connection, which are
	// hop-by-hop and dropped.
	ConnTokens []string
}

// ReadResponseHead reads a status line and headers into h. gotBytes tells
// whether any byte of the response arrived, which decides whether a failed
// exchange may be retried. A head that breaks the rules — a length that is
// not plain digits, two different lengths, a transfer coding other than
// chunked, a header name that is not a token, a control byte in a value —
// is a *MalformedError: the proxy answers 502 rather than pass it on.
func ReadResponseHead(br *bufio.Reader, h *ResponseHead) (gotBytes bool, err error) {
	h.Fields = h.Fields[:0]
	h.ConnTokens = h.ConnTokens[:0]
	h.ContentLength = -1
	h.Chunked, h.Close, h.Proto10 = false, false, false
	h.StatusLine = ""
	budget := MaxResponseHeadBytes
	line, err := readLine(br, &budget)
	if err != nil {
		if err == ErrLineTooLong {
			return true, malformed("status line too long")
		}
		return len(line) > 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return true, malformed("bad status line %s", quote(line))
	}
	h.Proto10 = line[7] == '0'
	code, ok := parseStatus(line[9:12])
	if !ok || (len(line) > 12 && line[12] != ' ') || !ValidFieldValue(line[12:]) {
		return true, malformed("bad status line %s", quote(line))
	}
	h.Status = code
	if code == http.StatusSwitchingProtocols {
		h.StatusLine = string(line)
	}
	keepAlive, teSeen := false, false
	for n := 0; ; n++ {
		line, err = readLine(br, &budget)
		if err != nil {
			if err == ErrLineTooLong {
				return true, malformed("response head too large")
			}
			return true, NoEOF(err)
		}
		if len(line) == 0 {
			break
		}
		if n >= MaxResponseHeaders {
			return true, malformed("more than %d header lines", MaxResponseHeaders)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !ValidToken(line[:colon]) {
			return true, malformed("bad header line %s", quote(line))
		}
		raw := TrimOWS(line[colon+1:])
		if !ValidFieldValue(raw) {
			return true, malformed("invalid character in header %s", quote(line[:colon]))
		}
		key := CanonicalKey(line[:colon])
		value := string(raw)
		switch key {
		case "Content-Length":
			n, ok := ParseContentLength(value)
			if !ok || (h.ContentLength >= 0 && h.ContentLength != n) {
				return true, malformed("bad Content-Length %s", quote(raw))
			}
			if h.ContentLength >= 0 {
				continue // the same value again: keep one
			}
			h.ContentLength = n
		case "Transfer-Encoding":
			if teSeen || !EqualFold(value, "chunked") {
				return true, malformed("unsupported Transfer-Encoding %s", quote(raw))
			}
			teSeen = true
			continue
		case "Connection":
			for _, tok := range SplitTokens(value) {
				switch {
				case EqualFold(tok, "close"):
					h.Close = true
				case EqualFold(tok, "keep-alive"):
					keepAlive = true
				case EqualFold(tok, "upgrade"):
				default:
					h.ConnTokens = append(h.ConnTokens, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
		h.Fields = append(h.Fields, Field{key, value})
	}
	if teSeen {
		h.Chunked = true
		if h.ContentLength >= 0 {
			// A length beside chunked framing is ignored and not passed on
			// (RFC 9112 section 6.3); a sender that does this is not trusted
			// with the connection afterwards.
			h.ContentLength = -1
			h.Close = true
			kept := h.Fields[:0]
			for _, f := range h.Fields {
				if f.Key != "Content-Length" {
					kept = append(kept, f)
				}
			}
			h.Fields = kept
		}
	}
	if h.Proto10 && !keepAlive {
		h.Close = true
	}
	return true, nil
}

func parseStatus(b []byte) (int, bool) {
	if b[0] < '1' || b[0] > '5' || b[1] < '0' || b[1] > '9' || b[2] < '0' || b[2] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0'), true
}
