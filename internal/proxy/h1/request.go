package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Limits bound what one request head may cost.
type Limits struct {
	// MaxHeaderBytes bounds the request line and headers together.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header lines.
	MaxHeaders int
}

// Default limits, as HAProxy's: 64 KiB of head and about a hundred headers.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxHeaders     = 100
)

// HeadError is a request head the server refuses, with the status to answer.
type HeadError struct {
	Status int
	Msg    string
}

func (e *HeadError) Error() string { return e.Msg }

func badHead(status int, format string, args ...any) error {
	return &HeadError{status, fmt.Sprintf(format, args...)}
}

// Framing is how a request's body is delimited.
type Framing struct {
	// ContentLength is the body's length; -1 when chunked.
	ContentLength  int64
	Chunked        bool
	ExpectContinue bool
}

var methods = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"} {
		m[k] = k
	}
	return m
}()

// ReadRequest reads a request head from br into req, whose Header map the
// caller provides empty. Host is moved out of the map into req.Host, as
// net/http does. Whatever is refused is a *HeadError carrying the status
// to answer with; I/O errors are returned as they are.
//
// The rules are the strict side of RFC 9112: exactly one Host on HTTP/1.1,
// Content-Length as plain digits (repeated only with the same value),
// Transfer-Encoding only as a single "chunked" and never beside a
// Content-Length, no obs-fold, no control byte in a value.
func ReadRequest(br *bufio.Reader, lim Limits, req *http.Request) (Framing, error) {
	fr := Framing{ContentLength: 0}
	budget := lim.MaxHeaderBytes
	line, err := readHeadLine(br, &budget)
	if err != nil {
		return fr, err
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1 {
		return fr, badHead(http.StatusBadRequest, "malformed request line")
	}
	method, uri, proto := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if !ValidToken(method) {
		return fr, badHead(http.StatusBadRequest, "malformed method")
	}
	var minor int
	switch string(proto) {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
		minor = 0
	default:
		return fr, badHead(http.StatusHTTPVersionNotSupported, "unsupported protocol")
	}
	target := string(uri)
	if !ValidRequestTarget(target) {
		// A target with a space would reach the backend as a different
		// request line than the one parsed here (RFC 9112 section 3.2).
		return fr, badHead(http.StatusBadRequest, "malformed request target")
	}
	if m, ok := methods[string(method)]; ok {
		req.Method = m
	} else {
		req.Method = string(method)
	}
	req.Proto = string(proto)
	req.ProtoMajor, req.ProtoMinor = 1, minor
	req.RequestURI = target
	if req.URL, err = url.ParseRequestURI(target); err != nil || !targetForm(req.Method, target, req.URL) {
		return fr, badHead(http.StatusBadRequest, "malformed request target")
	}
	h := req.Header
	hasLength, hostSeen, teSeen := false, false, false
	for n := 0; ; n++ {
		line, err := readHeadLine(br, &budget)
		if err != nil {
			return fr, err
		}
		if len(line) == 0 {
			break
		}
		if n >= lim.MaxHeaders {
			return fr, badHead(http.StatusRequestHeaderFieldsTooLarge, "more than %d header lines", lim.MaxHeaders)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return fr, badHead(http.StatusBadRequest, "malformed header line")
		}
		if !ValidToken(line[:colon]) {
			return fr, badHead(http.StatusBadRequest, "malformed header name")
		}
		raw := TrimOWS(line[colon+1:])
		if !ValidFieldValue(raw) {
			return fr, badHead(http.StatusBadRequest, "invalid character in header value")
		}
		key := CanonicalKey(line[:colon])
		value := string(raw)
		switch key {
		case "Host":
			if hostSeen {
				return fr, badHead(http.StatusBadRequest, "more than one Host header")
			}
			if !ValidHost(value) {
				return fr, badHead(http.StatusBadRequest, "malformed Host header")
			}
			hostSeen = true
			req.Host = value
			continue
		case "Content-Length":
			n, ok := ParseContentLength(value)
			if !ok || (hasLength && n != fr.ContentLength) {
				return fr, badHead(http.StatusBadRequest, "bad Content-Length")
			}
			if hasLength {
				continue // the same value again: keep one
			}
			fr.ContentLength, hasLength = n, true
		case "Transfer-Encoding":
			if teSeen || !EqualFold(value, "chunked") {
				return fr, badHead(http.StatusNotImplemented, "unsupported Transfer-Encoding")
			}
			teSeen = true
		}
		h[key] = append(h[key], value)
	}
	if minor == 1 && !hostSeen {
		return fr, badHead(http.StatusBadRequest, "missing Host header")
	}
	if teSeen {
		if hasLength {
			// Both framings at once is the classic request-smuggling vector.
			return fr, badHead(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
		}
		if minor == 0 {
			// HTTP/1.0 has no chunked coding; a peer that sends it is
			// confused or hostile (RFC 9112 section 6.1).
			return fr, badHead(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
		}
		fr.Chunked, fr.ContentLength = true, -1
	}
	if req.URL.Host != "" {
		// Absolute form: the target's authority wins over Host (RFC 9112
		// section 3.2.2).
		if !ValidHost(req.URL.Host) {
			return fr, badHead(http.StatusBadRequest, "malformed request target")
		}
		req.Host = req.URL.Host
	}
	if fr.ContentLength != 0 && minor == 1 {
		if v := h["Expect"]; len(v) == 1 && EqualFold(v[0], "100-continue") {
			fr.ExpectContinue = true
		}
	}
	req.ContentLength = fr.ContentLength
	if fr.Chunked {
		req.TransferEncoding = chunkedCoding
	}
	req.Close = WantsClose(minor, h["Connection"])
	return fr, nil
}

var chunkedCoding = []string{"chunked"}

func readHeadLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := readLine(br, budget)
	if err == ErrLineTooLong {
		return nil, badHead(http.StatusRequestHeaderFieldsTooLarge, "request head too large")
	}
	return line, err
}

// WantsClose reports whether a message's Connection header values ask to
// close the connection after it; HTTP/1.0 closes unless asked to keep it.
func WantsClose(minor int, connection []string) bool {
	closeTok, keepTok := false, false
	for _, v := range connection {
		if HasToken(v, "close") {
			closeTok = true
		}
		if HasToken(v, "keep-alive") {
			keepTok = true
		}
	}
	if minor == 0 {
		return closeTok || !keepTok
	}
	return closeTok
}

// targetForm reports whether target has a form RFC 9112 section 3.2 allows
// for method: origin form ("/path"), absolute form ("http://host/path"),
// "*" for OPTIONS, and authority form ("host:port") for CONNECT only.
// Anything else would be read one way here and another way by the target.
func targetForm(method, target string, u *url.URL) bool {
	switch {
	case target[0] == '/':
		return true
	case target == "*":
		return method == http.MethodOptions
	case method == http.MethodConnect:
		return u.Opaque != "" || u.Host != ""
	}
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == "" &&
		strings.HasPrefix(target[len(u.Scheme):], "://")
}
