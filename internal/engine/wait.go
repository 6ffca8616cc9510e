package engine

import (
	"context"
	"fmt"
	"time"
)

// Poll intervals of every wait: a fast first look, then backing off, so a
// state that holds at once costs one call and a long drain does not hammer
// the load balancer.
const (
	pollFirst  = 50 * time.Millisecond
	pollMax    = time.Second
	pollFactor = 1.5
)

// WaitError is a wait that ran out: what was expected, what was last seen
// and for how long.
type WaitError struct {
	What     string // "staging-1 (127.0.0.1:8101) to be drained"
	Expected string
	Observed string
	Waited   time.Duration
	Err      error // the last error of the check, if any
}

func (e *WaitError) Error() string {
	msg := fmt.Sprintf("waited %s for %s: expected %s, observed %s", e.Waited.Round(time.Millisecond), e.What, e.Expected, e.Observed)
	if e.Err != nil {
		msg += ": last check failed: " + e.Err.Error()
	}
	return msg
}

// check looks once: done when the state holds, observed describes what it
// saw, err is a failed look (retried until the deadline).
type check func(ctx context.Context) (done bool, observed string, err error)

// waitFor polls c with backoff until it holds, the timeout passes or ctx
// ends.
func waitFor(ctx context.Context, timeout time.Duration, what, expected string, c check) error {
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := pollFirst
	observed := "nothing yet"
	var lastErr error
	for {
		done, obs, err := c(ctx)
		if err == nil {
			if done {
				return nil
			}
			observed, lastErr = obs, nil
		} else if ctx.Err() == nil {
			lastErr = err
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			if parent.Err() != nil {
				return fmt.Errorf("stopped waiting for %s after %s: %w", what, time.Since(start).Round(time.Millisecond), context.Cause(parent))
			}
			return &WaitError{What: what, Expected: expected, Observed: observed, Waited: time.Since(start), Err: lastErr}
		case <-timer.C:
		}
		interval = min(time.Duration(float64(interval)*pollFactor), pollMax)
	}
}
