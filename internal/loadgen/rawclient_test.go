package loadgen

import (
	"bufio"
	"strings"
	"testing"
)

// The raw client reads each kind of framing to the end of the answer, and
// knows when the connection may carry the next request.
func TestRawClientParsesAnswers(t *testing.T) {
	t.Parallel()
	g, err := New(Config{Targets: []Target{
		{URL: "http://127.0.0.1:1/", ExpectBody: "hello"},
		{URL: "http://127.0.0.1:1/", Method: "HEAD"},
	}, Rate: 1})
	if err != nil {
		t.Fatal(err)
	}
	const next = "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
	tests := []struct {
		name    string
		lane    int
		answer  string
		code    int
		keep    bool
		version string
		match   bool
		err     bool
	}{
		{"content-length", 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Version: v1\r\n\r\nhello", 200, true, "v1", true, false},
		{"chunked with trailers", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-version:  v2 \r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n", 200, true, "v2", true, false},
		{"100 continue first", 0, "HTTP/1.1 100 Continue\r\nX-Version: early\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true, "", true, false},
		{"connection close", 0, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", 200, false, "", true, false},
		{"http/1.0 keep-alive", 0, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello", 200, true, "", true, false},
		{"until close", 0, "HTTP/1.1 200 OK\r\n\r\nsay hello", 200, false, "", true, false},
		{"no content", 0, "HTTP/1.1 204 No Content\r\n\r\n", 204, true, "", false, false},
		{"head", 1, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 200, true, "", false, false},
		{"bare LF", 0, "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", 200, true, "", true, false},
		{"wrong body", 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhullo", 200, true, "", false, false},
		{"conflicting lengths", 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 0, false, "", false, true},
		{"bad chunk", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 200, false, "", false, true},
		{"bad status", 0, "HTTP/1.1 2x0 OK\r\n\r\n", 0, false, "", false, true},
		{"not http", 0, "SSH-2.0-OpenSSH\r\n\r\n", 0, false, "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &worker{g: g, buf: make([]byte, 4)}
			r := &result{}
			br := bufio.NewReader(strings.NewReader(tc.answer + next))
			keep, _, _, err := w.readRaw(br, g.lanes[tc.lane], r)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if r.code != tc.code || keep != tc.keep || r.version != tc.version {
				t.Errorf("code %d keep %v version %q, want %d %v %q", r.code, keep, r.version, tc.code, tc.keep, tc.version)
			}
			if tc.lane == 0 && r.code == 200 && w.m.ok() != tc.match {
				t.Errorf("body check %v, want %v", w.m.ok(), tc.match)
			}
			if tc.keep {
				// The next answer on the connection starts right after.
				if _, _, _, err := w.readRaw(br, g.lanes[0], &result{}); err != nil {
					t.Errorf("next answer: %v", err)
				}
			}
		})
	}
}
