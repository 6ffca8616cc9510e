//go:build linux && !386

package proxy

import (
	"net"
	"syscall"
	"unsafe"
)

// upstreamFD returns c's descriptor, kept so that the peek before every
// reuse of a pooled connection is one raw system call, without
// RawConn.Control's locking and allocation; -1 when c has none.
func upstreamFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// peekIdle looks at an idle pooled connection without blocking. The
// connection is owned by the caller (just taken from the idle list), so its
// descriptor is open; should a cut close it meanwhile, the request's own
// write fails and nothing was sent.
func (c *upConn) peekIdle() peerState {
	if c.fd < 0 {
		return peerOf(c.conn)
	}
	var buf [1]byte
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == 0 && n > 0:
		return peerData
	case errno == 0:
		return peerClosed
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return peerQuiet
	}
	return peerReset
}
