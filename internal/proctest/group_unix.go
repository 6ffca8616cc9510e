//go:build unix

package proctest

import (
	"os/exec"
	"syscall"
)

// ownGroup starts cmd in a process group of its own, so the test's
// cleanup reaches the children it forks too (nginx's and HAProxy's
// workers), not only the process it started.
func ownGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// killGroup kills the process's group; children that made groups of their
// own (an agent's apps) are not in it.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}
