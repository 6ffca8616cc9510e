// Package freeport picks loopback addresses for processes that will listen
// on them later: `zerodown demo`'s load balancer, agents and apps, and the
// servers tests start.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
)

// Addr returns a 127.0.0.1 address nobody listens on right now. It is
// taken below the kernel's ephemeral range: a port from there (what
// listening on :0 or dialing out gets) could be handed to another process
// in the seconds before the one it is meant for binds it — an agent's app
// binds its port only at the first deploy. Another caller could still pick
// the same port (one chance in thousands); the process that binds second
// then fails, saying so.
func Addr() (string, error) {
	lo, hi := reservedRange()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Port is Addr's port.
func Port() (int, error) {
	addr, err := Addr()
	if err != nil {
		return 0, err
	}
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return 0, err
	}
	return a.Port, nil
}

// reservedRange is where Addr picks ports: from 10000 up to the start of
// the kernel's ephemeral range (Linux's ip_local_port_range; 32768 on
// Linux by default, 49152 elsewhere).
func reservedRange() (lo, hi int) {
	lo, hi = 10000, 32768
	if runtime.GOOS != "linux" {
		return lo, 49152
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first > lo+1000 {
		hi = first
	}
	return lo, hi
}
