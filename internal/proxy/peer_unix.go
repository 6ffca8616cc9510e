//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// peerOf peeks at c without blocking and without taking the read lock of a
// goroutine that may be reading it, and says what the other end has done.
func peerOf(c net.Conn) peerState {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return peerQuiet
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peerQuiet
	}
	st := peerQuiet
	_ = rc.Control(func(fd uintptr) {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil && n > 0:
			st = peerData
		case err == nil:
			st = peerClosed
		case err == syscall.EAGAIN || err == syscall.EINTR:
		default:
			st = peerReset
		}
	})
	return st
}
