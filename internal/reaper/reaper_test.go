//go:build linux

package reaper

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/cgroup"
)

// sleeper starts sleep with its working directory in dir, in a cgroup
// laid out as an agent lays its instances out; it returns the process and
// the two cgroup directories (the agent's, the instance's).
func sleeper(t *testing.T, dir string) (*exec.Cmd, string, string) {
	t.Helper()
	mount, _, err := cgroup.Mount()
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	agentDir := filepath.Join(mount, fmt.Sprintf("zerodown-agent-reapertest%d", time.Now().UnixNano()))
	inst := filepath.Join(agentDir, "app-1")
	if err := os.MkdirAll(inst, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(inst); _ = os.Remove(agentDir) })
	fd, err := syscall.Open(inst, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command("sleep", "60")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process in a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, agentDir, inst
}

// gone waits for cmd's exit within 5s and says whether it ended.
func gone(cmd *exec.Cmd) bool {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func TestKillUnderAndStop(t *testing.T) {
	for _, tt := range []struct {
		name string
		stop func(dir string, pid int)
	}{
		{"KillUnder", func(dir string, _ int) { KillUnder(dir) }},
		{"Stop", func(_ string, pid int) { Stop([]int{pid}, time.Second) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			work := filepath.Join(dir, "releases", "v1") // as an app's, below the root
			if err := os.MkdirAll(work, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd, agentDir, inst := sleeper(t, work)
			// Wait() reaps it, so the cgroup can empty.
			done := make(chan bool, 1)
			go func() { done <- gone(cmd) }()
			tt.stop(dir, cmd.Process.Pid)
			if !<-done {
				t.Fatal("the process still runs")
			}
			for _, d := range []string{inst, agentDir} {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("cgroup %s is still there (%v)", d, err)
				}
			}
		})
	}
}
