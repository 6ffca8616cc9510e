package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

var testLimits = Limits{MaxHeaderBytes: DefaultMaxHeaderBytes, MaxHeaders: DefaultMaxHeaders}

func readReq(raw string) (*http.Request, Framing, error) {
	req := &http.Request{Header: http.Header{}}
	fr, err := ReadRequest(bufio.NewReaderSize(strings.NewReader(raw), 16<<10), testLimits, req)
	return req, fr, err
}

func TestReadRequest(t *testing.T) {
	cases := []struct {
		name, raw string
		status    int // 0: accepted
		length    int64
		chunked   bool
		host      string
	}{
		{"get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0, false, "a"},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 0, 0, false, "a"},
		{"length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", 0, 12, false, "a"},
		{"same length twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 0, 3, false, "a"},
		{"chunked any case", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", 0, -1, true, "a"},
		{"absolute form wins over Host", "GET http://b:8080/x HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0, false, "b:8080"},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, 0, false, ""},
		{"signed length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400, 0, false, ""},
		{"negative length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, 0, false, ""},
		{"hex length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n", 400, 0, false, ""},
		{"length with space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400, 0, false, ""},
		{"huge length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, 0, false, ""},
		{"two lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400, 0, false, ""},
		{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, false, ""},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, 0, false, ""},
		{"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, 0, false, ""},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, 0, false, ""},
		{"TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, 0, false, ""},
		{"TE with space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400, 0, false, ""},
		{"TE obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 501, 0, false, ""},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, false, ""},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, false, ""},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, 0, false, ""},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, 0, false, ""},
		{"Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, 0, false, ""},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, 0, false, ""},
		{"bare CR in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, 0, false, ""},
		{"CR at the end of a value", "GET / HTTP/1.1\r\nHost: a\r\nX: ab\r\r\n\r\n", 400, 0, false, ""},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, false, ""},
		{"control in target", "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, false, ""},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, false, ""},
		{"authority form without CONNECT", "GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, false, ""},
		{"star without OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, false, ""},
		{"other scheme", "GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, false, ""},
		{"scheme without slashes", "GET http:x HTTP/1.1\r\nHost: h\r\n\r\n", 400, 0, false, ""},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, 0, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, fr, err := readReq(c.raw)
			if c.status != 0 {
				var he *HeadError
				if !errors.As(err, &he) || he.Status != c.status {
					t.Fatalf("got %v, want status %d", err, c.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fr.ContentLength != c.length || fr.Chunked != c.chunked || req.Host != c.host {
				t.Fatalf("framing %+v host %q", fr, req.Host)
			}
			if _, ok := req.Header["Host"]; ok {
				t.Fatal("Host left in the header map")
			}
			if n := len(req.Header["Content-Length"]); n > 1 {
				t.Fatalf("%d Content-Length values kept", n)
			}
		})
	}
}

func TestReadRequestLimits(t *testing.T) {
	many := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 100) + "\r\n"
	if _, _, err := readReq(many); err == nil {
		t.Fatal("101 header lines accepted")
	}
	big := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: "+strings.Repeat("y", 10000)+"\r\n", 7) + "\r\n"
	_, _, err := readReq(big)
	var he *HeadError
	if !errors.As(err, &he) || he.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("70 KB head: %v", err)
	}
}

func readResp(raw string) (*ResponseHead, error) {
	var h ResponseHead
	_, err := ReadResponseHead(bufio.NewReader(strings.NewReader(raw)), &h)
	return &h, err
}

func TestReadResponseHead(t *testing.T) {
	cases := []struct {
		name, raw string
		ok        bool
		length    int64
		chunked   bool
		close     bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 5, false, false},
		{"no reason", "HTTP/1.1 204\r\n\r\n", true, -1, false, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, -1, true, false},
		{"length beside chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true, -1, true, true},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", true, 5, false, true},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n", true, 5, false, false},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false, 0, false, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, 0, false, false},
		{"NUL", "HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n", false, 0, false, false},
		{"bare CR", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", false, 0, false, false},
		{"bad name", "HTTP/1.1 200 OK\r\nX Y: a\r\n\r\n", false, 0, false, false},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, 0, false, false},
		{"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, false, false},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", false, 0, false, false},
		{"status 99", "HTTP/1.1 099 OK\r\n\r\n", false, 0, false, false},
		{"status 1000", "HTTP/1.1 1000 OK\r\n\r\n", false, 0, false, false},
		{"control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", false, 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := readResp(c.raw)
			if !c.ok {
				var me *MalformedError
				if !errors.As(err, &me) {
					t.Fatalf("got %v, want a malformed head", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.ContentLength != c.length || h.Chunked != c.chunked || h.Close != c.close {
				t.Fatalf("got length %d chunked %v close %v", h.ContentLength, h.Chunked, h.Close)
			}
			for _, f := range h.Fields {
				if h.Chunked && f.Key == "Content-Length" {
					t.Fatal("Content-Length kept beside chunked")
				}
			}
		})
	}
}

func TestChunkedReader(t *testing.T) {
	cases := []struct {
		name, raw, want string
		ok              bool
	}{
		{"plain", "5\r\nhello\r\n0\r\n\r\n", "hello", true},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789", true},
		{"extension", "5;name=val\r\nhello\r\n0\r\n\r\n", "hello", true},
		{"space before extension", "5 ;x\r\nhello\r\n0\r\n\r\n", "hello", true},
		{"trailers", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "hello", true},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", "", false},
		{"plus sign", "+5\r\nhello\r\n0\r\n\r\n", "", false},
		{"minus", "-1\r\nhello\r\n0\r\n\r\n", "", false},
		{"trailing space", "5 \r\nhello\r\n0\r\n\r\n", "", false},
		{"leading space", " 5\r\nhello\r\n0\r\n\r\n", "", false},
		{"empty size", "\r\nhello\r\n0\r\n\r\n", "", false},
		{"too large", "10000000000000000\r\n", "", false},
		{"missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", "", false},
		{"truncated", "5\r\nhel", "", false},
		{"bad trailer", "0\r\nnot a trailer\r\n\r\n", "", false},
		{"control in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := io.ReadAll(NewChunkedReader(bufio.NewReader(strings.NewReader(c.raw))))
			if c.ok != (err == nil) {
				t.Fatalf("got %q, %v", got, err)
			}
			if c.ok && string(got) != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestParseContentLength(t *testing.T) {
	for v, want := range map[string]int64{"0": 0, "7": 7, "000123": 123, "999999999999999999": 999999999999999999} {
		if n, ok := ParseContentLength(v); !ok || n != want {
			t.Errorf("%q: got %d %v", v, n, ok)
		}
	}
	for _, v := range []string{"", "+1", "-1", " 1", "1 ", "1,1", "0x1", "1e3", "1000000000000000000"} {
		if _, ok := ParseContentLength(v); ok {
			t.Errorf("%q accepted", v)
		}
	}
}
