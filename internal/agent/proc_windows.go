//go:build windows

package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Windows has no signals for console programs. The app is started in a new
// process group; a stop sends it CTRL_BREAK_EVENT (which Go programs see as
// os.Interrupt, and most runtimes as a request to exit), and the kill after
// the stop timeout ends the whole process tree with taskkill /T /F.

const (
	ctrlBreakEvent                 = 1
	processQueryLimitedInformation = 0x1000
	stillActive                    = 259
)

var (
	kernel32                     = syscall.NewLazyDLL("kernel32.dll")
	procGenerateConsoleCtrlEvent = kernel32.NewProc("GenerateConsoleCtrlEvent")
)

func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// signalGroup asks the process group led by pid to stop; SIGKILL kills it.
func signalGroup(pid int, name string) error {
	if name == "SIGKILL" {
		return killGroup(pid)
	}
	r, _, err := procGenerateConsoleCtrlEvent.Call(ctrlBreakEvent, uintptr(pid))
	if r == 0 {
		return fmt.Errorf("GenerateConsoleCtrlEvent: %w", err)
	}
	return nil
}

// killGroup ends pid and every process it started.
func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	if _, err := processStartID(pid); err != nil {
		return nil // gone already
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "taskkill", "/T", "/F", "/PID", strconv.Itoa(pid)).Run(); err != nil {
		p, ferr := os.FindProcess(pid)
		if ferr != nil {
			return fmt.Errorf("taskkill pid %d: %w", pid, err)
		}
		return p.Kill()
	}
	return nil
}

// processStartID returns the creation time of pid, which differs between a
// process and a later one that got the same pid.
func processStartID(pid int) (string, error) {
	h, err := syscall.OpenProcess(processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		return "", errGone
	}
	defer syscall.CloseHandle(h)
	var code uint32
	if err := syscall.GetExitCodeProcess(h, &code); err != nil {
		return "", fmt.Errorf("query pid %d: %w", pid, err)
	}
	if code != stillActive {
		return "", errGone
	}
	var creation, exit, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return "", fmt.Errorf("query pid %d: %w", pid, err)
	}
	return strconv.FormatInt(creation.Nanoseconds(), 10), nil
}

// groupAlive: Windows's process groups cannot be asked for members; a
// leader gone takes the tree taskkill /T reaches with it.
func groupAlive(int) bool { return false }

// setCredential: an app runs as the agent's user on Windows.
func setCredential(_ *exec.Cmd, r *runAs) error {
	if r == nil || r.self {
		return nil
	}
	return fmt.Errorf("user: and group: are not supported on Windows: the app runs as the agent's user")
}

// windowsEnv are the variables Windows programs need to start and find
// one another; they hold no secret of the agent's.
var windowsEnv = []string{"SYSTEMROOT", "WINDIR", "SYSTEMDRIVE", "TEMP", "TMP", "PATHEXT", "COMSPEC", "PATH"}

// baseEnv is what the app's environment holds before its spec: the
// system's variables, from the agent's environment.
func baseEnv() map[string]string {
	vars := map[string]string{}
	for _, k := range windowsEnv {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	return vars
}

// lookPath: os/exec finds the program, with PATHEXT, when it starts it.
func lookPath(name string, _ []string) (string, error) { return name, nil }
