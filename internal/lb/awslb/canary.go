package awslb

import (
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	v2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/zerodown/zerodown/internal/lb"
)

// CanaryGroups is an application load balancer's canary: an ALB weighs
// target groups, not targets, so the canary hosts are the targets of a
// target group of their own, and the listener's default action forwards
// to it and to the main group by weight (weighted target groups). Calls
// about a target go to its group's driver.
//
// A group whose every target is out of service weighs 0 in the listener:
// an ALB does not move a request to another group when the one it picked
// has nothing to serve it, so the last canary target leaves the listener's
// weights before it is deregistered. The next share set gives the group
// its weight back.
type CanaryGroups struct {
	*lb.Pools
	client       *elbv2.Client
	region       string
	listener     string
	main, canary string         // target group ARNs
	count        map[string]int // our targets per group

	mu    sync.Mutex
	share int       // the canary's percent; 0: every target even
	wrote *[2]int32 // the weights written last (main, canary); nil before the first
}

var _ lb.Sharer = (*CanaryGroups)(nil)

// NewCanaryGroups joins the main and canary target groups' drivers behind
// listener, whose default action must be a forward. members maps every
// target address to its group's ARN.
func NewCanaryGroups(ctx context.Context, listener string, main, canary *ALB, members map[string]string) (*CanaryGroups, error) {
	if listener == "" {
		return nil, fmt.Errorf("aws-alb: the listener's ARN is empty: a canary needs the listener whose default action forwards to both target groups")
	}
	if main.arn == canary.arn {
		return nil, fmt.Errorf("aws-alb: the canary's target group %s is the main one: the canary needs a group of its own", main.arn)
	}
	p, err := lb.NewPools([]string{main.arn, canary.arn}, map[string]lb.Balancer{main.arn: main, canary.arn: canary}, members)
	if err != nil {
		return nil, fmt.Errorf("aws-alb: %w", err)
	}
	g := &CanaryGroups{Pools: p, client: main.client, region: main.region, listener: listener, main: main.arn, canary: canary.arn, count: map[string]int{}}
	for _, arn := range members {
		g.count[arn]++
	}
	out, err := g.client.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{listener}})
	if err != nil {
		return nil, explain(err, "aws-alb: describe listener "+listener, "DescribeListeners", g.region)
	}
	if len(out.Listeners) != 1 {
		return nil, fmt.Errorf("aws-alb: no listener %s", listener)
	}
	if acts := out.Listeners[0].DefaultActions; len(acts) != 1 || acts[0].Type != v2types.ActionTypeEnumForward {
		return nil, fmt.Errorf("aws-alb: listener %s's default action is not a single forward: the canary needs one forward, which zerodown gives the main and canary target groups by weight", listener)
	}
	return g, nil
}

func (g *CanaryGroups) String() string {
	return fmt.Sprintf("listener %s (target groups %s and, for the canary, %s)", g.listener, g.main, g.canary)
}

// SetShare implements lb.Sharer: the listener forwards share percent to
// the canary's group (0: each group by its number of targets, so every
// target gets an even share). canary are the canary's targets, which must
// be the canary group's.
func (g *CanaryGroups) SetShare(ctx context.Context, canary []string, share int) error {
	if share < 0 || share > 100 {
		return fmt.Errorf("aws-alb: a canary share of %d%%: want 0 to 100", share)
	}
	for _, addr := range canary {
		if g.PoolOf(addr) != g.canary {
			return fmt.Errorf("aws-alb: canary target %s is not in the canary's target group %s", addr, g.canary)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.share = share
	return g.weigh(ctx, "")
}

// Detach takes a target's group out of the listener's weights first when
// nothing else of it serves, then deregisters the target.
func (g *CanaryGroups) Detach(ctx context.Context, address string) error {
	g.mu.Lock()
	err := g.weigh(ctx, address)
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("detach %s: %w", address, err)
	}
	return g.Pools.Detach(ctx, address)
}

// weigh writes the listener's weights for the share, with 0 for a group
// that has no healthy target but leaving. Called with mu held.
func (g *CanaryGroups) weigh(ctx context.Context, leaving string) error {
	want := [2]int32{int32(100 - g.share), int32(g.share)}
	if g.share == 0 {
		want = [2]int32{int32(g.count[g.main]), int32(g.count[g.canary])}
	}
	ts, err := g.Targets(ctx)
	if err != nil {
		return err
	}
	serving := map[string]bool{}
	for _, t := range ts {
		if t.State == lb.StateHealthy && t.Address != leaving {
			serving[g.PoolOf(t.Address)] = true
		}
	}
	// With nothing healthy anywhere, the weights stay as the share says:
	// an ALB then sends each group's requests to its unhealthy targets.
	if serving[g.main] || serving[g.canary] {
		for i, arn := range []string{g.main, g.canary} {
			if !serving[arn] {
				want[i] = 0
			}
		}
	}
	if g.wrote != nil && *g.wrote == want {
		return nil
	}
	_, err = g.client.ModifyListener(ctx, &elbv2.ModifyListenerInput{
		ListenerArn: aws.String(g.listener),
		DefaultActions: []v2types.Action{{Type: v2types.ActionTypeEnumForward, ForwardConfig: &v2types.ForwardActionConfig{
			TargetGroups: []v2types.TargetGroupTuple{
				{TargetGroupArn: aws.String(g.main), Weight: aws.Int32(want[0])},
				{TargetGroupArn: aws.String(g.canary), Weight: aws.Int32(want[1])},
			}}}},
	})
	if err != nil {
		g.wrote = nil // unknown now: write again next time
		return explain(err, fmt.Sprintf("aws-alb: weigh target groups %d:%d on listener %s", want[0], want[1], g.listener), "ModifyListener", g.region)
	}
	g.wrote = &want
	return nil
}

// Weights are the listener's weights zerodown wrote last, main then canary
// (for tests and messages); false before the first.
func (g *CanaryGroups) Weights() ([2]int32, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.wrote == nil {
		return [2]int32{}, false
	}
	return *g.wrote, true
}
