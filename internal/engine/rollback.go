package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
)

// RollBack puts every given host back on the release it ran before this
// run's version, attaches it and waits until the load balancer reports it
// healthy. It works from what hosts and the balancer report, not from what
// the run remembers, so it also undoes a run that crashed. Hosts go one at a
// time, in reverse order of change, so capacity comes back steadily. It
// returns the hosts it could not restore, with the reason.
func (e *Engine) RollBack(ctx context.Context, hosts []string) map[string]string {
	e.init()
	flush := e.journalEvents()
	defer flush()
	stranded := map[string]string{}
	for i := len(hosts) - 1; i >= 0; i-- {
		name := hosts[i]
		if ctx.Err() != nil {
			stranded[name] = "the rollback was interrupted before this host; run zerodown rollback RUN again"
			e.emit(Event{Host: name, Type: EvDetached, Message: stranded[name]})
			continue
		}
		e.emit(Event{Host: name, Type: EvRollback, Message: "rolling back"})
		if err := e.rollBackHost(ctx, name); err != nil {
			stranded[name] = err.Error()
			e.emit(Event{Host: name, Type: EvDetached, Message: "could not roll back: " + err.Error()})
			continue
		}
		e.emit(Event{Host: name, Type: EvRolledBack, Message: "rolled back and healthy"})
	}
	return stranded
}

func (e *Engine) rollBackHost(ctx context.Context, name string) error {
	h, err := e.hostOf(name)
	if err != nil {
		return err
	}
	// A change under way completes under its own bound even when ctx ends;
	// ctx only cuts the wait for health at the end.
	callCtx, cancel := context.WithTimeout(context.Background(), defaultActivateBound)
	defer cancel()
	st, err := h.Deployer.Status(callCtx)
	if err != nil {
		return fmt.Errorf("read its status: %w (it may still be detached from the load balancer)", err)
	}
	if st.Version == e.Release.Version && st.Previous != "" && st.Previous != e.Release.Version {
		if err := h.Deployer.Rollback(callCtx); err != nil {
			return fmt.Errorf("roll back from %s to %s: %w", st.Version, st.Previous, err)
		}
		e.emit(Event{Host: name, Type: EvActivated, Message: "activated " + st.Previous + " again"})
	}
	tg, err := e.targetState(callCtx, h.Target)
	if err != nil {
		return err
	}
	if tg.State == lb.StateDraining || tg.State == lb.StateUnused {
		if err := e.LB.Attach(callCtx, h.Target); err != nil {
			return fmt.Errorf("attach %s: %w; it is still detached", h.Target, err)
		}
	}
	err = waitFor(ctx, e.HealthTimeout, fmt.Sprintf("%s (%s) to be healthy again", name, h.Target), "healthy",
		e.isHealthy(h.Target))
	var we *WaitError
	if errors.As(err, &we) {
		return fmt.Errorf("attached but not healthy after %s: %w", e.HealthTimeout.Round(time.Second), err)
	}
	return err
}
