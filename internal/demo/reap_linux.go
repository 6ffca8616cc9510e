package demo

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killUnder kills every process whose working directory is under dir: the
// apps the agents started, including any the agents' status did not name
// (one started by a crash restart during shutdown).
func killUnder(dir string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	prefix := dir + string(filepath.Separator)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || !strings.HasPrefix(cwd, prefix) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
