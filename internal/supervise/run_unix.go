//go:build unix && !aix && !solaris

package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Run supervises the child until SIGTERM or SIGINT arrives or ctx is done,
// then stops it and returns nil. On SIGHUP it stops the child and
// re-executes the supervisor from Program (so Run does not return); if that
// fails it says why in the log and goes on supervising as it was.
func Run(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if o.Setsid {
		if err := setsid(); err != nil {
			return err
		}
	}
	out, closeLog, err := openLog(o.Log)
	if err != nil {
		return err
	}
	defer closeLog()
	s := &supervisor{o: o, out: out}

	// Signals are caught before the pid file names this process: whoever
	// reads it may signal at once, and SIGTERM's default action would leave
	// the pid file behind.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)

	again := false
	if o.PidFile != "" {
		if again, err = claimPidFile(o.PidFile); err != nil {
			// Said in the log too: bootstrap starts the supervisor with
			// its output going nowhere.
			s.logf("not starting: %v", err)
			return err
		}
		defer releasePidFile(o.PidFile)
	}
	if again {
		s.logf("supervisor re-executed from %s (pid %d)", o.Program, os.Getpid())
	} else {
		s.logf("supervisor started (pid %d)", os.Getpid())
	}
	return s.loop(ctx, signals)
}

type supervisor struct {
	o   Options
	out *os.File // the child's stdout and stderr

	mu sync.Mutex // one line at a time into out
}

// child is one run of the child process.
type child struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once it has exited and was reaped
	err     error         // cmd.Wait's, once done is closed
}

// event is what ends a wait of the loop.
type event int

const (
	evExited    event = iota // the child exited on its own; or the backoff passed
	evTerminate              // SIGTERM, SIGINT or ctx done: stop and exit
	evReexec                 // SIGHUP: stop and re-execute
)

func (s *supervisor) loop(ctx context.Context, signals <-chan os.Signal) error {
	delay := s.o.Backoff
	for {
		c, err := s.start()
		if err != nil {
			s.logf("start %s: %v", s.o.Program, err)
		} else {
			ev := wait(ctx, signals, c.done)
			if ev != evExited {
				if s.stop(c, signals) == evTerminate || ev == evTerminate {
					s.logf("supervisor exiting")
					return nil
				}
				s.reexec()
				delay = s.o.Backoff
				continue // still the old supervisor: start the child again now
			}
			up := time.Since(c.started)
			if up >= s.o.MaxBackoff {
				delay = s.o.Backoff
			}
			s.logf("%s (pid %d) exited on its own after %s: %s", s.o.Program, c.cmd.Process.Pid, up.Round(time.Millisecond), exitStatus(c))
		}
		s.logf("restarting in %s", delay)
		t := time.NewTimer(delay)
		ev := wait(ctx, signals, t.C)
		t.Stop()
		switch ev {
		case evTerminate:
			s.logf("supervisor exiting")
			return nil
		case evReexec:
			s.reexec()
			delay = s.o.Backoff
			continue
		}
		delay = min(2*delay, s.o.MaxBackoff)
	}
}

// wait waits for done (a child's exit, a timer) or a signal.
func wait[T any](ctx context.Context, signals <-chan os.Signal, done <-chan T) event {
	select {
	case <-done:
		return evExited
	case <-ctx.Done():
		return evTerminate
	case sig := <-signals:
		if sig == syscall.SIGHUP {
			return evReexec
		}
		return evTerminate
	}
}

// start starts the child from Program as it is now.
func (s *supervisor) start() (*child, error) {
	cmd := exec.Command(s.o.Program, s.o.Args...)
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	cmd.Stdout, cmd.Stderr = s.out, s.out // its own file: no copy through the supervisor
	cmd.SysProcAttr = childAttr()
	c := &child{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// On Linux the child's parent-death signal fires when the thread
		// that started it ends, not the process: this goroutine keeps its
		// thread until the child has been reaped (the thread ends with it).
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.started = time.Now()
		started <- nil
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	s.logf("started %s (pid %d)", strings.Join(cmd.Args, " "), cmd.Process.Pid)
	return c, nil
}

// stop sends the child SIGTERM and waits for it to exit, StopTimeout at
// most, then kills it. It returns evTerminate when SIGTERM, SIGINT or the
// end of the context came in the meantime (a re-execution is then off).
func (s *supervisor) stop(c *child, signals <-chan os.Signal) event {
	pid := c.cmd.Process.Pid
	s.logf("stopping %s (pid %d): SIGTERM, SIGKILL after %s", s.o.Program, pid, s.o.StopTimeout)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	ev := evExited
	kill := time.NewTimer(s.o.StopTimeout)
	defer kill.Stop()
	for {
		select {
		case <-c.done:
			s.logf("%s (pid %d) exited: %s", s.o.Program, pid, exitStatus(c))
			return ev
		case sig := <-signals:
			if sig != syscall.SIGHUP {
				ev = evTerminate
			}
		case <-kill.C:
			s.logf("%s (pid %d) did not exit within %s of SIGTERM: SIGKILL", s.o.Program, pid, s.o.StopTimeout)
			_ = c.cmd.Process.Kill()
		}
	}
}

// reexec replaces the supervisor with Program as it is now, with the same
// arguments, environment and pid (so the pid file stays right). It returns
// only when that failed, having said why.
func (s *supervisor) reexec() {
	path := s.o.Program
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			s.logf("re-execute the supervisor: %v; supervising on as before", err)
			return
		}
		path = p
	}
	argv := append([]string{s.o.Program}, os.Args[1:]...)
	s.logf("re-executing the supervisor: %s", strings.Join(argv, " "))
	// The log and every other descriptor are close-on-exec; the new
	// supervisor opens its own.
	err := syscall.Exec(path, argv, os.Environ())
	s.logf("re-execute the supervisor from %s: %v; supervising on as before", path, err)
}

func exitStatus(c *child) string {
	if c.cmd.ProcessState != nil {
		return c.cmd.ProcessState.String()
	}
	return c.err.Error()
}

// logf writes one line of the supervisor's own into the log.
func (s *supervisor) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "zerodown-supervise %s: %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// openLog opens the log for appending; without one, the child and the
// supervisor write to the supervisor's stderr.
func openLog(path string) (*os.File, func(), error) {
	if path == "" {
		return os.Stderr, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("open the log: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// setsid makes this process the leader of a new session, unless it leads
// one already (as after a re-execution).
func setsid() error {
	if sid, err := unix.Getsid(0); err == nil && sid == os.Getpid() {
		return nil
	}
	if _, err := syscall.Setsid(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("start a new session: this process leads its process group %d (a shell with job control started it): start it with setsid(1) instead", syscall.Getpgrp())
		}
		return fmt.Errorf("start a new session: %w", err)
	}
	return nil
}

// withDefaults fills in the defaults and checks what cannot be defaulted.
func (o Options) withDefaults() (Options, error) {
	if o.Program == "" {
		return o, errors.New("supervise: no program to run")
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = o.Backoff
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	return o, nil
}
