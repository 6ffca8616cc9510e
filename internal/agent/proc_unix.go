//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
)

var signals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM,
	"SIGINT":  syscall.SIGINT,
	"SIGQUIT": syscall.SIGQUIT,
	"SIGHUP":  syscall.SIGHUP,
	"SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2,
	"SIGKILL": syscall.SIGKILL,
}

// setProcessGroup makes the app lead a process group of its own, so that
// stopping it reaches its children too, and a signal to the agent's group
// (Ctrl-C in a terminal) does not reach the app.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends the named signal to the process group led by pid.
func signalGroup(pid int, name string) error {
	sig, ok := signals[name]
	if !ok {
		return fmt.Errorf("unknown signal %q", name)
	}
	return syscall.Kill(-pid, sig)
}

// killGroup sends SIGKILL to the process group led by pid; a group that is
// gone already is not an error.
func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// groupAlive reports whether any process is in the process group pgid.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// setCredential makes cmd run as r; nothing for the agent's own user.
func setCredential(cmd *exec.Cmd, r *runAs) error {
	if r == nil || r.self {
		return nil
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.uid, Gid: r.gid, Groups: r.groups}
	return nil
}
