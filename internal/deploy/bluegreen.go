package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/store"
)

// canSwitchBack refuses a rollback that would switch live traffic back to
// a pool that may no longer run what it ran: the run is not the
// environment's last (a later one deployed over its old pool), or its
// rollback window has passed.
func (o Options) canSwitchBack(ctx context.Context, f *fleet, run store.Run, sw *config.SwitchTask) error {
	if sw == nil {
		return nil
	}
	bg := f.env.Strategy.BlueGreen
	if f.sw == nil || bg == nil {
		return badInput(fmt.Errorf("run %s switched pools %s → %s, but environment %s is no longer blue-green in %s", run.ID, sw.From, sw.To, f.env.Name, o.Config.Path))
	}
	last, err := o.Store.ListRuns(ctx, run.Env, 1)
	if err != nil {
		return err
	}
	if len(last) > 0 && last[0].ID != run.ID {
		return badInput(fmt.Errorf("run %s is not the last run on %s (%s is): its old pool %s may have been deployed over since; roll back %s instead",
			run.ID, run.Env, last[0].ID, sw.From, last[0].ID))
	}
	// The window is what a switch back may not pass, whatever the run's
	// status says (a refused rollback, or one that died, left it).
	window := time.Duration(bg.RollbackWindow)
	if run.EndedAt.IsZero() || window <= 0 {
		return nil
	}
	since := time.Since(run.EndedAt)
	if since <= window {
		return nil
	}
	live, err := LivePool(ctx, f.env, f.sw)
	if err != nil {
		return err
	}
	if live == sw.To {
		return badInput(fmt.Errorf("run %s switched live traffic to pool %s %s ago, beyond its rollback_window of %s: pool %s is no longer kept to switch back to; deploy the release you want back instead",
			run.ID, sw.To, since.Round(time.Second), window, sw.From))
	}
	return nil
}

// LastRun is the environment's newest run, for `zerodown rollback ENV`.
func LastRun(ctx context.Context, cfg *config.Deploy, st store.Store, env string) (store.Run, error) {
	if _, err := Environment(cfg, env); err != nil {
		return store.Run{}, err
	}
	runs, err := st.ListRuns(ctx, env, 1)
	if err != nil {
		return store.Run{}, err
	}
	if len(runs) == 0 {
		return store.Run{}, badInput(fmt.Errorf("environment %s has no run to roll back", env))
	}
	return runs[0], nil
}
