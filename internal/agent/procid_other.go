//go:build unix && !linux

package agent

import (
	"errors"
	"syscall"
)

// processStartID reports whether pid exists. Without /proc there is no
// cheap start time to compare, so a pid file is trusted by pid alone.
func processStartID(pid int) (string, error) {
	err := syscall.Kill(pid, 0)
	if err == nil || errors.Is(err, syscall.EPERM) {
		return "", nil
	}
	return "", errGone
}
