//go:build windows

package loadgen

import (
	"errors"
	"syscall"
)

// Winsock reports its own error numbers, which syscall.Errno.Is does not
// map to the POSIX names.
const (
	wsaECONNREFUSED syscall.Errno = 10061
)

func isRefusedOS(err error) bool { return errors.Is(err, wsaECONNREFUSED) }

func isResetOS(err error) bool {
	return errors.Is(err, syscall.WSAECONNRESET) || errors.Is(err, syscall.WSAECONNABORTED)
}
