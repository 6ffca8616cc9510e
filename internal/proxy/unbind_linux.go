//go:build linux

package proxy

import (
	"net"
	"syscall"
)

// unbind stops a listening socket for every descriptor of it: on Linux a
// read shutdown of a listening socket takes it out of the listening state.
func unbind(ln net.Listener) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RD) })
}
