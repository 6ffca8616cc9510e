package engine

import (
	"context"
	"fmt"
	"net"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// hostFor resolves a task's host with the target its slot names: the new
// slot is the one the host's current release runs in, as the host
// reports it; the old slot is the other.
func (e *Engine) hostFor(t pipeline.Task) (Host, error) {
	h, err := e.hostOf(t.Host)
	if err != nil || (t.Slot != pipeline.SlotNew && t.Slot != pipeline.SlotOld) {
		return h, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	cur, other, err := e.slots(ctx, h)
	if err != nil {
		return Host{}, err
	}
	if t.Slot == pipeline.SlotNew {
		h.Target = cur
	} else {
		h.Target = other
	}
	return h, nil
}

// slots returns the target of the slot h's current release runs in, and
// the other one.
func (e *Engine) slots(ctx context.Context, h Host) (cur, other string, err error) {
	if h.SwapTarget == "" {
		return "", "", fmt.Errorf("%s has no swap_target: it has one slot", h.Name)
	}
	st, err := h.Deployer.Status(ctx)
	if err != nil {
		return "", "", fmt.Errorf("%s: read which slot runs the app: %w", h.Name, err)
	}
	switch fmt.Sprint(st.Port) {
	case portOf(h.Target):
		return h.Target, h.SwapTarget, nil
	case portOf(h.SwapTarget):
		return h.SwapTarget, h.Target, nil
	}
	return "", "", fmt.Errorf("%s runs the app on port %d, which is the port of neither its target %s nor its swap_target %s: the agent's port and swap_port must be theirs",
		h.Name, st.Port, h.Target, h.SwapTarget)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func swapperOf(h Host) (host.Swapper, error) {
	sw, ok := h.Deployer.(host.Swapper)
	if !ok {
		return nil, fmt.Errorf("%s: its deployer cannot run a release in a second slot", h.Name)
	}
	return sw, nil
}

// retire stops the release a swap left in the host's old slot.
func (e *Engine) retire(t pipeline.Task) error {
	h, err := e.hostOf(t.Host)
	if err != nil {
		return err
	}
	sw, err := swapperOf(h)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound(t, defaultActivateBound))
	defer cancel()
	if err := sw.Retire(ctx); err != nil {
		return fmt.Errorf("retire the old release on %s: %w", h.Name, err)
	}
	e.emit(Event{Host: h.Name, Type: EvInfo, Message: "stopped the old release in the other slot"})
	return nil
}

// swapHost is the one way a rollback changes a host with two slots:
// change (the release into the idle slot), then the current slot's
// target attached and healthy, the other's detached, drained, and its
// release stopped. The same steps the swap strategy's tasks run; with a
// nil change it only puts the slots in order.
func (e *Engine) swapHost(ctx context.Context, h Host, change func(context.Context) error) error {
	if change != nil {
		callCtx, cancel := context.WithTimeout(context.Background(), defaultActivateBound)
		err := change(callCtx)
		cancel()
		if err != nil {
			return err
		}
	}
	lbCtx, cancel := context.WithTimeout(ctx, defaultLBCallTimeout)
	cur, other, err := e.slots(lbCtx, h)
	var curT, otherT lb.Target
	if err == nil {
		curT, err = e.targetState(lbCtx, cur)
	}
	if err == nil {
		otherT, err = e.targetState(lbCtx, other)
	}
	cancel()
	if err != nil {
		return err
	}
	task := func(kind pipeline.Kind, slot string) pipeline.Task {
		return pipeline.Task{Kind: kind, Host: h.Name, Slot: slot}
	}
	if curT.State == lb.StateDraining || curT.State == lb.StateUnused {
		if err := e.attach(task(pipeline.KindAttach, pipeline.SlotNew)); err != nil {
			return err
		}
	}
	wait := task(pipeline.KindWaitHealthy, pipeline.SlotNew)
	wait.Timeout = e.HealthTimeout
	if err := e.waitHealthy(ctx, wait); err != nil {
		return fmt.Errorf("attached but not healthy: %w", err)
	}
	if otherT.State != lb.StateUnused {
		if err := e.detach(task(pipeline.KindDetach, pipeline.SlotOld)); err != nil {
			return err
		}
		if err := e.waitDrained(ctx, task(pipeline.KindWaitDrained, pipeline.SlotOld)); err != nil {
			return err
		}
	}
	return e.retire(task(pipeline.KindRetire, ""))
}
