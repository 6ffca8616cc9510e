//go:build linux

package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestAcceptSurvivesEMFILE: running out of file descriptors stops accepting
// for a while, not for good; the listener serves again once descriptors
// are free.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	b := newScriptedBackend(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	cfg := testConfig(t, b.addr())
	logs := &proctest.Buffer{}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(t, srv) })
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", b.addr()) == "healthy" })
	addr := srv.ListenerAddrs()[0]

	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip("no RLIMIT_NOFILE here")
	}
	saved := rl
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) })
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	// The client sockets are made first and connected after the limit is
	// lowered: connecting needs no new descriptor, accepting does.
	var fds []int
	for i := 0; i < 5; i++ {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	lowered := rl
	lowered.Cur = uint64(openFDs(t) - 4) // below what is open: not one descriptor to spare
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	for _, fd := range fds {
		if err := syscall.Connect(fd, sa); err != nil {
			t.Fatalf("connect: %v", err)
		}
		if _, err := syscall.Write(fd, []byte("GET /?id=late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	eventually(t, 5*time.Second, "the listener to meet EMFILE and back off", func() bool {
		return strings.Contains(logs.String(), "backing off")
	})
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "client")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("client %d never answered after descriptors came back: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		// A connection accepted while descriptors were short (one freed by
		// a health check) may find none left for the target: 503, and the
		// target is not blamed for it.
		if string(body) != "id=late" && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("client %d got %d %q", i, resp.StatusCode, body)
		}
	}
	if st := stateOf(srv, "app", b.addr()); st != "healthy" {
		t.Fatalf("the target was marked %s for the balancer's own shortage", st)
	}
	status, body, err := exchange1(t, addr, "GET /?id=after HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
	if err != nil || status != 200 || body != "id=after" {
		t.Fatalf("listener dead after EMFILE: %d %q %v", status, body, err)
	}
}

func openFDs(t *testing.T) int {
	entries, err := readDirNames("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(entries)
}
