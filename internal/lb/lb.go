// Package lb declares what the deploy engine needs from a load balancer, and
// the target states every driver reports in ELBv2's words.
package lb

import (
	"context"
	"time"
)

// State is a target's state as the load balancer sees it.
type State string

// Target states, as AWS ELBv2 names them.
const (
	StateInitial   State = "initial"
	StateHealthy   State = "healthy"
	StateUnhealthy State = "unhealthy"
	StateDraining  State = "draining"
	StateUnused    State = "unused"
)

// Target is one backend address of a pool and what the balancer knows of it.
type Target struct {
	Address  string // ip:port
	State    State
	InFlight int
	Weight   int
	// Reason is the balancer's explanation of the state, such as the last
	// failed health check; empty when it has none.
	Reason string
	// Cut counts requests the balancer cut because they were still in
	// flight when its draining bound ran out; a driver that cannot tell
	// reports 0.
	Cut int64
}

// DrainBounder is the optional capability of telling how long the
// balancer lets a detached target's requests finish before it cuts them:
// the builtin deregistration_delay, ELB's deregistration delay, HAProxy's
// and nginx's equivalents. The engine waits for a drain at least that
// long, so it never gives up a moment before the balancer would.
type DrainBounder interface {
	DrainBound(ctx context.Context) (time.Duration, error)
}

// HealthBounder is the optional capability of telling how long the
// balancer's own health checks may take to report a newly attached target
// healthy once it serves: HAProxy's rise × inter, ELB's healthy threshold ×
// (interval + timeout). The engine waits for health at least that long.
type HealthBounder interface {
	HealthBound(ctx context.Context) (time.Duration, error)
}

// DrainFinisher is the optional capability of a last step once the engine
// has seen a detached target drained: HAProxy puts the server in
// maintenance, so neither its checks nor a sticky session reach it while
// the host changes.
type DrainFinisher interface {
	FinishDrain(ctx context.Context, address string) error
}

// Advisor is the optional capability of reading the balancer's settings
// and saying what in them makes a deploy slower or riskier than it needs
// to be, with the fix: `zerodown check`, `plan` and the start of a run
// print it.
type Advisor interface {
	Advice(ctx context.Context) ([]string, error)
}

// Balancer is the engine's view of one pool of one load balancer. Attach and
// Detach return once the change is made, without waiting for the target to
// become healthy or drained: the engine observes that through Targets.
type Balancer interface {
	Targets(ctx context.Context) ([]Target, error)
	Attach(ctx context.Context, address string) error
	Detach(ctx context.Context, address string) error
}

// Weighter is the optional capability of shifting traffic by weight (canary).
type Weighter interface {
	SetWeight(ctx context.Context, address string, weight int) error
}

// Sharer is the optional capability of splitting traffic between the
// canary's targets and the others as two wholes, where the balancer
// weighs groups rather than targets (an ALB's weighted target groups).
// Share is the canary's percent; 0 gives every target an even share again.
// A Sharer is used in place of a Weighter when a balancer is both.
type Sharer interface {
	SetShare(ctx context.Context, canary []string, share int) error
}

// Counts are what a load balancer did that its clients cannot see: requests
// it sent again to another target after a failure, and failures toward
// targets (connections refused, reset, timed out). A verifier that only
// counts its own answers misses a failure the balancer retried away.
type Counts struct {
	Retries      uint64
	TargetErrors uint64
}

// Counter is the optional capability of reporting Counts for the pool,
// since the balancer started; a run compares two readings.
type Counter interface {
	Counts(ctx context.Context) (Counts, error)
}

// TargetStat is what a balancer counted for one target since it started.
type TargetStat struct {
	// Requests counts answers from the target (and failures toward it);
	// Errors those that were 5xx or failed on the way.
	Requests, Errors uint64
}

// TargetStatser is the optional capability of counting answers per target:
// canary analysis compares the canary's targets with the baseline's on
// two readings.
type TargetStatser interface {
	TargetStats(ctx context.Context) (map[string]TargetStat, error)
}
