package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

func TestUpgradeRefusesChangesWhileHandingOver(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	ta, tb := hostPort(a.URL), hostPort(b.URL)
	cfg := testConfig(t, ta)
	started, release := make(chan struct{}, 2), make(chan error)
	srv := startWith(t, cfg, Options{Upgrade: func() error {
		started <- struct{}{}
		return <-release
	}})

	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 1)
	go func() {
		took, err := srv.Upgrade(context.Background())
		done <- result{took, err}
	}()
	<-started

	// The new process has read the state file: a change now would be lost.
	if _, err := srv.Attach("app", tb, 1); !errors.Is(err, errHandingOver) {
		t.Fatalf("attach during a handover: %v, want errHandingOver", err)
	}
	code, body := adminCall(t, srv, "POST", "/v1/pools/app/detach", "test-token", `{"target":"`+ta+`"}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "handing over") {
		t.Fatalf("detach over the API during a handover: %d %s, want 503 saying why", code, body)
	}
	if code, body := adminCall(t, srv, "POST", "/v1/upgrade", "test-token", ""); code != http.StatusConflict {
		t.Fatalf("second upgrade: %d %s, want 409", code, body)
	}
	// Reads still work: a deploy watching a drain keeps seeing it.
	if code, _ := adminCall(t, srv, "GET", "/v1/pools", "test-token", ""); code != http.StatusOK {
		t.Fatalf("list during a handover: %d", code)
	}

	// The new process failed: this one carries on, changes allowed again.
	release <- errors.New("child exited: bad config")
	if r := <-done; r.err == nil || !strings.Contains(r.err.Error(), "bad config") {
		t.Fatalf("failed upgrade returned %v", r.err)
	}
	if _, err := srv.Attach("app", tb, 1); err != nil {
		t.Fatalf("attach after a failed upgrade: %v", err)
	}

	// A successful one leaves changes refused: this process is on its way out.
	go func() {
		<-started
		release <- nil
	}()
	code, body = adminCall(t, srv, "POST", "/v1/upgrade", "test-token", "")
	if code != http.StatusOK || !strings.Contains(body, "handover_ms") {
		t.Fatalf("upgrade: %d %s", code, body)
	}
	if _, err := srv.Detach("app", ta); !errors.Is(err, errHandingOver) {
		t.Fatalf("detach after the handover: %v, want errHandingOver", err)
	}
}

func TestUpgradeWithoutSupport(t *testing.T) {
	srv, _ := startServer(t, testConfig(t, hostPort(backend(t, "a").URL)))
	code, body := adminCall(t, srv, "POST", "/v1/upgrade", "test-token", "")
	if code != http.StatusNotImplemented || !strings.Contains(body, "cannot hand its sockets") {
		t.Fatalf("upgrade without support: %d %s, want 501 saying why", code, body)
	}
}

// A target the previous process detached may still have requests in
// flight there: the new process reports it draining until that process is
// gone, so a deploy does not stop the app under them.
func TestDetachedTargetDrainsUntilPreviousProcessExits(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	ta, tb := hostPort(a.URL), hostPort(b.URL)
	cfg := testConfig(t, ta, tb)
	first, _ := startServer(t, cfg)
	if _, err := first.Detach("app", tb); err != nil {
		t.Fatal(err)
	}
	stopServer(t, first)

	previous := make(chan struct{})
	next := startWith(t, cfg, Options{Previous: previous})
	if st := stateOf(next, "app", tb); st != "draining" {
		t.Fatalf("detached target is %s while the previous process runs, want draining", st)
	}
	// Detached here too: also draining until the previous process is gone.
	if _, err := next.Detach("app", ta); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(next, "app", ta); st != "draining" {
		t.Fatalf("target detached in the new process is %s, want draining", st)
	}
	close(previous)
	eventually(t, 2*time.Second, "both detached targets to be unused", func() bool {
		return stateOf(next, "app", ta) == "unused" && stateOf(next, "app", tb) == "unused"
	})
}

// dupListen opens sockets the way a handover does: another descriptor of
// each is kept, as the one that would be passed to the next process.
type dupListen struct {
	mu    sync.Mutex
	files []*os.File
}

func (d *dupListen) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.mu.Lock()
	d.files = append(d.files, f)
	d.mu.Unlock()
	return ln, nil
}

func (d *dupListen) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.files {
		f.Close()
	}
}

// A listener removed by a reload must stop listening even though another
// descriptor of its socket is kept for the next process; otherwise
// connections would queue on a socket nobody accepts from.
func TestReloadRemovingSharedListenerStopsListening(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second := free.Addr().String()
	free.Close()
	cfg.Listeners = append(cfg.Listeners, config.Listener{Name: "second", Address: second, Routes: []config.Route{{Pool: "app"}}})
	d := &dupListen{}
	t.Cleanup(d.close)
	srv := startWith(t, cfg, Options{Listen: d.listen})
	eventually(t, 2*time.Second, "a healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	if code, _ := get(t, http.DefaultClient, "http://"+second+"/"); code != 200 {
		t.Fatalf("second listener answered %d", code)
	}

	next := testConfig(t, hostPort(a.URL))
	next.Path, next.StateFile = cfg.Path, cfg.StateFile
	if err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the removed listener to refuse connections", func() bool {
		c, err := net.DialTimeout("tcp", second, 500*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if code, _ := get(t, http.DefaultClient, "http://"+srv.ListenerAddrs()[0]+"/"); code != 200 {
		t.Fatalf("the kept listener answered %d", code)
	}
}

// A keep-alive connection idle when a shutdown (or a handover) begins is
// kept a little: a request the client sends on it then is served, with
// Connection: close, rather than lost — a lost POST is never replayed.
// Plain HTTP (the lean server) and HTTPS (net/http) alike.
func TestShutdownServesRequestOnIdleConnection(t *testing.T) {
	for _, https := range []bool{false, true} {
		name := "http"
		if https {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			a := backend(t, "a")
			cfg := testConfig(t, hostPort(a.URL))
			var roots *x509.CertPool
			if https {
				roots = x509.NewCertPool()
				roots.AppendCertsFromPEM(withTLS(t, cfg))
			}
			srv, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			eventually(t, 2*time.Second, "a healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
			addr := srv.ListenerAddrs()[0]
			var c net.Conn
			if https {
				c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
			} else {
				c, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			send := func() (*http.Response, error) {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi"); err != nil {
					return nil, err
				}
				resp, err := http.ReadResponse(br, nil)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return resp, err
			}
			if resp, err := send(); err != nil || resp.StatusCode != 200 || resp.Close {
				t.Fatalf("first POST: %v %v", resp, err)
			}

			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				done <- srv.Shutdown(ctx)
			}()
			l := srv.listeners[cfg.Listeners[0].Address]
			eventually(t, 2*time.Second, "the shutdown to begin", func() bool {
				if https {
					return l.draining.Load()
				}
				return l.h1.closing.Load()
			})
			resp, err := send()
			if err != nil || resp.StatusCode != 200 || !resp.Close {
				t.Fatalf("POST on a connection idle when the shutdown began: %v %v, want 200 with Connection: close", resp, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("shutdown: %v", err)
			}
		})
	}
}
