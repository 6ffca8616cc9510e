package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseFlags(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string
	}{
		{
			name: "defaults",
			want: config{listen: "127.0.0.1:8080", version: "v0", name: host, idleTimeout: 60 * time.Second, shutdownTimeout: 30 * time.Second},
		},
		{
			name: "environment",
			env:  map[string]string{"PORT": "9001", "VERSION": "v3", "HOST_NAME": "web-1"},
			want: config{listen: "127.0.0.1:9001", version: "v3", name: "web-1", idleTimeout: 60 * time.Second, shutdownTimeout: 30 * time.Second},
		},
		{
			name: "flags beat environment",
			args: []string{"--listen", "127.0.0.1:7000", "--version", "v4", "--name", "n", "--idle-timeout", "1s", "--shutdown-timeout", "2s", "--fail-health", "--unhealthy-file", "/x"},
			env:  map[string]string{"PORT": "9001", "VERSION": "v3", "HOST_NAME": "web-1"},
			want: config{listen: "127.0.0.1:7000", version: "v4", name: "n", failHealth: true, unhealthyFile: "/x", idleTimeout: time.Second, shutdownTimeout: 2 * time.Second},
		},
		{
			name: "explicit default listen still beats PORT",
			args: []string{"--listen", "127.0.0.1:8080"},
			env:  map[string]string{"PORT": "9001"},
			want: config{listen: "127.0.0.1:8080", version: "v0", name: host, idleTimeout: 60 * time.Second, shutdownTimeout: 30 * time.Second},
		},
		{name: "bad duration", args: []string{"--idle-timeout", "soon"}, wantErr: "invalid value"},
		{name: "negative idle timeout", args: []string{"--idle-timeout", "-1s"}, wantErr: "must not be negative"},
		{name: "zero shutdown timeout", args: []string{"--shutdown-timeout", "0s"}, wantErr: "must be positive"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func testConfig() config {
	return config{listen: "127.0.0.1:0", version: "v7", name: "h1", idleTimeout: time.Minute, shutdownTimeout: time.Minute}
}

func TestHandler(t *testing.T) {
	unhealthy := filepath.Join(t.TempDir(), "down")
	if err := os.WriteFile(unhealthy, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pattern := newApp(testConfig()).pattern
	tests := []struct {
		name       string
		cfg        func(*config)
		method     string
		target     string
		body       string
		header     map[string]string
		wantStatus int
		wantBody   string // exact, unless wantPrefix
		wantPrefix bool
		wantHeader map[string]string
	}{
		{
			name: "hello", method: "GET", target: "/",
			wantStatus: 200, wantBody: "hello from h1 version v7\n",
			wantHeader: map[string]string{"X-Version": "v7", "X-Host": "h1", "Content-Length": "25"},
		},
		{
			name: "hello on any path", method: "GET", target: "/v1/anything",
			wantStatus: 200, wantBody: "hello from h1 version v7\n",
		},
		{
			// The recorder keeps the body that net/http drops for HEAD.
			name: "head", method: "HEAD", target: "/",
			wantStatus: 200, wantBody: "hello from h1 version v7\n", wantHeader: map[string]string{"X-Version": "v7"},
		},
		{
			name: "size 1KiB", method: "GET", target: "/?size=1024",
			wantStatus: 200, wantBody: string(pattern[:1024]),
			wantHeader: map[string]string{"Content-Length": "1024", "X-Version": "v7"},
		},
		{
			name: "size larger than the pattern", method: "GET", target: "/?size=" + strconv.Itoa(patternSize*2+3),
			wantStatus: 200, wantBody: string(pattern) + string(pattern) + string(pattern[:3]),
		},
		{name: "size zero", method: "GET", target: "/?size=0", wantStatus: 200, wantBody: "", wantHeader: map[string]string{"Content-Length": "0"}},
		{name: "size negative", method: "GET", target: "/?size=-1", wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "size not a number", method: "GET", target: "/?size=1k", wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "size empty", method: "GET", target: "/?size=", wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "size too large", method: "GET", target: "/?size=" + strconv.Itoa(maxSize+1), wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "sleep zero", method: "GET", target: "/?sleep=0s", wantStatus: 200, wantBody: "hello from h1 version v7\n"},
		{name: "sleep bad", method: "GET", target: "/?sleep=later", wantStatus: 400, wantBody: "bad sleep", wantPrefix: true},
		{name: "sleep negative", method: "GET", target: "/?sleep=-1s", wantStatus: 400, wantBody: "bad sleep", wantPrefix: true},
		{
			name: "post echoes", method: "POST", target: "/orders", body: `{"a":1}`,
			header:     map[string]string{"Content-Type": "application/json"},
			wantStatus: 200, wantBody: `{"a":1}`,
			wantHeader: map[string]string{"Content-Type": "application/json", "X-Version": "v7", "Content-Length": "7"},
		},
		{
			name: "post without content type", method: "POST", target: "/", body: "<html>",
			wantStatus: 200, wantBody: "<html>",
			wantHeader: map[string]string{"Content-Type": "application/octet-stream"},
		},
		{name: "post bad sleep", method: "POST", target: "/?sleep=x", body: "b", wantStatus: 400, wantBody: "bad sleep", wantPrefix: true},
		{name: "other method", method: "DELETE", target: "/", wantStatus: 405, wantHeader: map[string]string{"Allow": "GET, HEAD, POST"}, wantBody: "method not allowed\n"},
		{name: "healthy", method: "GET", target: "/healthz", wantStatus: 200, wantBody: "ok\n", wantHeader: map[string]string{"X-Version": "v7"}},
		{
			name: "fail health", cfg: func(c *config) { c.failHealth = true }, method: "GET", target: "/healthz",
			wantStatus: 503, wantBody: "unhealthy", wantPrefix: true,
		},
		{
			name: "unhealthy file present", cfg: func(c *config) { c.unhealthyFile = unhealthy }, method: "GET", target: "/healthz",
			wantStatus: 503, wantBody: "unhealthy: " + unhealthy, wantPrefix: true,
		},
		{
			name: "unhealthy file absent", cfg: func(c *config) { c.unhealthyFile = unhealthy + ".missing" }, method: "GET", target: "/healthz",
			wantStatus: 200, wantBody: "ok\n",
		},
		{name: "stream bad n", method: "GET", target: "/stream?n=x", wantStatus: 400, wantBody: "bad n", wantPrefix: true},
		{name: "stream bad every", method: "GET", target: "/stream?every=x", wantStatus: 400, wantBody: "bad every", wantPrefix: true},
		{
			name: "stream without delay", method: "GET", target: "/stream?n=2&every=0s", wantStatus: 200,
			wantBody: "line 1 of 2 from h1 version v7\nline 2 of 2 from h1 version v7\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.body == "" {
				req.ContentLength = 0
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			newApp(cfg).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			got := rec.Body.String()
			if tt.wantPrefix {
				if !strings.HasPrefix(got, tt.wantBody) {
					t.Errorf("body = %q, want prefix %q", got, tt.wantBody)
				}
			} else if got != tt.wantBody {
				t.Errorf("body = %q (%d bytes), want %q (%d bytes)", truncate(got), len(got), truncate(tt.wantBody), len(tt.wantBody))
			}
			for k, v := range tt.wantHeader {
				if g := rec.Header().Get(k); g != v {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// TestUnhealthyFileToggles checks that health follows the file without a
// restart, which is how the demo makes a server fail its checks.
func TestUnhealthyFileToggles(t *testing.T) {
	cfg := testConfig()
	cfg.unhealthyFile = filepath.Join(t.TempDir(), "down")
	a := newApp(cfg)
	status := func() int {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code
	}
	steps := []struct {
		name   string
		change func() error
		want   int
	}{
		{"no file", func() error { return nil }, 200},
		{"file created", func() error { return os.WriteFile(cfg.unhealthyFile, nil, 0o600) }, 503},
		{"file removed", func() error { return os.Remove(cfg.unhealthyFile) }, 200},
	}
	for _, s := range steps {
		if err := s.change(); err != nil {
			t.Fatal(err)
		}
		if got := status(); got != s.want {
			t.Errorf("%s: status %d, want %d", s.name, got, s.want)
		}
	}
}

// TestSleepHonoursCancellation checks that a client giving up frees the
// handler at once instead of after the sleep.
func TestSleepHonoursCancellation(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req := httptest.NewRequest(method, "/?sleep=10m", strings.NewReader("x")).WithContext(ctx)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				newApp(testConfig()).ServeHTTP(rec, req)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("handler still sleeping after the client went away")
			}
			if rec.Body.Len() != 0 {
				t.Errorf("answered %q to a client that went away", rec.Body.String())
			}
		})
	}
}

func TestSleepDelays(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	start := time.Now()
	resp, err := http.Get(srv.URL + "/?sleep=100ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("answered after %s, want at least 100ms", el)
	}
}

// TestStreamFlushes proves each line is flushed: the first line must arrive
// although the second is minutes away.
func TestStreamFlushes(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/stream?n=2&every=5m", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "line 1 of 2 from h1 version v7\n"; line != want {
		t.Errorf("first line %q, want %q", line, want)
	}
}

// TestEchoBodyInPieces checks that the echo is whole when the body arrives
// in several pieces, with a length or chunked: net/http drops the unread rest
// of a small body once the answer's head is written, unless the handler asks
// for full duplex.
func TestEchoBodyInPieces(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() {
				for i := 0; i < len(body); i += 1000 {
					if _, err := pw.Write(body[i:min(i+1000, len(body))]); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, err := http.NewRequest("POST", srv.URL+"/echo", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(len(body))
			if chunked {
				req.ContentLength = -1
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("echo after %d of %d bytes: %v", len(got), len(body), err)
			}
			if !bytes.Equal(got, body) {
				t.Errorf("echo is %d bytes, want the %d sent", len(got), len(body))
			}
		})
	}
}

func TestStreamLines(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stream?n=5&every=1ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 5 || lines[4] != "line 5 of 5 from h1 version v7" {
		t.Errorf("got lines %q", lines)
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if v := resp.Header.Get("X-Version"); v != "v7" {
		t.Errorf("handshake X-Version %q, want v7", v)
	}
	c.SetReadLimit(1 << 20)
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello")},
		{websocket.MessageBinary, bytes.Repeat([]byte{0, 1, 2}, 100000)}, // above the library's 32KiB default limit
		{websocket.MessageText, nil},
	}
	for _, m := range msgs {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Errorf("echo of %v %d bytes: got %v %d bytes", m.typ, len(m.data), typ, len(data))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestWebSocketClosedOnShutdown checks that shutdown says "going away" to open
// WebSockets and waits for their handlers.
func TestWebSocketClosedOnShutdown(t *testing.T) {
	a := newApp(testConfig())
	srv := httptest.NewServer(a)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// One round trip proves the server tracks the connection.
	if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	a.closeWebSockets()
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("read after shutdown: %v (status %d), want going away", err, got)
	}
	if err := a.waitWebSockets(ctx); err != nil {
		t.Error(err)
	}
}

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBinaryGracefulShutdown builds and runs the real binary, sends SIGTERM
// while a slow request is in flight and checks that the request completes and
// the process exits 0.
func TestBinaryGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	bin := filepath.Join(t.TempDir(), "hello")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Pick a free port. Another process could take it before hello binds it;
	// then hello exits and the test fails clearly rather than hangs.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var stderr lockedBuffer
	cmd := exec.Command(bin, "--listen", addr, "--name", "bin", "--version", "v9", "--shutdown-timeout", "20s")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("hello exited before listening: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hello not listening on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}

	// The slow request goes on connection A. A plain request on a later
	// connection B then proves the server has accepted A (the kernel's
	// accept queue is FIFO), and net/http's Shutdown waits for an accepted
	// connection that has not finished its first request.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /?sleep=1s HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := probe.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := slow.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("in-flight request cut by shutdown: %v\n%s", err, stderr.String())
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("in-flight body cut by shutdown: %v", err)
	}
	if resp.StatusCode != 200 || string(body) != "hello from bin version v9\n" || resp.Header.Get("X-Version") != "v9" {
		t.Errorf("in-flight answer %d %q X-Version=%q", resp.StatusCode, body, resp.Header.Get("X-Version"))
	}

	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("hello exited with %v, want 0\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("hello still running after SIGTERM\n%s", stderr.String())
	}
	logs := stderr.String()
	for _, want := range []string{"listening on " + addr, "got terminated, finishing in-flight requests"} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, logs)
		}
	}
}

func BenchmarkHello1KiB(b *testing.B) {
	a := newApp(testConfig())
	req := httptest.NewRequest("GET", "/?size=1024", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
	}
}
