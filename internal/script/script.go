// Package script runs the user's own programs — a pipeline's exec task,
// an exec host's deploy, rollback and status scripts — the one way: an
// argv without a shell, zerodown's environment plus the caller's
// variables, a deadline at which the whole process group is killed
// (scripts fork), and a bounded tail of what they printed.
package script

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DefaultTail is how much of a script's output is kept: its last 4 KiB.
const DefaultTail = 4 << 10

// waitDelay is how long the output of a script that exited is still read:
// a child it left running may hold it open (a server started without a
// redirect), and is not waited for.
const waitDelay = 2 * time.Second

// Command is one run of a user's program.
type Command struct {
	// Argv is the program and its arguments. A program with a slash
	// (./deploy.sh) is relative to Dir, else it is looked up in PATH.
	Argv []string
	Dir  string
	// Env is KEY=VALUE pairs added to zerodown's own environment; a key
	// set in both gets the value here.
	Env []string
	// Timeout is the deadline, counted from the start; zero: none but
	// ctx's. Either kills the whole process group.
	Timeout time.Duration
	// Stdout, when set, receives the standard output alone (a status
	// script's answer); the tail then keeps standard error.
	Stdout io.Writer
	// Tail is how many bytes of output are kept; zero: DefaultTail.
	Tail int
}

// Result is what a finished script left.
type Result struct {
	// Output is the last Tail bytes it printed, stdout and stderr as they
	// came.
	Output string
	// Truncated: it printed more than Output holds.
	Truncated bool
	Took      time.Duration
}

// TimeoutError is the error of a script killed at its deadline.
type TimeoutError struct{ Timeout time.Duration }

func (e *TimeoutError) Error() string { return "did not finish within " + Short(e.Timeout) }

// Run runs c to its end. The error is nil for exit status 0, an
// *exec.ExitError for another ("exit status 3"), a *TimeoutError when the
// deadline killed it, or ctx's cause when ctx ended first.
func Run(ctx context.Context, c Command) (Result, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return Result{}, errors.New("no program to run")
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, c.Timeout)
	}
	defer cancel()
	cmd := exec.CommandContext(runCtx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	out := &tail{max: c.Tail}
	if out.max <= 0 {
		out.max = DefaultTail
	}
	cmd.Stdout, cmd.Stderr = out, out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	ownGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay
	start := time.Now()
	err := cmd.Run()
	res := Result{Took: time.Since(start)}
	res.Output, res.Truncated = out.String()
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// Exit status 0; a child holding the output open is its own.
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("stopped after %s: %w", res.Took.Round(time.Millisecond), context.Cause(ctx))
	case runCtx.Err() == context.DeadlineExceeded:
		return res, &TimeoutError{Timeout: c.Timeout}
	}
	return res, err
}

// Short formats d without the zero units time.Duration writes: 10m, not
// 10m0s.
func Short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// LastLines is the end of output — at most n lines, each at most width
// runes — indented, for an error message.
func LastLines(output string, n, width int) string {
	lines := strings.Split(strings.TrimRight(output, "\n\r\t "), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if r := []rune(l); len(r) > width {
			l = string(r[:width-1]) + "…"
		}
		b.WriteString("\n    " + l)
	}
	return b.String()
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped bool
}

func (b *tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped = true
	}
	return len(p), nil
}

// String is what was kept; once something was dropped it starts at a
// line's beginning, when a line ends within it.
func (b *tail) String() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf
	if i := bytes.IndexByte(out, '\n'); b.dropped && i >= 0 && i < len(out)-1 {
		out = out[i+1:]
	}
	return string(out), b.dropped
}
