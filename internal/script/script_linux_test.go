package script

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestRunDeadlineKillsTheGroup: a script that hangs is killed at its
// deadline with what it forked, and its output so far is kept.
func TestRunDeadlineKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := fmt.Sprintf("sleep 60 & echo $! > %s; echo started; sleep 60", pidFile)
	res, err := Run(context.Background(), Command{Argv: []string{"sh", "-c", script}, Timeout: 300 * time.Millisecond})
	var te *TimeoutError
	if !errors.As(err, &te) || err.Error() != "did not finish within 300ms" {
		t.Fatalf("error %v, want a timeout", err)
	}
	if strings.TrimSpace(res.Output) != "started" {
		t.Errorf("output %q", res.Output)
	}
	if res.Took > 10*time.Second {
		t.Errorf("took %s: the deadline did not end it", res.Took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "the forked child to be killed", func() bool { return !proctest.Running(pid) })
}

// TestRunChildHoldingOutput: a script that leaves a child with its output
// open (a server started without a redirect) is done when it exits, not
// when the child is.
func TestRunChildHoldingOutput(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := fmt.Sprintf("sleep 30 & echo $! > %s; echo deployed", pidFile)
	res, err := Run(context.Background(), Command{Argv: []string{"sh", "-c", script}, Timeout: 20 * time.Second})
	if b, rerr := os.ReadFile(pidFile); rerr == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			defer syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err != nil || strings.TrimSpace(res.Output) != "deployed" {
		t.Fatalf("output %q, error %v", res.Output, err)
	}
	if res.Took > 10*time.Second {
		t.Errorf("took %s: it waited for the child", res.Took)
	}
}
