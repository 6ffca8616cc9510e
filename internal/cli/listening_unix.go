//go:build unix

package cli

import (
	"net"
	"syscall"
)

// listening reports whether ln's socket is still in the listening state.
func listening(ln net.Listener) bool {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	on := 1
	_ = rc.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err == nil {
			on = v
		}
	})
	return on != 0
}
