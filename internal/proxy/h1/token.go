// Package h1 is the HTTP/1.1 wire codec that `zerodown lb` uses on both
// sides: the request heads its server reads from clients, the response heads
// and chunked bodies its upstream client reads from targets, and the rules
// that decide how a message is framed (RFC 9112, RFC 9110). Keeping the
// rules in one package lets them be fuzzed and tested alone, and means the
// server and the client cannot disagree about where a message ends — the
// disagreement request smuggling and response desynchronisation live on.
package h1

import (
	"net/textproto"
	"strings"
)

// tokenBytes marks tchar (RFC 9110 section 5.6.2): the bytes of methods and
// header names. A table keeps the check cheap on every header byte.
var tokenBytes = func() (t [256]bool) {
	for b := '!'; b < 0x7f; b++ {
		t[b] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, b)
	}
	return t
}()

// IsTokenByte reports whether b may appear in a token.
func IsTokenByte(b byte) bool { return tokenBytes[b] }

// ValidToken reports whether s is a non-empty token.
func ValidToken[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenBytes[s[i]] {
			return false
		}
	}
	return true
}

// badValueBytes marks the bytes a field value may not hold: controls other
// than HTAB, and DEL (RFC 9110 section 5.5). A bare CR or a NUL in a value
// is read differently by different parsers, so it is refused, never passed.
var badValueBytes = func() (t [256]bool) {
	for b := 0; b < 0x20; b++ {
		t[b] = b != '\t'
	}
	t[0x7f] = true
	return t
}()

// ValidFieldValue reports whether v may be sent as a header value.
func ValidFieldValue[T ~string | ~[]byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if badValueBytes[v[i]] {
			return false
		}
	}
	return true
}

// hostBytes are the bytes of a Host header or :authority: reg-name,
// IP-literal and port characters of RFC 3986.
var hostBytes = func() (t [256]bool) {
	for b := 0; b < 256; b++ {
		c := byte(b)
		t[b] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0
	}
	return t
}()

// ValidHost reports whether h may be sent as a Host header. Empty is valid
// (HTTP/1.0 without Host); anything with a space, a slash or a control is
// not.
func ValidHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !hostBytes[h[i]] {
			return false
		}
	}
	return true
}

// targetBytes are the bytes a request target may hold: visible ASCII.
func validTargetByte(b byte) bool { return b > 0x20 && b < 0x7f }

// ValidRequestTarget reports whether t may be written as a request line's
// target: non-empty, visible ASCII, no space.
func ValidRequestTarget(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !validTargetByte(t[i]) {
			return false
		}
	}
	return true
}

// commonKeys interns the header names seen on nearly every message so
// canonicalising them costs no allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "User-Agent", "Cookie", "Referer",
		"Authorization", "Origin", "Expect", "Host", "Idempotency-Key", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Request-Id", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Content-Length", "Content-Type", "Date", "Server", "Connection", "Keep-Alive",
		"Transfer-Encoding", "Cache-Control", "Etag", "Last-Modified", "Location",
		"Set-Cookie", "Vary", "Expires", "Content-Encoding", "X-Version", "X-Host",
		"Access-Control-Allow-Origin", "Upgrade", "Sec-Websocket-Accept", "Trailer",
		"Proxy-Connection", "Te", "Accept-Ranges", "Age", "X-Content-Type-Options",
	} {
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	return m
}()

// CanonicalKey returns the canonical form of a header name that is already
// known to be a token.
func CanonicalKey(b []byte) string {
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

// EqualFold compares two ASCII strings without regard to case.
func EqualFold(a, b string) bool {
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

// SplitTokens splits a comma-separated header value into its elements,
// dropping empty ones and optional whitespace.
func SplitTokens(v string) []string {
	var out []string
	for len(v) > 0 {
		i := strings.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		if tok := TrimOWS(v[:i]); tok != "" {
			out = append(out, tok)
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return out
}

// HasToken reports whether the comma-separated list v holds tok.
func HasToken(v, tok string) bool {
	for len(v) > 0 {
		i := strings.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		if EqualFold(TrimOWS(v[:i]), tok) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// TrimOWS trims spaces and tabs, and nothing else: a CR is not whitespace
// here, it is an invalid byte.
func TrimOWS[T ~string | ~[]byte](s T) T {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// HopByHop reports whether a canonical header name belongs to one
// connection and is never forwarded (RFC 9110 section 7.6.1). A switch,
// not a map: it runs for every header of every message.
func HopByHop(key string) bool {
	switch key {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}
