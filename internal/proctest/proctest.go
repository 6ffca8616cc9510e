// Package proctest runs the child processes of tests that start real
// programs (the zerodown binary, the sample app, nginx, Node, Python): it
// keeps their output for failure messages, kills them when the test ends,
// and hands out free loopback addresses. Only tests import it.
package proctest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/freeport"
)

// Proc is a child process whose output is kept.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  Buffer
	done chan struct{}
}

// Buffer collects what another goroutine or process writes, for a test to
// read while it is written (a child's output, a logger's lines).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs path with args and kills it, with the processes it forked, when
// the test ends; its output is logged if the test failed.
func Start(t testing.TB, name, path string, args ...string) *Proc {
	t.Helper()
	return StartCmd(t, name, exec.Command(path, args...))
}

// StartCmd runs a prepared command (its directory or environment set) like
// Start. Its Stdout and Stderr are taken over.
func StartCmd(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Signal(os.Kill)
		killGroup(cmd.Process.Pid) // its workers too, which hold its output open
		<-p.done
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.out.String())
		}
	})
	return p
}

// Output is what the process wrote so far, stdout and stderr together.
func (p *Proc) Output() string { return p.out.String() }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig unless the process has exited.
func (p *Proc) Signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit code.
func (p *Proc) Wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s", p.Name, within)
		return -1
	}
}

// FreeAddr returns a loopback address nobody listens on right now, for a
// process a test starts to listen on (freeport.Addr: outside the kernel's
// ephemeral range).
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// WaitListening waits until something accepts connections on addr (a
// server the test started), failing t after within.
func WaitListening(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	Eventually(t, within, "a listener on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	addr, err := net.ResolveTCPAddr("tcp", FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	return addr.Port
}

// Eventually polls cond until it holds or the deadline passes, then fails
// the test naming what it waited for.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
