package proctest

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KillUnder kills every process, with its process group, whose working
// directory is under root: the apps and hooks an agent started, which
// outlive the agent by design. The cgroups the agent made for them are
// removed once empty, so test runs leave none behind.
func KillUnder(root string) {
	entries, _ := os.ReadDir("/proc")
	cgroups := map[string]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || !strings.HasPrefix(cwd, root+string(filepath.Separator)) {
			continue
		}
		if cg := cgroupOf(pid); strings.Contains(cg, "/zerodown-agent-") {
			cgroups[cg] = true
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(cgroups) == 0 {
		return
	}
	mount := cgroup2Mount()
	if mount == "" {
		return
	}
	for cg := range cgroups {
		dir := filepath.Join(mount, cg)
		// The kernel empties a cgroup a moment after its last process dies.
		for deadline := time.Now().Add(5 * time.Second); os.Remove(dir) != nil && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		_ = os.Remove(filepath.Dir(dir)) // the agent's, once its last instance is gone
	}
}

// cgroupOf is pid's cgroup v2 path, "" when it has none.
func cgroupOf(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted; "" for none.
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if fs := strings.Fields(post); ok && len(fs) > 0 && fs[0] == "cgroup2" {
			if f := strings.Fields(pre); len(f) >= 5 {
				return f[4]
			}
		}
	}
	return ""
}
