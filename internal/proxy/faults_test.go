package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zerodown/zerodown/internal/config"
)

// TestRetryOnStaleKeepAlive reproduces the classic 502: the backend closes
// idle keep-alive connections sooner than the proxy's idle timeout. Each
// request reuses a connection the backend may just have closed; the proxy
// must find it closed before use, or retry what may be retried. POSTs carry
// an Idempotency-Key: without one, a POST lost after it was written is
// never replayed (TestPostNeverReplayed).
func TestRetryOnStaleKeepAlive(t *testing.T) {
	a := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	a.Config.IdleTimeout = 30 * time.Millisecond
	a.Start()
	t.Cleanup(a.Close)
	cfg := testConfig(t, hostPort(a.URL))
	cfg.Pools["app"].Upstream.IdleTimeout = 10_000_000_000 // 10s: far longer than the backend's
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })

	for i := 0; i < 40; i++ {
		// Gaps around the backend's idle timeout hit the race window.
		time.Sleep(time.Duration(25+i%10) * time.Millisecond)
		var resp *http.Response
		var err error
		if i%2 == 0 {
			resp, err = http.Get(url + "/")
		} else {
			req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader("body"))
			req.Header.Set("Idempotency-Key", strconv.Itoa(i))
			resp, err = http.DefaultClient.Do(req)
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
}

func TestErrorStatuses(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)

	t.Run("504 on upstream timeout", func(t *testing.T) {
		cfg := testConfig(t, hostPort(slow.URL))
		cfg.Pools["app"].Upstream.ResponseTimeout = 100_000_000
		srv, url := startServer(t, cfg)
		eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(slow.URL)) == "healthy" })
		code, body := get(t, http.DefaultClient, url+"/")
		if code != 504 || !strings.Contains(body, "did not answer in time") || strings.Contains(body, hostPort(slow.URL)) {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("503 with no target", func(t *testing.T) {
		cfg := testConfig(t)
		_, url := startServer(t, cfg)
		code, body := get(t, http.DefaultClient, url+"/")
		if code != 503 || !strings.Contains(body, "no healthy target") {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("413 on a large body", func(t *testing.T) {
		a := backend(t, "a")
		cfg := testConfig(t, hostPort(a.URL))
		cfg.Client.MaxBodyBytes = 1000
		_, url := startServer(t, cfg)
		resp, err := http.Post(url+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", 1001)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("declared length: got %d", resp.StatusCode)
		}
		// Chunked, no declared length.
		pr, pw := io.Pipe()
		go func() { pw.Write([]byte(strings.Repeat("y", 3000))); pw.Close() }()
		resp, err = http.Post(url+"/echo", "text/plain", pr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked: got %d", resp.StatusCode)
		}
	})
	t.Run("502 when every target refuses", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		ln.Close()
		cfg := testConfig(t, dead)
		_, url := startServer(t, cfg)
		// Fail open: the unhealthy target is still tried, and fails. The
		// answer does not tell the client where targets live.
		code, body := get(t, http.DefaultClient, url+"/")
		if code != 502 || strings.Contains(body, dead) || strings.Contains(body, "127.0.0.1") {
			t.Fatalf("got %d %q", code, body)
		}
	})
}

// TestFailOpen checks AWS's behaviour when every target is unhealthy, and
// the opt-out.
func TestFailOpen(t *testing.T) {
	var healthy atomic.Bool
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && !healthy.Load() {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("served"))
	}))
	t.Cleanup(a.Close)
	for _, open := range []bool{true, false} {
		t.Run(fmt.Sprint("fail_open=", open), func(t *testing.T) {
			cfg := testConfig(t, hostPort(a.URL))
			cfg.Pools["app"].FailOpen = &open
			srv, url := startServer(t, cfg)
			eventually(t, 2*time.Second, "unhealthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "unhealthy" })
			code, _ := get(t, http.DefaultClient, url+"/")
			want := 200
			if !open {
				want = 503
			}
			if code != want {
				t.Fatalf("got %d, want %d", code, want)
			}
		})
	}
}

// TestPassiveHealth: connection failures mark a target unhealthy before an
// active check could.
func TestPassiveHealth(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	cfg := testConfig(t, hostPort(a.URL), hostPort(b.URL))
	cfg.Pools["app"].Health.Interval = 3_600_000_000_000 // an hour: only passive checks act
	cfg.Pools["app"].Health.Timeout = 1_000_000_000
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "both healthy", func() bool {
		return stateOf(srv, "app", hostPort(a.URL)) == "healthy" && stateOf(srv, "app", hostPort(b.URL)) == "healthy"
	})
	a.Close()
	client := &http.Client{}
	for i := 0; i < 30; i++ {
		code, _ := get(t, client, url+"/")
		if code != 200 {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	if st := stateOf(srv, "app", hostPort(a.URL)); st != "unhealthy" {
		t.Fatalf("closed backend is %s, want unhealthy", st)
	}
}

func TestStreamingFlushes(t *testing.T) {
	release := make(chan struct{})
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
	}))
	t.Cleanup(a.Close)
	defer close(release)
	cfg := testConfig(t, hostPort(a.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	resp, err := http.Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event not flushed before the stream ended: %q %v", line, err)
	}
}

func TestWebSocketProxiedAndDrained(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(a.Close)
	cfg := testConfig(t, hostPort(a.URL))
	cfg.Pools["app"].WebSocketGrace = 200_000_000
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "ping" {
		t.Fatalf("echo: %q %v", msg, err)
	}
	tg := srv.pool("app").lookup(hostPort(a.URL))
	if n := tg.inFlight.Load(); n != 1 {
		t.Fatalf("open WebSocket counts %d in flight, want 1", n)
	}
	start := time.Now()
	if _, err := srv.Detach("app", hostPort(a.URL)); err != nil {
		t.Fatal(err)
	}
	// The socket stays usable during the grace period...
	if err := c.Write(ctx, websocket.MessageText, []byte("still")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "still" {
		t.Fatalf("during grace: %q %v", msg, err)
	}
	// ...then it is closed and the target drains.
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("socket still open after the grace period")
	}
	eventually(t, 5*time.Second, "unused", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "unused" })
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("drain took %s, the deregistration delay, not the grace period", took)
	}
	if n := tg.cut.Load(); n != 0 {
		t.Fatalf("cut %d, want 0: the socket was closed by its grace period", n)
	}
}

// TestConcurrentAttachDetach hammers one target with attach and detach from
// many goroutines under load; the target must end in the state of the last
// call and keep serving.
func TestConcurrentAttachDetach(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	cfg := testConfig(t, hostPort(a.URL), hostPort(b.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "both healthy", func() bool {
		return stateOf(srv, "app", hostPort(a.URL)) == "healthy" && stateOf(srv, "app", hostPort(b.URL)) == "healthy"
	})
	stop := make(chan struct{})
	var failures atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(url + "/")
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	var ops sync.WaitGroup
	for i := 0; i < 8; i++ {
		ops.Add(1)
		go func() {
			defer ops.Done()
			for n := 0; n < 50; n++ {
				if (n+i)%2 == 0 {
					srv.Attach("app", hostPort(a.URL), -1)
				} else {
					srv.Detach("app", hostPort(a.URL))
				}
			}
		}()
	}
	ops.Wait()
	if _, err := srv.Attach("app", hostPort(a.URL), -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "a healthy again", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	close(stop)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d requests failed", f)
	}
	if _, err := srv.Detach("app", hostPort(a.URL)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "a unused", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "unused" })
}

// TestClientGoneDoesNotPoisonPool: clients that hang up mid-request make the
// proxy close those upstream connections; none of them may be reused.
func TestClientGoneDoesNotPoisonPool(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/?sleep=200ms", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	tg := srv.pool("app").lookup(hostPort(a.URL))
	eventually(t, 2*time.Second, "in-flight back to zero", func() bool { return tg.inFlight.Load() == 0 })
	client := &http.Client{}
	for i := 0; i < 50; i++ {
		code, body := get(t, client, url+"/")
		if code != 200 {
			t.Fatalf("request %d after clients hung up: %d %q", i, code, body)
		}
	}
}

// TestLengthBesideChunkedIsDropped: a target that sends Content-Length next
// to chunked framing is read as chunked, and the length is not passed on.
func TestLengthBesideChunkedIsDropped(t *testing.T) {
	_, _, addr := startScripted(t, func(r rawRequest) script {
		return script{parts: []string{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"}}
	})
	code, body := get(t, http.DefaultClient, "http://"+addr+"/")
	if code != 200 || body != "hello" {
		t.Fatalf("got %d %q", code, body)
	}
}

// TestPostNeverReplayed: a target that takes a request and dies before
// answering may have acted on it. A GET is retried elsewhere; a POST is
// not, unless it carries an Idempotency-Key; and no request is ever
// executed twice because the proxy replayed it.
func TestPostNeverReplayed(t *testing.T) {
	var mu sync.Mutex
	runs := map[string]int{}
	// Both targets count executions per request id. The dying one answers
	// every other request, so its connections are pooled and reused, and
	// drops the others without an answer, as a process killed mid-request
	// does: the request was written on a reused connection, the case a
	// proxy is most tempted to retry.
	mk := func(dies bool) *httptest.Server {
		var served atomic.Int64
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				return
			}
			io.Copy(io.Discard, r.Body)
			mu.Lock()
			runs[r.URL.Query().Get("id")]++
			mu.Unlock()
			if dies && served.Add(1)%2 == 0 {
				panic(http.ErrAbortHandler)
			}
			io.WriteString(w, "done")
		}))
		t.Cleanup(s.Close)
		return s
	}
	dying, fine := mk(true), mk(false)
	cfg := testConfig(t, hostPort(dying.URL), hostPort(fine.URL))
	cfg.Pools["app"].Balance = config.BalanceRoundRobin
	srv, url := startServer(t, cfg)
	for _, b := range []*httptest.Server{dying, fine} {
		eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(b.URL)) == "healthy" })
	}
	cases := []struct {
		method, key string
		maxRuns     int
		wantOK      bool // every request answered 200 (retried on the fine target)
	}{
		{http.MethodPost, "", 1, false},
		{http.MethodPatch, "", 1, false},
		{http.MethodGet, "", 2, true},
		{http.MethodPost, "k", 2, true},
	}
	for _, c := range cases {
		t.Run(c.method+"/key="+c.key, func(t *testing.T) {
			failed := 0
			for i := 0; i < 20; i++ {
				id := c.method + c.key + strconv.Itoa(i)
				req, _ := http.NewRequest(c.method, url+"/work?id="+id, strings.NewReader("payload"))
				if c.key != "" {
					req.Header.Set("Idempotency-Key", id)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed++
				}
				mu.Lock()
				n := runs[id]
				mu.Unlock()
				if n > c.maxRuns {
					t.Fatalf("request %s ran %d times", id, n)
				}
				if resp.StatusCode != 200 && n > 1 {
					t.Fatalf("request %s ran %d times and still failed", id, n)
				}
			}
			if c.wantOK && failed > 0 {
				t.Fatalf("%d of 20 requests failed; they may be retried", failed)
			}
			if !c.wantOK && failed == 0 {
				t.Fatal("no request met the dying target; the test proves nothing")
			}
		})
	}
}
