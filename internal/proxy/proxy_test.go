package proxy

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok"))
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Backend", name)
			w.Write(b)
		default:
			if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
			w.Header().Set("X-Backend", name)
			w.Write([]byte("hello from " + name))
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestProxyBasic(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	cfg := testConfig(t, hostPort(a.URL), hostPort(b.URL))
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "both healthy", func() bool {
		return stateOf(srv, "app", hostPort(a.URL)) == "healthy" && stateOf(srv, "app", hostPort(b.URL)) == "healthy"
	})
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		code, body := get(t, http.DefaultClient, url+"/")
		if code != 200 {
			t.Fatalf("status %d body %q", code, body)
		}
		seen[body]++
	}
	if len(seen) != 2 {
		t.Fatalf("want both backends used, got %v", seen)
	}
	resp, err := http.Post(url+"/echo", "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "ping" {
		t.Fatalf("echo got %q", got)
	}
}

// TestDetachSendsNothingNew checks the detach guarantee under concurrency:
// a request created after the detach call returned never reaches the
// detached target.
func TestDetachSendsNothingNew(t *testing.T) {
	var seq atomic.Int64
	var violations, hitsA atomic.Int64
	var cutoff atomic.Int64
	cutoff.Store(math.MaxInt64)
	mk := func(name string, count bool) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				return
			}
			if count {
				hitsA.Add(1)
				n, _ := strconv.ParseInt(r.Header.Get("X-Seq"), 10, 64)
				if n > cutoff.Load() {
					violations.Add(1)
				}
			}
			w.Write([]byte(name))
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := mk("a", true), mk("b", false)
	cfg := testConfig(t, hostPort(a.URL), hostPort(b.URL))
	// What is tested is the detach; a health check timing out on a
	// machine starved by a full test run must not take b out meanwhile.
	cfg.Pools["app"].Health.UnhealthyThreshold = 1000
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "both healthy", func() bool {
		return stateOf(srv, "app", hostPort(a.URL)) == "healthy" && stateOf(srv, "app", hostPort(b.URL)) == "healthy"
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstFailure atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 5000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", url+"/", nil)
				req.Header.Set("X-Seq", strconv.FormatInt(seq.Add(1), 10))
				resp, err := client.Do(req)
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d: %s", resp.StatusCode, body))
				}
			}
		}()
	}
	eventually(t, 5*time.Second, "traffic on target a", func() bool { return hitsA.Load() > 200 })
	if _, err := srv.Detach("app", hostPort(a.URL)); err != nil {
		t.Fatal(err)
	}
	cutoff.Store(seq.Load())
	after := seq.Load()
	eventually(t, 10*time.Second, "1000 more requests", func() bool { return seq.Load() > after+1000 })
	close(stop)
	wg.Wait()
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d requests created after detach returned reached the detached target", v)
	}
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d requests failed, the first: %v", f, firstFailure.Load())
	}
	eventually(t, 5*time.Second, "target a unused", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "unused" })
}

// TestDetachWaitsForAdmittedRequests checks the admission gate itself: a
// request that admitted itself before the detach is written before detach
// returns.
func TestDetachWaitsForAdmittedRequests(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)
	p := srv.pool("app")
	tg := p.lookup(hostPort(a.URL))
	tg.dispatching.Add(1) // a request between admission and its write
	returned := make(chan struct{})
	go func() {
		_, _ = srv.Detach("app", hostPort(a.URL))
		close(returned)
	}()
	eventually(t, time.Second, "detached flag", tg.detached.Load)
	select {
	case <-returned:
		t.Fatal("detach returned while an admitted request was still being written")
	case <-time.After(50 * time.Millisecond):
	}
	tg.dispatching.Add(-1)
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Fatal("detach did not return after the admitted request was written")
	}
}

// TestDeregistrationDelayCuts: requests still in flight when the
// deregistration delay runs out are cut and counted.
func TestDeregistrationDelayCuts(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	cfg.Pools["app"].DeregistrationDelay = 200_000_000
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	status := make(chan int, 1)
	go func() {
		resp, err := http.Get(url + "/?sleep=3s")
		if err != nil {
			status <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	tg := srv.pool("app").lookup(hostPort(a.URL))
	eventually(t, 2*time.Second, "request in flight", func() bool { return tg.inFlight.Load() == 1 })
	start := time.Now()
	if _, err := srv.Detach("app", hostPort(a.URL)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "unused", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "unused" })
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("drain took %s with a 200ms deregistration delay", took)
	}
	if got := <-status; got != http.StatusBadGateway {
		t.Fatalf("cut request got %d, want 502", got)
	}
	if n := tg.cut.Load(); n != 1 {
		t.Fatalf("cut count %d, want 1", n)
	}
}
