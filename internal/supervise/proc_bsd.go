//go:build unix && !linux && !aix && !solaris

package supervise

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// isSupervisor reports whether pid is a live supervisor of the pid file
// abs. Without /proc, ps(1) shows its command line, joined with spaces: it
// must have the word "supervise" and the pid file's name (its directory
// cannot be told apart from a relative argument's).
func isSupervisor(pid int, abs string) (bool, error) {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	out, err := exec.Command("ps", "-o", "args=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) { // ps exits 1 when there is no such process
			return false, nil
		}
		return false, fmt.Errorf("ps: %w", err)
	}
	words := strings.Fields(string(out))
	if len(words) < 2 {
		return false, nil
	}
	isSup := false
	for _, w := range words[1:] {
		if w == "supervise" {
			isSup = true
		}
	}
	return isSup && strings.Contains(string(out), filepath.Base(abs)), nil
}

// childAttr: no parent-death signal here; a supervisor killed with
// SIGKILL leaves its child running.
func childAttr() *syscall.SysProcAttr { return nil }
