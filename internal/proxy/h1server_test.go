package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proxy/h1"
)

// rawExchange sends raw bytes on a fresh connection and returns everything
// the proxy answers until it closes the connection or the deadline passes.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestH1ServerProtocol(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	addr := hostPort(url)
	cases := []struct {
		name, raw string
		want      []string // substrings of the answer, in order
		notWant   string
	}{
		{"HTTP/1.0 closes", "GET / HTTP/1.0\r\n\r\n", []string{"HTTP/1.1 200 OK", "Connection: close", "hello from a"}, ""},
		{"Connection close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []string{"200 OK", "hello from a"}, ""},
		{"pipelined", "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nping",
			[]string{"hello from a", "HTTP/1.1 200 OK", "ping"}, ""},
		{"chunked request body", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			[]string{"200 OK", "abcde"}, ""},
		{"expect continue", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhi",
			[]string{"HTTP/1.1 100 Continue", "200 OK", "hi"}, ""},
		{"HEAD has no body", "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []string{"200 OK", "Content-Length: 12"}, "hello from a"},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", []string{"400 Bad Request", "missing Host"}, ""},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []string{"400 Bad Request", "more than one Host"}, ""},
		{"smuggling", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"400 Bad Request", "both Content-Length and Transfer-Encoding"}, ""},
		{"bad length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", []string{"400 Bad Request", "bad Content-Length"}, ""},
		{"gzip transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", []string{"501 Not Implemented"}, ""},
		{"bad request line", "GARBAGE\r\n\r\n", []string{"400 Bad Request", "malformed request line"}, ""},
		{"bad protocol", "GET / HTTP/2.0\r\n\r\n", []string{"505 HTTP Version Not Supported"}, ""},
		{"space in target", "GET /a HTTP/1.0 HTTP/1.1\r\nHost: x\r\n\r\n", []string{"400 Bad Request", "malformed request target"}, ""},
		{"bad header", "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", []string{"400 Bad Request", "malformed header line"}, ""},
		{"control char", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", []string{"400 Bad Request", "invalid character"}, ""},
		{"huge header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", []string{"431 Request Header Fields Too Large"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := rawExchange(t, addr, c.raw)
			rest := out
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			if c.notWant != "" && strings.Contains(out, c.notWant) {
				t.Fatalf("answer has %q:\n%s", c.notWant, out)
			}
		})
	}
}

func TestH1ServerIdleTimeout(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	cfg.Client.IdleTimeout = 100_000_000
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	c, err := net.Dial("tcp", hostPort(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection not closed by the proxy: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("idle close took %s", took)
	}
}

// TestClientResetCancelsUpstream: a client that resets its connection
// during a long request ends the upstream request too, so the target's
// in-flight count does not wait for an answer nobody reads.
func TestClientResetCancelsUpstream(t *testing.T) {
	var canceled atomic.Bool
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		select {
		case <-time.After(20 * time.Second):
		case <-r.Context().Done():
			canceled.Store(true)
		}
	}))
	t.Cleanup(a.Close)
	cfg := testConfig(t, hostPort(a.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	c, err := net.Dial("tcp", hostPort(url))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	tg := srv.pool("app").lookup(hostPort(a.URL))
	eventually(t, 2*time.Second, "request in flight", func() bool { return tg.inFlight.Load() == 1 })
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
	eventually(t, 5*time.Second, "upstream request canceled", canceled.Load)
	eventually(t, 2*time.Second, "in flight back to 0", func() bool { return tg.inFlight.Load() == 0 })
}

// TestHalfCloseGetsSlowAnswer: a client that closes its sending side after
// the request (shutdown(SHUT_WR), as `nc -N` and some batch clients do)
// still reads an answer that takes longer than the watchdog's first look.
func TestHalfCloseGetsSlowAnswer(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		select {
		case <-time.After(time.Second):
			io.WriteString(w, "slow answer")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(a.Close)
	cfg := testConfig(t, hostPort(a.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	c, err := net.Dial("tcp", hostPort(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("half-closed client got no answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(body) != "slow answer" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, err)
	}
}

// FuzzH1ReadRequest feeds arbitrary bytes to the request parser: it must
// never panic, and a parsed request must be self-consistent.
func FuzzH1ReadRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET http://example.com/a?b=c HTTP/1.1\r\nHost: y\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	s := newH1Server(http.NotFoundHandler(), nil, time.Second, time.Second, h1.Limits{MaxHeaderBytes: 64 << 10, MaxHeaders: 100}, nil, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		defer client.Close()
		defer server.Close()
		c := s.newConn(server)
		c.br = bufio.NewReaderSize(strings.NewReader(string(data)), 16<<10)
		req, err := c.readRequest()
		if err != nil {
			return
		}
		if req.Method == "" || req.URL == nil || req.Context() == nil {
			t.Fatalf("incomplete request: %+v", req)
		}
		if req.ContentLength < -1 {
			t.Fatalf("content length %d", req.ContentLength)
		}
		if req.ContentLength >= 0 && len(req.TransferEncoding) > 0 {
			t.Fatal("both framings accepted")
		}
		if _, ok := req.Header["Host"]; ok {
			t.Fatal("Host must be moved out of the header map, as net/http does")
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
	})
}
