package engine

import (
	"context"
	"sync"
	"testing"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
)

// twoTargets is a balancer with every target healthy that records
// detaches.
type twoTargets struct {
	mu       sync.Mutex
	addrs    []string
	detached []string
}

func (b *twoTargets) Targets(context.Context) ([]lb.Target, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []lb.Target
	for _, a := range b.addrs {
		out = append(out, lb.Target{Address: a, State: lb.StateHealthy})
	}
	return out, nil
}
func (b *twoTargets) Attach(context.Context, string) error { return nil }
func (b *twoTargets) Detach(_ context.Context, a string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.detached = append(b.detached, a)
	return nil
}

// onPort is a host whose current release runs on one port.
type onPort struct {
	host.Deployer
	version string
	port    int
}

func (h onPort) Status(context.Context) (host.Status, error) {
	return host.Status{Version: h.version, Port: h.port, Running: true, Healthy: true}, nil
}

// When requests fail while both of a swap host's slots are attached, the
// suspect taken out is the new release's slot, not the old one's.
func TestDetachSuspectsTakesTheNewSlot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		port      int
		wantTaken string
	}{
		{"new release on swap_target", 8201, "127.0.0.1:8201"},
		{"new release on target", 8101, "127.0.0.1:8101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bal := &twoTargets{addrs: []string{"127.0.0.1:8101", "127.0.0.1:8201", "127.0.0.1:8301"}}
			e := &Engine{LB: bal, Release: host.Release{Version: "v2"}, Hosts: map[string]Host{
				"web-1": {Name: "web-1", Target: "127.0.0.1:8101", SwapTarget: "127.0.0.1:8201", Deployer: onPort{version: "v2", port: tc.port}},
			}}
			e.init()
			e.detachSuspects([]string{"web-1"})
			if len(bal.detached) != 1 || bal.detached[0] != tc.wantTaken {
				t.Fatalf("detached %v, want only %s", bal.detached, tc.wantTaken)
			}
		})
	}
}
