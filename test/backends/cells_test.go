package backends

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// cell is one backend behind its load balancer, ready for operations.
type cell struct {
	b      *backend
	lb     string // the lb's listener, host:port
	client *http.Client
}

func (c *cell) get(t *testing.T) {
	status, got := c.do(t, "GET", c.b.getPath, nil, false)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", c.b.getPath, status, quote(got))
	}
	sameBytes(t, "GET "+c.b.getPath, got, c.b.wantGet)
}

// post sends a body with a Content-Length.
func (c *cell) post(t *testing.T) {
	body := payload(postSize, seedPost)
	sameBytes(t, "body the backend received", c.deliver(t, "post", body, false), body)
}

// chunked sends a body with Transfer-Encoding: chunked, in chunks of uneven
// sizes.
func (c *cell) chunked(t *testing.T) {
	body := payload(chunkedSize, seedChunked)
	sameBytes(t, "body the backend received", c.deliver(t, "chunked", body, true), body)
}

// large uploads 8 MiB with a Content-Length; the backend's digest of what it
// received must match.
func (c *cell) large(t *testing.T) {
	body := payload(largeSize, seedLarge)
	want := fmt.Sprintf("%x %d\n", sha256.Sum256(body), len(body))
	if c.b.sumPath == "" {
		sameBytes(t, "body the backend received", c.deliver(t, "large", body, false), body)
		return
	}
	status, got := c.do(t, "POST", c.b.sumPath, body, false)
	if status != http.StatusOK {
		t.Fatalf("POST %s with %d bytes: status %d, body %s", c.b.sumPath, len(body), status, quote(got))
	}
	if string(got) != want {
		t.Errorf("backend received a body with digest and length %q, want %q", got, want)
	}
}

// deliver sends body through the lb and returns what the backend received:
// its echo, or for nginx the file WebDAV stored.
func (c *cell) deliver(t *testing.T, name string, body []byte, chunked bool) []byte {
	t.Helper()
	framing := "Content-Length"
	if chunked {
		framing = "chunked"
	}
	if c.b.echoPath != "" {
		status, got := c.do(t, "POST", c.b.echoPath, body, chunked)
		if status != http.StatusOK {
			t.Fatalf("POST %s with %d bytes, %s: status %d, body %s", c.b.echoPath, len(body), framing, status, quote(got))
		}
		return got
	}
	// nginx: the POST must be accepted, and a PUT of the same body stored
	// intact.
	status, got := c.do(t, "POST", "/post", body, chunked)
	if status != http.StatusOK || string(got) != "accepted\n" {
		t.Errorf("POST /post with %d bytes, %s: status %d, body %s; want 200 \"accepted\\n\"", len(body), framing, status, quote(got))
	}
	path := "/dav/" + name
	status, got = c.do(t, "PUT", path, body, chunked)
	if status != http.StatusCreated && status != http.StatusNoContent {
		t.Fatalf("PUT %s with %d bytes, %s: status %d, body %s", path, len(body), framing, status, quote(got))
	}
	status, got = c.do(t, "GET", path, nil, false)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", path, status, quote(got))
	}
	return got
}

// stream checks that the lb passes on each part of an answer as it comes:
// the first part must arrive before the backend can have sent the last, a
// deadline on the read rather than a sleep. A raw connection keeps every
// buffer but the lb's out of the way.
func (c *cell) stream(t *testing.T) {
	s := c.b.stream
	conn, err := net.Dial("tcp", c.lb)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := time.Now()
	if err := conn.SetDeadline(sent.Add(s.lastAfter)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", s.path, c.lb); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: no answer head within %s, before the backend sent its last part: %v", s.path, s.lastAfter, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", s.path, resp.StatusCode)
	}
	first := make([]byte, len(s.first))
	if n, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("GET %s: %d of the first %d bytes arrived within %s, before the backend sent its last part; the lb held the answer back: %v",
			s.path, n, len(s.first), s.lastAfter, err)
	}
	sameBytes(t, "first part of the streamed answer", first, s.first)
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the rest: %v", s.path, err)
	}
	sameBytes(t, "streamed answer", append(first, rest...), s.whole)
	// The check above means something only if the backend really paused.
	if took := time.Since(sent); took < s.lastAfter {
		t.Errorf("the whole answer took %s, less than the backend's pause of %s: the test proves nothing", took, s.lastAfter)
	}
}

func (c *cell) websocket(t *testing.T) {
	if c.b.wsPath == "" {
		// nginx can only relay a WebSocket to another server (proxy_pass),
		// never be the endpoint itself, and a relay would test nginx's proxy
		// rather than ours.
		t.Skipf("%s cannot be a WebSocket endpoint", c.b.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	url := "ws://" + c.lb + c.b.wsPath
	conn, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket handshake with %s: status %d: %v", url, status, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello through zerodown lb")},
		// Above 65535 bytes the frame carries a 64-bit length.
		{websocket.MessageBinary, payload(70000, seedWebSocket)},
	}
	for _, m := range msgs {
		if err := conn.Write(ctx, m.typ, m.data); err != nil {
			t.Fatalf("write %v message: %v", m.typ, err)
		}
		typ, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read echo of %v message: %v", m.typ, err)
		}
		if typ != m.typ {
			t.Errorf("echo is a %v message, want %v", typ, m.typ)
		}
		sameBytes(t, fmt.Sprintf("echo of %v message", m.typ), data, m.data)
	}
	if err := conn.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("close handshake: %v", err)
	}
}

func (c *cell) curlGet(t *testing.T) {
	curl := program(t, "curl", "/usr/bin/curl", "curl")
	out := filepath.Join(t.TempDir(), "answer")
	if status := c.curl(t, curl, out, "http://"+c.lb+c.b.getPath); status != http.StatusOK {
		t.Fatalf("curl GET %s: status %d, body %s", c.b.getPath, status, quote(readFile(t, out)))
	}
	sameBytes(t, "curl GET "+c.b.getPath, readFile(t, out), c.b.wantGet)
}

func (c *cell) curlPost(t *testing.T) {
	curl := program(t, "curl", "/usr/bin/curl", "curl")
	dir := t.TempDir()
	body := payload(curlSize, seedCurl)
	in, out := filepath.Join(dir, "body"), filepath.Join(dir, "answer")
	if err := os.WriteFile(in, body, 0o600); err != nil {
		t.Fatal(err)
	}
	post := []string{"--data-binary", "@" + in, "-H", "Content-Type: application/octet-stream"}
	if c.b.echoPath != "" {
		status := c.curl(t, curl, out, append(post, "http://"+c.lb+c.b.echoPath)...)
		if status != http.StatusOK {
			t.Fatalf("curl POST %s: status %d, body %s", c.b.echoPath, status, quote(readFile(t, out)))
		}
		sameBytes(t, "curl POST echo", readFile(t, out), body)
		return
	}
	// nginx: the POST must be accepted, and curl's upload of the same file
	// stored intact.
	status := c.curl(t, curl, out, append(post, "http://"+c.lb+"/post")...)
	if got := readFile(t, out); status != http.StatusOK || string(got) != "accepted\n" {
		t.Errorf("curl POST /post: status %d, body %s; want 200 \"accepted\\n\"", status, quote(got))
	}
	url := "http://" + c.lb + "/dav/curl"
	if status := c.curl(t, curl, out, "--upload-file", in, url); status != http.StatusCreated && status != http.StatusNoContent {
		t.Fatalf("curl PUT /dav/curl: status %d, body %s", status, quote(readFile(t, out)))
	}
	if status := c.curl(t, curl, out, url); status != http.StatusOK {
		t.Fatalf("curl GET /dav/curl: status %d", status)
	}
	sameBytes(t, "file curl uploaded", readFile(t, out), body)
}

// curl runs curl with args, writing the answer's body to out, and returns
// the status.
func (c *cell) curl(t *testing.T, curl, out string, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{"--silent", "--show-error", "--http1.1", "--noproxy", "*", "--max-time", "20", "--output", out, "--write-out", "%{http_code}"}
	cmd := exec.CommandContext(ctx, curl, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(stdout)))
	if err != nil {
		t.Fatalf("curl %s: status %q: %v", strings.Join(args, " "), stdout, err)
	}
	return status
}

// do sends a request through the lb and returns the status and body. A
// chunked body is sent in chunks of uneven sizes.
func (c *cell) do(t *testing.T, method, path string, body []byte, chunked bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
		if chunked {
			rd = &unevenReader{b: body}
		}
	}
	req, err := http.NewRequest(method, "http://"+c.lb+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if chunked {
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer (status %d): %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, got
}

// unevenReader hands out its bytes in reads of varying sizes; Go's client
// sends each read as one chunk.
type unevenReader struct {
	b []byte
	i int
}

var unevenSizes = []int{1, 7, 4096, 100, 16 << 10, 3, 1000}

func (r *unevenReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), unevenSizes[r.i%len(unevenSizes)])
	r.i++
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

// sameBytes reports where got first differs from want, without printing
// megabytes.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: %d bytes (sha256 %x), want %d bytes (sha256 %x); first difference at byte %d: got %s, want %s",
		what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want), i, quote(tail(got, i)), quote(tail(want, i)))
}

func tail(b []byte, from int) []byte {
	if from > len(b) {
		return nil
	}
	return b[from:]
}

// quote shows the start of a body.
func quote(b []byte) string {
	if len(b) > 120 {
		return strconv.Quote(string(b[:120])) + "…"
	}
	return strconv.Quote(string(b))
}
