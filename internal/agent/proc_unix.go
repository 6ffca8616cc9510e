//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// defaultPath is the app's PATH when its spec sets none: the agent's own
// may name directories of the user who started it.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// baseEnv is what the app's environment holds before its spec.
func baseEnv() map[string]string { return map[string]string{"PATH": defaultPath} }

// lookPath finds a program named without a slash in the PATH of env, the
// app's, as a shell started with env would; one with a slash is as given.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue // a relative entry would depend on the release's layout
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: no such program in the app's PATH (%s)", name, path)
}
