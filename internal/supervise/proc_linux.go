package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// isSupervisor reports whether pid is a live supervisor of the pid file
// abs: its command line has the argument "supervise" and names the pid
// file. A process that merely got a dead supervisor's pid — after a reboot
// pids are handed out from the start again, and another agent's supervisor
// may hold it — is not one.
func isSupervisor(pid int, abs string) (bool, error) {
	proc := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(proc + "/cmdline")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s/cmdline: %w", proc, err)
	}
	// A zombie's command line is empty: it is not running anything.
	args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	var strs []string
	isSup := false
	for _, a := range args[1:] {
		if string(a) == "supervise" {
			isSup = true
		}
		strs = append(strs, string(a))
	}
	if !isSup {
		return false, nil
	}
	cwd, _ := os.Readlink(proc + "/cwd")
	return namesFile(strs, cwd, abs), nil
}

// childAttr has the kernel send the child SIGTERM when the supervisor dies
// (killed with SIGKILL, say), so that no agent runs on unsupervised and the
// next supervisor's agent does not find its root locked; the agent stops
// as on any SIGTERM and leaves its app running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
