package awslb

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/awsfake"
	"github.com/zerodown/zerodown/internal/lb/lbtest"
	"github.com/zerodown/zerodown/internal/proctest"
)

// A canary through an ALB's weighted target groups: the listener's
// weights follow the share, the last canary target takes its group out of
// the weights before it is deregistered (no request fails under load
// while it drains and comes back), and the share gives the weight back.
func TestCanaryGroups(t *testing.T) {
	f := newFake(t)
	addrs := map[string]string{"a": app(t, "a"), "b": app(t, "b"), "c": app(t, "c")}
	group := func(name string, members ...string) *awsfake.Proxy {
		var reg []awsfake.Target
		for _, m := range members {
			ip, ps, _ := net.SplitHostPort(addrs[m])
			port, _ := strconv.Atoi(ps)
			reg = append(reg, awsfake.Target{ID: ip, Port: port})
		}
		px, err := f.AddTargetGroup(awsfake.TargetGroup{Name: name, TargetType: "ip", HealthCheckPath: "/healthz",
			Interval: 5, Timeout: 5, HealthyThreshold: 2, UnhealthyThreshold: 2, DeregistrationDelay: 50, Registered: reg})
		if err != nil {
			t.Fatal(err)
		}
		return px
	}
	mainPx, canaryPx := group("main", "a", "b"), group("canary", "c")
	listener, err := f.AddListener(awsfake.Listener{TargetGroupARN: mainPx.ARN()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgFor(f, 20*time.Millisecond)
	mainB, err := NewALB(ctxFor(t), cfg, mainPx.ARN(), map[string]string{addrs["a"]: "", addrs["b"]: ""})
	if err != nil {
		t.Fatal(err)
	}
	canaryB, err := NewALB(ctxFor(t), cfg, canaryPx.ARN(), map[string]string{addrs["c"]: ""})
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]string{addrs["a"]: mainPx.ARN(), addrs["b"]: mainPx.ARN(), addrs["c"]: canaryPx.ARN()}
	if _, err := NewCanaryGroups(ctxFor(t), listener.ARN(), mainB, mainB, members); err == nil {
		t.Fatal("one group as both main and canary was accepted")
	}
	g, err := NewCanaryGroups(ctxFor(t), listener.ARN(), mainB, canaryB, members)
	if err != nil {
		t.Fatal(err)
	}
	weights := func(main, canary int) {
		t.Helper()
		if w := listener.Weights(); w[mainPx.ARN()] != main || w[canaryPx.ARN()] != canary {
			t.Fatalf("the listener weighs main %d, canary %d; want %d and %d", w[mainPx.ARN()], w[canaryPx.ARN()], main, canary)
		}
	}
	canary := []string{addrs["c"]}
	for _, tc := range []struct{ share, main, canary int }{{0, 2, 1}, {10, 90, 10}, {100, 0, 100}, {0, 2, 1}} {
		if err := g.SetShare(ctxFor(t), canary, tc.share); err != nil {
			t.Fatal(err)
		}
		weights(tc.main, tc.canary)
	}
	if err := g.SetShare(ctxFor(t), []string{addrs["a"]}, 10); err == nil {
		t.Fatal("a canary target of the main group was accepted")
	}
	weights(2, 1)

	if err := g.SetShare(ctxFor(t), canary, 25); err != nil {
		t.Fatal(err)
	}
	l := startLoad(listener.URL())
	proctest.Eventually(t, 5*time.Second, "load through the listener", func() bool { return l.ok.Load() > 20 })
	if err := g.Detach(ctxFor(t), addrs["c"]); err != nil {
		t.Fatal(err)
	}
	weights(75, 0)
	proctest.Eventually(t, 10*time.Second, "the canary target unused", func() bool {
		return lbtest.Target(t, g, addrs["c"]).State == lb.StateUnused
	})
	if err := g.Attach(ctxFor(t), addrs["c"]); err != nil {
		t.Fatal(err)
	}
	weights(75, 0) // attached is not yet healthy
	proctest.Eventually(t, 10*time.Second, "the canary target healthy", func() bool {
		return lbtest.Target(t, g, addrs["c"]).State == lb.StateHealthy
	})
	if err := g.SetShare(ctxFor(t), canary, 25); err != nil {
		t.Fatal(err)
	}
	weights(75, 25)
	before := canaryPx.Stats().Requests
	proctest.Eventually(t, 5*time.Second, "the canary's group serving again", func() bool { return canaryPx.Stats().Requests > before+5 })
	// A main target leaving with another healthy keeps the weights.
	if err := g.Detach(ctxFor(t), addrs["a"]); err != nil {
		t.Fatal(err)
	}
	weights(75, 25)
	l.end(t)
	for _, px := range []*awsfake.Proxy{mainPx, canaryPx} {
		if st := px.Stats(); st.Failures != 0 {
			t.Fatalf("target group %s failed requests: %+v", px.ARN(), st)
		}
	}
}
