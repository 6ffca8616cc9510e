package reaper

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/cgroup"
)

// cgroupWait bounds the wait for a killed process's cgroup to empty.
const cgroupWait = 5 * time.Second

// Stop ends each of pids with SIGTERM, then SIGKILL once grace has passed,
// and removes the agent cgroups they were in.
func Stop(pids []int, grace time.Duration) {
	cgroups := map[string]bool{}
	for _, pid := range pids {
		note(cgroups, pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	removeCgroups(cgroups)
}

// KillUnder kills every process, with its process group, whose working
// directory is under dir (the apps and hooks an agent rooted there
// started), and removes the agent cgroups they were in.
func KillUnder(dir string) {
	entries, _ := os.ReadDir("/proc")
	prefix := dir + string(filepath.Separator)
	cgroups := map[string]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || !strings.HasPrefix(cwd, prefix) {
			continue
		}
		note(cgroups, pid)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	removeCgroups(cgroups)
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// note records pid's cgroup when an agent made it (zerodown-agent-…).
func note(cgroups map[string]bool, pid int) {
	if p, err := cgroup.Of(pid); err == nil && strings.Contains(p, "/zerodown-agent-") {
		cgroups[p] = true
	}
}

// removeCgroups removes each cgroup once the kernel has emptied it, and the
// agent's cgroup above it once it holds no other.
func removeCgroups(cgroups map[string]bool) {
	deadline := time.Now().Add(cgroupWait)
	for p := range cgroups {
		dir, err := cgroup.Dir(p)
		if err != nil {
			continue
		}
		_ = cgroup.Kill(dir, deadline)
		_ = os.Remove(filepath.Dir(dir))
	}
}
