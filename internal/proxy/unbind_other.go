//go:build !linux

package proxy

import "net"

// unbind: other systems have no way to take a socket out of the
// listening state for every descriptor of it (a read shutdown does not do
// it on macOS or the BSDs). A listener a reload removes there keeps its
// socket open in the copy kept for the next process until the process
// exits: connections to it wait instead of being refused.
func unbind(net.Listener) {}
