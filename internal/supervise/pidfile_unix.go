//go:build unix && !aix && !solaris

package supervise

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/zerodown/zerodown/internal/atomicfile"
)

// claimPidFile writes this process's pid into path, unless the file names
// another live supervisor. again reports that it named this very process:
// the supervisor re-executed itself.
func claimPidFile(path string) (again bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, fmt.Errorf("pid file %s: %w", path, err)
	}
	// Two supervisors started at once must not both find no live pid and
	// both write theirs: the check and the write hold an flock on the
	// directory (no lock file of its own to leave behind, and a lock on the
	// pid file itself would not survive its atomic replacement). Where the
	// file system has no flock it is left at that: the lock only guards
	// starts at the same instant.
	dir, err := os.Open(filepath.Dir(abs))
	if err != nil {
		return false, fmt.Errorf("pid file %s: %w", path, err)
	}
	defer dir.Close()
	_ = syscall.Flock(int(dir.Fd()), syscall.LOCK_EX)

	pid, err := readPid(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	case pid == os.Getpid():
		again = true
	case pid > 0:
		live, err := isSupervisor(pid, abs)
		if err != nil {
			return false, fmt.Errorf("pid file %s names pid %d, and whether that is a supervisor cannot be told: %w", path, pid, err)
		}
		if live {
			return false, fmt.Errorf("%w: pid %d, pid file %s (stop it with SIGTERM first, or SIGHUP it to restart it)", ErrRunning, pid, path)
		}
	}
	if err := atomicfile.Write(abs, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return false, fmt.Errorf("write pid file: %w", err)
	}
	return again, nil
}

// readPid reads a pid file; one that holds no pid (left by something else,
// or empty) reads as pid 0, which names nobody.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, nil
	}
	return pid, nil
}

// releasePidFile removes the pid file if it still names this process: a
// supervisor started after this one must keep its own.
func releasePidFile(path string) {
	if pid, err := readPid(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

// namesFile reports whether one of args (a process's arguments after its
// argv[0]) is the file abs, given as it is or as -flag=FILE; relative ones
// are taken from cwd ("" when unknown: only absolute arguments count).
func namesFile(args []string, cwd, abs string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			_, v, ok := strings.Cut(a, "=")
			if !ok {
				continue
			}
			a = v
		}
		if a == "" {
			continue
		}
		if !filepath.IsAbs(a) {
			if cwd == "" {
				continue
			}
			a = filepath.Join(cwd, a)
		}
		if filepath.Clean(a) == abs {
			return true
		}
	}
	return false
}
