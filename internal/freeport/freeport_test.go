package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrOutsideTheEphemeralRange: the address is free, on loopback, and
// below the range the kernel hands out for :0 and outgoing connections.
func TestAddrOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := reservedRange()
	if lo >= hi {
		t.Fatalf("range %d-%d", lo, hi)
	}
	for range 20 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if host != "127.0.0.1" || p < lo || p >= hi {
			t.Fatalf("%s: want 127.0.0.1 with a port in %d-%d", addr, lo, hi)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		ln.Close()
	}
}
