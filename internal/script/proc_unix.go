//go:build unix

package script

import (
	"errors"
	"os/exec"
	"syscall"
)

// ownGroup makes the script lead a process group of its own: the deadline
// reaches what it forked, and Ctrl-C in zerodown's terminal does not reach
// it (zerodown decides what an abort does to it).
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the process group pid leads; children that started a
// session of their own (a server put in the background with setsid) are
// not in it, on purpose.
func killGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
