package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
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
	// A canary's weights go back first (a rollback of a run that died at
	// its last step finds the others at weight 0), and again at the end.
	e.resetWeights()
	stranded := map[string]string{}
	if e.Switcher != nil && e.Switch != nil {
		// Blue-green: the old pool still runs the old release, so going
		// back is a switch, in well under a second. The new pool's hosts
		// then serve only the preview and are left as they are: the next
		// deploy replaces them.
		switched, err := e.switchBack()
		if err != nil {
			key := "pool " + e.Switch.To
			stranded[key] = err.Error()
			if switched {
				stranded[key] += "; live traffic still goes to pool " + e.Switch.To
			}
			e.emit(Event{Type: EvDetached, Message: "could not switch back: " + stranded[key]})
			return stranded
		}
		if switched {
			e.emit(Event{Type: EvRolledBack, Message: fmt.Sprintf("live traffic is back on pool %s; pool %s keeps %s for the preview until the next deploy",
				e.Switch.From, e.Switch.To, e.Release.Version)})
			return stranded
		}
	}
	for i := len(hosts) - 1; i >= 0; i-- {
		name := hosts[i]
		if ctx.Err() != nil {
			stranded[name] = "the rollback was interrupted before this host; run zerodown rollback RUN again"
			e.emit(Event{Host: name, Type: EvDetached, Message: stranded[name]})
			continue
		}
		e.emit(Event{Host: name, Type: EvRollback, Message: "rolling back"})
		if err := e.rollBackHost(ctx, name); err != nil {
			stranded[name] = err.Error() + "; " + e.whereIs(name)
			e.emit(Event{Host: name, Type: EvDetached, Message: "could not roll back: " + stranded[name]})
			continue
		}
		e.emit(Event{Host: name, Type: EvRolledBack, Message: "rolled back and healthy"})
	}
	e.resetWeights()
	return stranded
}

// whereIs says, from the load balancer itself, whether a host is attached:
// a host left behind by a failed rollback must be named for what it is,
// not for what the failed step suggests.
func (e *Engine) whereIs(name string) string {
	h, err := e.hostOf(name)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	if h.SwapTarget != "" {
		// Two slots: say where each stands.
		var parts []string
		for _, addr := range []string{h.Target, h.SwapTarget} {
			tg, err := e.targetState(ctx, addr)
			if err != nil {
				return "the load balancer could not be asked whether it is attached: " + err.Error()
			}
			parts = append(parts, fmt.Sprintf("%s %s", addr, tg.State))
		}
		return "the load balancer reports " + strings.Join(parts, " and ")
	}
	tg, err := e.targetState(ctx, h.Target)
	if err != nil {
		return "the load balancer could not be asked whether it is attached: " + err.Error()
	}
	switch tg.State {
	case lb.StateDraining, lb.StateUnused:
		return fmt.Sprintf("the load balancer reports %s %s: it is detached", h.Target, tg.State)
	}
	return fmt.Sprintf("the load balancer reports %s %s: it is attached", h.Target, tg.State)
}

// waitActivation waits, when st shows an activation in progress on h,
// until it has ended, and returns h's status then.
func (e *Engine) waitActivation(ctx context.Context, h Host, st host.Status) (host.Status, error) {
	if st.Activating == "" {
		return st, nil
	}
	e.emit(Event{Host: h.Name, Type: EvWaiting, Message: "waiting for its activation of " + st.Activating + " to end"})
	err := waitFor(ctx, activateBound(h, defaultActivateBound), h.Name+"'s activation of "+st.Activating+" to end", "no activation", func(ctx context.Context) (bool, string, error) {
		s, err := h.Deployer.Status(ctx)
		if err != nil {
			return false, "", err
		}
		st = s
		if s.Activating != "" {
			return false, "activating " + s.Activating, nil
		}
		return true, "", nil
	})
	return st, err
}

func (e *Engine) rollBackHost(ctx context.Context, name string) error {
	h, err := e.hostOf(name)
	if err != nil {
		return err
	}
	// A change under way completes under its own bound even when ctx ends;
	// ctx only cuts the waits.
	callCtx, cancel := context.WithTimeout(context.Background(), activateBound(h, defaultActivateBound))
	defer cancel()
	st, err := h.Deployer.Status(callCtx)
	if err != nil {
		return fmt.Errorf("read its status: %w", err)
	}
	// An activation the run stopped waiting for (an abort) goes on on the
	// host; what to undo is known once it has ended.
	if st, err = e.waitActivation(ctx, h, st); err != nil {
		return err
	}
	if h.SwapTarget != "" {
		var change func(context.Context) error
		if st.Version == e.Release.Version && st.Previous != "" && st.Previous != e.Release.Version {
			sw, err := swapperOf(h)
			if err != nil {
				return err
			}
			change = func(ctx context.Context) error {
				if err := sw.RollbackSwap(ctx); err != nil {
					return fmt.Errorf("roll back from %s to %s: %w", st.Version, st.Previous, err)
				}
				e.emit(Event{Host: name, Type: EvActivated, Message: "activated " + st.Previous + " again, in the other slot"})
				return nil
			}
		}
		return e.swapHost(ctx, h, change)
	}
	// A host that cannot say what it runs goes back by its own rollback,
	// whether or not zerodown knows to which version.
	if st.Version == e.Release.Version && (st.Previous != "" || st.Assumed) && st.Previous != e.Release.Version {
		if c, ok := h.Deployer.(host.RollbackChecker); ok {
			if err := c.CanRollBack(); err != nil {
				return fmt.Errorf("cannot roll back from %s: %w", st.Version, err)
			}
		}
		prev := st.Previous
		if prev == "" {
			prev = "the release before " + st.Version
		}
		return e.changeHost(ctx, h, func(ctx context.Context) error {
			if err := h.Deployer.Rollback(ctx); err != nil {
				return fmt.Errorf("roll back from %s to %s: %w", st.Version, prev, err)
			}
			e.emit(Event{Host: name, Type: EvActivated, Message: "activated " + prev + " again"})
			return nil
		})
	}
	// Nothing to undo on the host itself: it only has to serve again.
	tg, err := e.targetState(callCtx, h.Target)
	if err != nil {
		return err
	}
	if tg.State == lb.StateDraining || tg.State == lb.StateUnused {
		if err := e.attach(pipeline.Task{Kind: pipeline.KindAttach, Host: name}); err != nil {
			return err
		}
	}
	return e.waitHealthyAgain(ctx, h)
}

// changeHost is the one way a host that may serve traffic is changed,
// forward or back: out of the load balancer under min_healthy, drained,
// changed, attached, and healthy again. A rolling deploy runs the same
// steps as journaled tasks; a rollback, which must also undo a run whose
// process died, runs them here.
func (e *Engine) changeHost(ctx context.Context, h Host, change func(context.Context) error) error {
	if err := e.detach(pipeline.Task{Kind: pipeline.KindDetach, Host: h.Name}); err != nil {
		return err
	}
	if err := e.waitDrained(ctx, pipeline.Task{Kind: pipeline.KindWaitDrained, Host: h.Name}); err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(context.Background(), activateBound(h, defaultActivateBound))
	err := change(e.reporting(callCtx, h.Name))
	cancel()
	if err != nil {
		return err
	}
	if err := e.attach(pipeline.Task{Kind: pipeline.KindAttach, Host: h.Name}); err != nil {
		return err
	}
	return e.waitHealthyAgain(ctx, h)
}

func (e *Engine) waitHealthyAgain(ctx context.Context, h Host) error {
	err := e.waitHealthy(ctx, pipeline.Task{Kind: pipeline.KindWaitHealthy, Host: h.Name, Timeout: e.HealthTimeout})
	var we *WaitError
	if errors.As(err, &we) {
		return fmt.Errorf("attached but not healthy after %s: %w", e.HealthTimeout.Round(time.Second), err)
	}
	return err
}

// detachSuspects takes every changed host that serves the new version out
// of the load balancer at once, when requests are failing: the new version
// is the likely cause, and each second it keeps serving fails more
// requests. It keeps them in while nothing else could serve.
func (e *Engine) detachSuspects(hosts []string) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	targets, err := e.LB.Targets(ctx)
	if err != nil {
		e.emit(Event{Type: EvInfo, Message: "could not read the load balancer to take the new version out first: " + err.Error()})
		return
	}
	state := map[string]lb.State{}
	for _, t := range targets {
		state[t.Address] = t.State
	}
	var suspects []Host
	isSuspect := map[string]bool{}
	for _, name := range hosts {
		h, err := e.hostOf(name)
		if err != nil {
			continue
		}
		st, err := h.Deployer.Status(ctx)
		if err != nil || st.Version != e.Release.Version {
			continue
		}
		if h.SwapTarget != "" {
			// Two slots: the new release is in the current one.
			cur, _, err := e.slots(ctx, h)
			if err != nil {
				continue
			}
			h.Target = cur
		}
		if s := state[h.Target]; s == lb.StateDraining || s == lb.StateUnused {
			continue
		}
		suspects = append(suspects, h)
		isSuspect[h.Target] = true
	}
	others := 0
	for addr, s := range state {
		if s == lb.StateHealthy && !isSuspect[addr] {
			others++
		}
	}
	if len(suspects) == 0 || others == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, h := range suspects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.detachNow(ctx, h, "detaching "+h.Target+": it serves "+e.Release.Version+" while requests fail"); err != nil {
				e.emit(Event{Host: h.Name, Type: EvInfo, Message: err.Error()})
			}
		}()
	}
	wg.Wait()
}
