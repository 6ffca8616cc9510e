package httpdiff

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proxy"
)

// lbYAML is the zerodown lb config: one pool with the scripted backend as
// its only target, checked often so a case never waits long for it, and
// retries left at their default as users run them.
const lbYAML = `listeners:
  - name: web
    address: %s
    routes: [ { pool: app } ]
admin:
  address: %s
  token: httpdiff
state_file: %s
shutdown_timeout: 5s
pools:
  app:
    targets: [ %s ]
    health: { path: /healthz, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 3 }
`

// startZerodown runs zerodown lb in this process in front of target, with
// its config written to dir, and waits until the admin API reports the
// target healthy. stop shuts it down.
func startZerodown(dir, target string, logger *slog.Logger) (srv *proxy.Server, stop func(), err error) {
	listen, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, "lb.yaml")
	text := fmt.Sprintf(lbYAML, listen, admin, filepath.Join(dir, "lb-state.json"), target)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, nil, err
	}
	cfg, err := config.LoadLB(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	// The loader refuses port 0, since an operator's file must name a port.
	// Here the kernel picks the ports at bind time instead, so a port found
	// free a moment ago cannot be taken by a parallel test in between.
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.Admin.Address = "127.0.0.1:0"
	srv, err = proxy.New(cfg, proxy.Options{Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("zerodown lb: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("start zerodown lb: %w", err)
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	if err := waitHealthy(srv, target, 10*time.Second); err != nil {
		stop()
		return nil, nil, err
	}
	return srv, stop, nil
}

// flushPool detaches target and attaches it again: the detach closes every
// idle connection zerodown holds to it, among them any an earlier case left
// with stray bytes, which neither a reset by the backend nor zerodown's
// idle peek would drop. Each case then starts on fresh connections.
func flushPool(srv *proxy.Server, target string) error {
	if _, err := srv.Detach("app", target); err != nil {
		return fmt.Errorf("detach %s: %w", target, err)
	}
	if _, err := srv.Attach("app", target, 1); err != nil {
		return fmt.Errorf("attach %s: %w", target, err)
	}
	return waitHealthy(srv, target, 5*time.Second)
}

// waitHealthy polls the admin API until target is healthy.
func waitHealthy(srv *proxy.Server, target string, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	state := "unknown"
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.AdminAddr()+"/v1/pools/app", nil)
		req.Header.Set("Authorization", "Bearer "+srv.Token())
		if resp, err := client.Do(req); err == nil {
			var pool struct {
				Targets []struct{ Address, State string }
			}
			err = json.NewDecoder(resp.Body).Decode(&pool)
			resp.Body.Close()
			for _, t := range pool.Targets {
				if err == nil && t.Address == target {
					state = t.State
				}
			}
		}
		if state == "healthy" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zerodown lb: target %s not healthy after %s: %s", target, within, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haproxyCfg mirrors the zerodown setup: HTTP mode, keep-alive on both
// sides, idle server connections shared between clients as zerodown's pool
// shares them, and the same health check path.
const haproxyCfg = `global
    maxconn 512

defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
    timeout http-request 5s
    timeout http-keep-alive 5s
    option http-keep-alive

frontend web
    bind %s
    default_backend app

backend app
    http-reuse always
    option httpchk GET /healthz
    server target %s check inter 200ms fall 3 rise 1
`

// findHAProxy returns the haproxy binary; /usr/sbin is not on every PATH.
func findHAProxy() (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", errors.New("haproxy not found on PATH nor at /usr/sbin/haproxy")
}

// startHAProxy runs haproxy in the foreground with a generated config and
// waits until it accepts connections; it is killed when the test ends. Its
// output is returned for when something goes wrong.
func startHAProxy(t *testing.T, bin, target string) (string, *syncBuffer) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(haproxyCfg, port, target)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-f", path, "-db")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("haproxy exited at start: %s", out)
		default:
		}
		if c, err := net.DialTimeout("tcp", port, time.Second); err == nil {
			c.Close()
			return port, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %s after 10s: %s", port, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback address nothing listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(s.b.String())
}

// panicLog is zerodown's logger here: it drops everything but counts the
// panics the server recovers from, which would otherwise pass unseen.
type panicLog struct {
	n       atomic.Int64
	mu      sync.Mutex
	message string
}

func (h *panicLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h *panicLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "panic") {
		return nil
	}
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.String()
		return true
	})
	h.mu.Lock()
	h.message = msg
	h.mu.Unlock()
	h.n.Add(1)
	return nil
}

func (h *panicLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicLog) WithGroup(string) slog.Handler      { return h }

func (h *panicLog) count() int64 {
	if h == nil {
		return 0
	}
	return h.n.Load()
}

func (h *panicLog) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.message
}
