//go:build !linux || 386

package proxy

import "net"

func upstreamFD(net.Conn) int { return -1 }

// peekIdle looks at an idle pooled connection without blocking.
func (c *upConn) peekIdle() peerState { return peerOf(c.conn) }
