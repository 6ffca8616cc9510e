//go:build !linux

package reaper

import (
	"os"
	"syscall"
	"time"
)

// Stop ends each of pids with SIGTERM, then a kill once grace has passed;
// there are no cgroups to remove.
func Stop(pids []int, grace time.Duration) {
	for _, pid := range pids {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	for _, pid := range pids {
		p, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		for p.Signal(syscall.Signal(0)) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = p.Kill()
	}
}

// KillUnder needs /proc to find processes by working directory; elsewhere
// the processes named to Stop are all that is stopped.
func KillUnder(string) {}
