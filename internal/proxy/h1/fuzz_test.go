package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzReadRequest: the request parser never panics, and whatever it
// accepts has exactly one framing, a valid target and Host, and header
// values another parser reads the same way.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET http://example.com/a?b=c HTTP/1.1\r\nHost: y\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &http.Request{Header: http.Header{}}
		fr, err := ReadRequest(bufio.NewReaderSize(bytes.NewReader(data), 16<<10), testLimits, req)
		if err != nil {
			return
		}
		if fr.Chunked && fr.ContentLength != -1 || !fr.Chunked && fr.ContentLength < 0 {
			t.Fatalf("framing %+v", fr)
		}
		if fr.Chunked && req.Header["Content-Length"] != nil {
			t.Fatal("both framings accepted")
		}
		if len(req.Header["Content-Length"]) > 1 || len(req.Header["Transfer-Encoding"]) > 1 {
			t.Fatal("a framing header kept twice")
		}
		if !ValidRequestTarget(req.RequestURI) || !ValidHost(req.Host) || !ValidToken(req.Method) {
			t.Fatalf("invalid request line accepted: %q %q %q", req.Method, req.RequestURI, req.Host)
		}
		for k, vv := range req.Header {
			if !ValidToken(k) {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vv {
				if !ValidFieldValue(v) || TrimOWS(v) != v {
					t.Fatalf("header value %q", v)
				}
			}
		}
	})
}

// FuzzReadResponseHead: the response parser never panics, and an accepted
// head has one framing and values safe to pass on.
func FuzzReadResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 204\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h ResponseHead
		if _, err := ReadResponseHead(bufio.NewReader(bytes.NewReader(data)), &h); err != nil {
			return
		}
		if h.Status < 100 || h.Status > 599 || h.Chunked && h.ContentLength >= 0 {
			t.Fatalf("head %+v", h)
		}
		for _, fl := range h.Fields {
			if !ValidToken(fl.Key) || !ValidFieldValue(fl.Value) {
				t.Fatalf("field %q: %q", fl.Key, fl.Value)
			}
			if h.Chunked && fl.Key == "Content-Length" {
				t.Fatal("length kept beside chunked")
			}
		}
	})
}

// FuzzChunkedReader: decoding never panics, never returns more than the
// input, and stops at the end of the body: what follows is left unread.
func FuzzChunkedReader(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\nNEXT", "0\r\nX: y\r\n\r\n", "5;e=1\r\nhello\r\n0\r\n\r\n", "ffffffffffffffff\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		cr := NewChunkedReader(br)
		got, err := io.ReadAll(io.LimitReader(cr, int64(len(data))+1))
		if len(got) > len(data) {
			t.Fatalf("decoded %d bytes from %d", len(got), len(data))
		}
		if err == nil && cr.Done() {
			rest, _ := io.ReadAll(br)
			if !bytes.HasSuffix(data, rest) {
				t.Fatal("read past the end of the body")
			}
		}
	})
}
