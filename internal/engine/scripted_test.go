package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/engine/enginetest"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
)

// scripted is a host driven by the user's scripts, as internal/exechost
// reports one: without a status script its version is assumed and what
// it replaced unknown; without a rollback script it says so up front.
type scripted struct {
	*enginetest.Host
	noRollback bool
}

func (s *scripted) Status(ctx context.Context) (host.Status, error) {
	st, err := s.Host.Status(ctx)
	return host.Status{Version: st.Version, Assumed: true}, err
}

func (s *scripted) Activate(ctx context.Context, version string) error {
	host.Output(ctx, "deploy script ./deploy.sh: exit status 0; output:\ndeployed "+version)
	return s.Host.Activate(ctx, version)
}

func (s *scripted) CanRollBack() error {
	if s.noRollback {
		return errors.New("no exec.rollback script")
	}
	return nil
}

// scriptedFleet is newFleet with its hosts scripted.
func scriptedFleet(t *testing.T, noRollback bool) (*fleet, map[string]*scripted) {
	f := newFleet(t, 3, 1)
	out := map[string]*scripted{}
	for name, h := range f.eng.Hosts {
		s := &scripted{Host: f.hosts[name], noRollback: noRollback}
		h.Deployer, out[name] = s, s
		f.eng.Hosts[name] = h
	}
	return f, out
}

// TestRollBackAssumedVersion: a host that cannot say what it ran before
// is rolled back by its own rollback all the same, through the balancer,
// and what its deploy script printed is in the journal.
func TestRollBackAssumedVersion(t *testing.T) {
	f, _ := scriptedFleet(t, false)
	f.hosts["staging-2"].Bad["v2"] = true
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, err %v, stranded %v", res.Status, res.Err, res.Stranded)
	}
	f.allOn(t, "v1")
	var activated, output bool
	for _, e := range f.journal.Events {
		activated = activated || e.Host == "staging-1" && e.Type == engine.EvActivated && e.Message == "activated the release before v2 again"
		output = output || e.Host == "staging-1" && e.Type == engine.EvInfo && strings.HasSuffix(e.Message, "output:\ndeployed v2")
	}
	if !activated || !output {
		t.Fatalf("events (rolled back %v, output %v): %+v", activated, output, f.journal.Events)
	}
}

// TestRollBackRefusedLeavesHostServing: a host that cannot roll back is
// not taken out of the balancer for nothing: it keeps serving what it
// runs, and the run names it for a person.
func TestRollBackRefusedLeavesHostServing(t *testing.T) {
	f, _ := scriptedFleet(t, true)
	f.hosts["staging-2"].Bad["v2"] = true
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusNeedsAttention {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
	why := res.Stranded["staging-1"]
	if !strings.Contains(why, "cannot roll back from v2: no exec.rollback script") || !strings.Contains(why, "it is attached") {
		t.Fatalf("staging-1 stranded as %q", why)
	}
	if f.hosts["staging-1"].Version() != "v2" || f.lb.State("127.0.0.1:8101") != lb.StateHealthy {
		t.Fatalf("staging-1 runs %s, %s", f.hosts["staging-1"].Version(), f.lb.State("127.0.0.1:8101"))
	}
	if n := strings.Count(strings.Join(f.lb.Calls, ","), "detach 127.0.0.1:8101"); n != 1 {
		t.Fatalf("staging-1 detached %d times, want once (its deploy): %v", n, f.lb.Calls)
	}
	if !slices.Contains(res.Changed, "staging-2") {
		t.Fatalf("changed %v", res.Changed)
	}
}
