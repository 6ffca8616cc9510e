package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestHelloGracefulShutdown builds and runs the real binary, sends SIGTERM
// while a streamed answer is in flight and checks that it completes and
// the process exits 0: the main's signal handling over the sample app's
// graceful shutdown. The app's routes are tested in internal/sampleapp.
func TestHelloGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command:", err)
	}
	bin := filepath.Join(t.TempDir(), "hello")
	if err := proctest.BuildGo(bin, "."); err != nil {
		t.Fatal(err)
	}

	// Another process could take the port before hello binds it; then hello
	// exits and the test fails clearly rather than hangs.
	addr := proctest.FreeAddr(t)
	var stderr proctest.Buffer
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

	// The first line of a stream proves its handler is running when the
	// signal comes: net/http drops a request it reads only after the
	// shutdown began, so an accepted connection alone would be a race.
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get("http://" + addr + "/stream?n=2&every=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	first, err := body.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("in-flight request cut by shutdown after %q: %v\n%s", first, err, stderr.String())
	}
	if got, want := first+string(rest), "line 1 of 2 from bin version v9\nline 2 of 2 from bin version v9\n"; got != want || resp.Header.Get("X-Version") != "v9" {
		t.Errorf("in-flight answer %q X-Version=%q, want %q", got, resp.Header.Get("X-Version"), want)
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
