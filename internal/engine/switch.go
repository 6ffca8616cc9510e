package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// switchLive sends live traffic from the task's pool to the other. It
// reads where live traffic goes first: a resumed run whose switch already
// happened passes, and a pool switched meanwhile by someone else stops the
// run rather than being switched over.
func (e *Engine) switchLive(t pipeline.Task) error {
	sw := t.Switch
	if sw == nil {
		return errors.New("switch: no pools")
	}
	if e.Switcher == nil {
		return fmt.Errorf("switch %s → %s: this environment's load balancer cannot switch pools (strategy.blue_green on the builtin, haproxy, nginx or aws-alb driver can)", sw.From, sw.To)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound(t, defaultLBCallTimeout))
	defer cancel()
	live, err := e.Switcher.Live(ctx)
	if err != nil {
		return fmt.Errorf("switch %s → %s: read where live traffic goes: %w", sw.From, sw.To, err)
	}
	switch live {
	case sw.To:
		e.markSwitched()
		e.emit(Event{Type: EvInfo, Message: "live traffic already goes to pool " + sw.To})
		return nil
	case sw.From:
	default:
		return fmt.Errorf("switch %s → %s: live traffic goes to pool %s, not %s as planned: plan again", sw.From, sw.To, live, sw.From)
	}
	e.emit(Event{Type: EvInfo, Message: "switching live traffic from pool " + sw.From + " to pool " + sw.To})
	start := time.Now()
	// Marked before the call: a switch that fails half-way (the live
	// route moved, the preview did not) is undone by the rollback too.
	e.markSwitched()
	if err := e.Switcher.SwitchLive(ctx, sw.To); err != nil {
		return fmt.Errorf("switch %s → %s: %w", sw.From, sw.To, err)
	}
	e.emit(Event{Type: EvSwitched, Message: fmt.Sprintf("live traffic switched from pool %s to pool %s in %s; pool %s keeps running the old release",
		sw.From, sw.To, time.Since(start).Round(10*time.Microsecond), sw.From)})
	return nil
}

func (e *Engine) markSwitched() {
	e.mu.Lock()
	e.switched = true
	e.mu.Unlock()
}

func (e *Engine) hasSwitched() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.switched
}

// switchBack is a blue-green rollback: when live traffic goes to the
// run's new pool, it goes back to the old one, which still runs the old
// release. It reports whether live traffic went to the new pool.
func (e *Engine) switchBack() (bool, error) {
	sw := e.Switch
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	live, err := e.Switcher.Live(ctx)
	if err != nil {
		return false, fmt.Errorf("read where live traffic goes: %w", err)
	}
	if live != sw.To {
		return false, nil
	}
	e.emit(Event{Type: EvInfo, Message: "switching live traffic back from pool " + sw.To + " to pool " + sw.From})
	start := time.Now()
	if err := e.Switcher.SwitchLive(ctx, sw.From); err != nil {
		return true, fmt.Errorf("switch live traffic back from pool %s to pool %s: %w", sw.To, sw.From, err)
	}
	e.emit(Event{Type: EvSwitched, Message: fmt.Sprintf("live traffic switched back from pool %s to pool %s in %s",
		sw.To, sw.From, time.Since(start).Round(10*time.Microsecond))})
	return true, nil
}

// previewLoad fires the task's load at the preview route; one failed or
// dropped request fails the task.
func previewLoad(stop context.Context, t pipeline.Task) error {
	l := t.Load
	if l == nil {
		return errors.New("preview-load: no url")
	}
	g, err := loadgen.New(loadgen.Config{
		Targets:  []loadgen.Target{{Label: "GET " + l.URL, Method: "GET", URL: l.URL}},
		Rate:     float64(l.Rate),
		Duration: time.Duration(l.Duration),
	})
	if err != nil {
		return fmt.Errorf("preview-load %s: %w", l.URL, err)
	}
	rep, err := g.Run(stop)
	if stop.Err() != nil {
		return ErrAborted
	}
	if err != nil {
		return fmt.Errorf("preview-load %s: %w", l.URL, err)
	}
	if rep.Requests.Failed > 0 || rep.Requests.Dropped > 0 {
		return fmt.Errorf("preview-load %s: %d of %d requests failed and %d were dropped (%s)",
			l.URL, rep.Requests.Failed, rep.Requests.Total, rep.Requests.Dropped, rep.OutcomeLine())
	}
	return nil
}
