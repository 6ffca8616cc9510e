//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// peerClosed reports whether the other end of c has closed or reset the
// connection, by peeking without blocking and without taking the read lock
// of a goroutine that may be reading c.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Control(func(fd uintptr) {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			closed = n == 0
		case err == syscall.EAGAIN || err == syscall.EINTR:
		default:
			closed = true
		}
	})
	return closed
}
