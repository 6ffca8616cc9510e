package proxy

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/zerodown/zerodown/internal/proxy/h1"
)

// checkForeignRequest validates a request that net/http parsed (HTTPS
// listeners, HTTP/2 above all) before any of it is written upstream: an
// HTTP/2 :method, :path or :authority is not checked against HTTP/1.1's
// grammar by anyone else, and would reach the target as a broken request
// line or a second Host. Requests from the own HTTP/1.1 server were checked
// by h1.ReadRequest already. It returns what is wrong, or "".
func checkForeignRequest(r *http.Request) string {
	if !h1.ValidToken(r.Method) {
		return "malformed method"
	}
	if !h1.ValidHost(r.Host) {
		return "malformed authority"
	}
	if hv, ok := r.Header["Host"]; ok && (len(hv) != 1 || !h1.EqualFold(hv[0], r.Host)) {
		// RFC 9113 section 8.3.1: a Host that names another entity than
		// :authority makes the request malformed.
		return "Host header differs from the request's authority"
	}
	for k, vv := range r.Header {
		if !h1.ValidToken(k) {
			return "malformed header name"
		}
		for _, v := range vv {
			if !h1.ValidFieldValue(v) {
				return "invalid character in header value"
			}
		}
	}
	if target := upstreamTarget(r); !h1.ValidRequestTarget(target) || (target[0] != '/' && target != "*") {
		return "malformed request target"
	}
	return ""
}

// upstreamTarget is the request target written to the target: the client's
// origin form as received, or the path and query of an absolute form.
func upstreamTarget(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" || (uri[0] != '/' && uri != "*") {
		uri = r.URL.RequestURI()
	}
	return uri
}

// bodyMethods are those whose empty body is still framed with a length, as
// clients do; others send no framing header for no body.
func framesEmptyBody(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

// writeRequestHead writes the request line and headers toward the target.
// The framing is the proxy's own: Host, Content-Length and
// Transfer-Encoding are written once from what was parsed, never copied
// from the client, so the target sees exactly one framing whatever the
// client sent. Hop-by-hop headers and those named in Connection are left
// out; X-Forwarded-For and X-Forwarded-Proto are added.
func writeRequestHead(c *upConn, r *http.Request, body *reqBody, https, upgrade bool) error {
	bw := c.bw
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(upstreamTarget(r))
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	var dropped []string
	if conn := r.Header["Connection"]; len(conn) > 0 {
		for _, v := range conn {
			dropped = append(dropped, h1.SplitTokens(v)...)
		}
	}
	for k, vv := range r.Header {
		if h1.HopByHop(k) || skipRequestHeader(k) {
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
	case framesEmptyBody(r) || r.Header["Content-Length"] != nil:
		bw.WriteString("Content-Length: 0\r\n")
	}
	_, err = bw.WriteString("\r\n")
	return err
}

// skipRequestHeader reports the headers writeRequestHead writes itself.
func skipRequestHeader(key string) bool {
	switch key {
	case "Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto":
		return true
	}
	return false
}

func listed(tokens []string, key string) bool {
	for _, t := range tokens {
		if h1.EqualFold(t, key) {
			return true
		}
	}
	return false
}

func isWebSocket(r *http.Request) bool {
	if r.ProtoMajor != 1 || !h1.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header["Connection"] {
		if h1.HasToken(v, "upgrade") {
			return true
		}
	}
	return false
}

// retryable reports whether a request may be sent again after it was
// written to a target that then failed without answering: idempotent
// methods (RFC 9110 section 9.2.2), or a request carrying an idempotency
// key, which promises the application deduplicates it. Anything else may
// have been acted on and is never replayed.
func retryable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

// hostMatches compares a Host header, port and case aside, with a route's
// host.
func hostMatches(hostHeader, want string) bool {
	if i := strings.LastIndexByte(hostHeader, ':'); i >= 0 && !strings.HasSuffix(hostHeader, "]") {
		hostHeader = hostHeader[:i]
	}
	return h1.EqualFold(hostHeader, want)
}
