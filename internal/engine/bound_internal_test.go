package engine

import (
	"context"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/host"
)

// bounded is a deployer whose calls run under a deadline of their own.
type bounded struct {
	host.Deployer
	d time.Duration
}

func (b bounded) Bound() time.Duration { return b.d }

type plain struct{ host.Deployer }

func (plain) Status(context.Context) (host.Status, error) { return host.Status{}, nil }

// TestActivateBound: the engine waits for an activation at least as long
// as the deployer's own deadline, plus a margin, and never less than the
// task's bound.
func TestActivateBound(t *testing.T) {
	cases := []struct {
		name string
		d    host.Deployer
		wait time.Duration
		want time.Duration
	}{
		{"no bound of its own", plain{}, 10 * time.Minute, 10 * time.Minute},
		{"a longer script deadline", bounded{d: 30 * time.Minute}, 10 * time.Minute, 30*time.Minute + activateMargin},
		{"a short script deadline", bounded{d: 2 * time.Second}, 10 * time.Minute, 10 * time.Minute},
	}
	for _, tc := range cases {
		if got := activateBound(Host{Deployer: tc.d}, tc.wait); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
