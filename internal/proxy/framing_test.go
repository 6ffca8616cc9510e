package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startScripted starts a proxy in front of a scripted backend and waits
// until the backend is healthy.
func startScripted(t *testing.T, respond func(rawRequest) script) (*scriptedBackend, *Server, string) {
	t.Helper()
	b := newScriptedBackend(t, respond)
	cfg := testConfig(t, b.addr())
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", b.addr()) == "healthy" })
	return b, srv, hostPort(url)
}

// exchangeOn sends raw on c and reads one answer; method tells the reader
// whether a body follows.
func exchangeOn(c net.Conn, br *bufio.Reader, raw, method string) (int, string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body), err
}

func exchange1(t *testing.T, addr, raw, method string) (int, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return exchangeOn(c, bufio.NewReader(c), raw, method)
}

// TestTargetSeesOneFraming: whatever framing headers the client sends, the
// target gets one Host, one Content-Length or one chunked coding, never
// both, and never a length that is not plain digits. nginx and Node refuse
// a request with Content-Length twice, which is how this was found.
func TestTargetSeesOneFraming(t *testing.T) {
	b, _, addr := startScripted(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	cases := []struct {
		name, raw  string
		wantStatus int
		wantCL     string // "" for none, "chunked" for chunked
		wantBody   string
	}{
		{"length", "POST /?id=len HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 200, "5", "hello"},
		{"same length twice", "POST /?id=twice HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200, "5", "hello"},
		{"chunked", "POST /?id=chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, "5", "hello"},
		{"empty post", "POST /?id=empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 200, "0", ""},
		{"absolute form", "GET http://abs.example/?id=abs HTTP/1.1\r\nHost: other\r\n\r\n", 200, "", ""},
		{"signed length", "POST /?id=signed HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400, "", ""},
		{"length list", "POST /?id=list HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400, "", ""},
		{"two lengths", "POST /?id=two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, "", ""},
		{"length and chunked", "POST /?id=clte HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", ""},
		{"chunked twice", "POST /?id=tete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "", ""},
		{"obs-fold", "GET /?id=fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, "", ""},
		{"bare CR in value", "GET /?id=cr HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, "", ""},
		{"NUL in value", "GET /?id=nul HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "", ""},
		{"space in host", "GET /?id=hostsp HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "", ""},
		{"hex chunk size", "POST /?id=hex HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400, "", ""},
		{"signed chunk size", "POST /?id=plus HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400, "", ""},
		{"HTTP/1.0 chunked", "POST /?id=ten HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, err := exchange1(t, addr, c.raw, "POST")
			if err != nil {
				t.Fatal(err)
			}
			if status != c.wantStatus {
				t.Fatalf("status %d, want %d", status, c.wantStatus)
			}
			id := c.raw[strings.Index(c.raw, "id=")+3:]
			id = id[:strings.IndexAny(id, " &")]
			var got *rawRequest
			for _, r := range b.requests() {
				if idOf(r) == id {
					got = &r
				}
			}
			if c.wantStatus != 200 {
				if got != nil {
					t.Fatalf("a refused request reached the target:\n%s", got.head)
				}
				return
			}
			if got == nil {
				t.Fatal("the target never saw the request")
			}
			cl, te, host := got.header("Content-Length"), got.header("Transfer-Encoding"), got.header("Host")
			if len(host) != 1 {
				t.Fatalf("target saw Host %q:\n%s", host, got.head)
			}
			if len(te) > 0 && len(cl) > 0 || len(te) > 1 || len(cl) > 1 {
				t.Fatalf("target saw more than one framing:\n%s", got.head)
			}
			if c.wantCL != "" && (len(cl) != 1 || cl[0] != c.wantCL) {
				t.Fatalf("target saw Content-Length %q, want %q:\n%s", cl, c.wantCL, got.head)
			}
			if c.wantCL == "" && len(cl)+len(te) > 0 {
				t.Fatalf("target saw framing for a request without a body:\n%s", got.head)
			}
			if string(got.body) != c.wantBody {
				t.Fatalf("target saw body %q, want %q", got.body, c.wantBody)
			}
		})
	}
}

// TestStrayBytesNeverReachAnotherClient: a target that sends more than its
// answer — a body after a HEAD answer, bytes past its length, a body on a
// 204 or 304, in the same write or a moment later — must not have those
// bytes read as the next request's answer. After the faulty exchange, ten
// clients on fresh connections, and three on one kept-alive connection,
// each get their own answer.
func TestStrayBytesNeverReachAnotherClient(t *testing.T) {
	stray := "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nSet-Cookie: session=victim\r\n\r\nid=STRAY"
	cases := []struct {
		name, method string
		answer       func(rawRequest) script
	}{
		{"HEAD answer with a body", "HEAD", func(r rawRequest) script {
			return script{parts: []string{"HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(stray)) + "\r\n\r\n" + stray}}
		}},
		{"HEAD answer, body written later", "HEAD", func(r rawRequest) script {
			return script{parts: []string{"HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(stray)) + "\r\n\r\n", stray}}
		}},
		{"bytes past the length", "GET", func(r rawRequest) script {
			return script{parts: []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + stray}}
		}},
		{"bytes past the length, written later", "GET", func(r rawRequest) script {
			return script{parts: []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", stray}}
		}},
		{"204 with a body", "GET", func(r rawRequest) script {
			return script{parts: []string{"HTTP/1.1 204 No Content\r\n\r\n" + stray}}
		}},
		{"304 with a body", "GET", func(r rawRequest) script {
			return script{parts: []string{"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello" + stray}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _, addr := startScripted(t, func(r rawRequest) script {
				if idOf(r) == "bad" {
					return c.answer(r)
				}
				return script{parts: []string{okFor(r)}}
			})
			if _, _, err := exchange1(t, addr, c.method+" /?id=bad HTTP/1.1\r\nHost: x\r\n\r\n", c.method); err != nil {
				t.Fatal(err)
			}
			// A stray part written later has left the backend before the
			// next requests (one racing them could not be told from an
			// answer by any proxy).
			eventually(t, 2*time.Second, "the faulty answer written whole", func() bool { return b.written.Load() >= 1 })
			for i := 0; i < 10; i++ {
				id := fmt.Sprintf("fresh%d", i)
				status, body, err := exchange1(t, addr, "GET /?id="+id+" HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
				if err != nil || status != 200 || body != "id="+id {
					t.Fatalf("client %s got %d %q %v: another client's answer", id, status, body, err)
				}
			}
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for i := 0; i < 3; i++ {
				id := fmt.Sprintf("kept%d", i)
				status, body, err := exchangeOn(conn, br, "GET /?id="+id+" HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
				if err != nil || status != 200 || body != "id="+id {
					t.Fatalf("request %s got %d %q %v: another client's answer", id, status, body, err)
				}
			}
		})
	}
}

// TestBadResponseHeadsAre502: a response head another parser could read
// differently is answered 502, not passed on.
func TestBadResponseHeadsAre502(t *testing.T) {
	heads := map[string]string{
		"signed length":      "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
		"two lengths":        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"bare CR in a value": "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 3\r\n\r\nabc",
		"NUL in a value":     "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 3\r\n\r\nabc",
		"space before colon": "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc",
		"obs-fold":           "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 3\r\n\r\nabc",
		"gzip coding":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"bad status line":    "HTTP/1.1 2000 OK\r\nContent-Length: 3\r\n\r\nabc",
	}
	for name, head := range heads {
		t.Run(name, func(t *testing.T) {
			_, _, addr := startScripted(t, func(r rawRequest) script { return script{parts: []string{head}, closeAfter: true} })
			status, body, err := exchange1(t, addr, "GET /?id=1 HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
			if err != nil {
				t.Fatal(err)
			}
			if status != 502 || strings.Contains(body, "abc") {
				t.Fatalf("got %d %q, want 502", status, body)
			}
		})
	}
}

// TestTruncatedAnswerIsNotComplete: a chunked answer that breaks off must
// not look complete to any client. An HTTP/1.0 client reads to the end of
// the connection, so the proxy resets it rather than close it cleanly.
func TestTruncatedAnswerIsNotComplete(t *testing.T) {
	_, _, addr := startScripted(t, func(r rawRequest) script {
		return script{parts: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"}, closeAfter: true}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /?id=1 HTTP/1.0\r\n\r\n")
	out, err := io.ReadAll(c)
	if err == nil {
		t.Fatalf("HTTP/1.0 client read a clean end of a cut answer:\n%s", out)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want a reset, got %v", err)
	}

	// HTTP/1.1: chunked toward the client, without the last chunk.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c2, "GET /?id=2 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("HTTP/1.1 client read a complete body of a cut answer")
	}
}

// TestEarlyAnswerDuringUpload: a target that answers before reading a large
// body (413, 401) gets its answer to the client, at once, instead of a 502,
// or a 504 once its receive window is full.
func TestEarlyAnswerDuringUpload(t *testing.T) {
	b := newEarlyBackend(t)
	cfg := testConfig(t, b.Addr().String())
	cfg.Client.MaxBodyBytes = 64 << 20
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", b.Addr().String()) == "healthy" })
	for _, size := range []int{1 << 10, 8 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			start := time.Now()
			req, _ := http.NewRequest(http.MethodPost, url+"/upload", strings.NewReader(strings.Repeat("x", size)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				// The proxy closes the connection after the early answer;
				// Go's client may see that before reading the answer when
				// it is still writing. The status is checked below.
				t.Fatalf("request: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "too big") {
				t.Fatalf("got %d %q, want the target's 413", resp.StatusCode, body)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("early answer took %s", took)
			}
		})
	}
}

// newEarlyBackend answers every upload with 413 as soon as the head is in,
// reading none of the body, and keeps the connection open a while as some
// servers do.
func newEarlyBackend(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				head := ""
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head += line
					if line == "\r\n" {
						break
					}
				}
				if strings.HasPrefix(head, "GET /healthz") {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
					return
				}
				io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big")
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				var one [1]byte
				_, _ = c.Read(one[:]) // hold the connection without reading on
				time.Sleep(3 * time.Second)
			}()
		}
	}()
	return ln
}
