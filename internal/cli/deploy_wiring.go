package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// ExitNeedsAttention: the run left a host in a state that needs a person.
const ExitNeedsAttention = 3

// loadDeployConfig reads zerodown.yaml; problems are the user's (exit 2).
func loadDeployConfig(path string) (*config.Deploy, error) {
	cfg, err := config.LoadDeploy(path)
	if err != nil {
		return nil, badInput(err)
	}
	return cfg, nil
}

func openStore(ctx context.Context, cfg *config.Deploy) (store.Store, error) {
	return sqlite.Open(ctx, cfg.State, sqlite.Options{})
}

// deployError maps what internal/deploy refused to the exit codes: bad
// input 2, a refused run (the lock) 1.
func deployError(err error) error {
	var ie *deploy.InputError
	if errors.As(err, &ie) {
		return badInput(err)
	}
	return err
}

// exitCode is the documented exit code of a run's outcome.
func exitCode(res engine.Result) int {
	switch res.Status {
	case engine.StatusSucceeded:
		return ExitOK
	case engine.StatusNeedsAttention:
		return ExitNeedsAttention
	}
	return ExitFailed
}

// outcomeError is the one message about how a run ended, or nil when it
// succeeded.
func outcomeError(o *deploy.Outcome) error {
	res := o.Result
	switch res.Status {
	case engine.StatusSucceeded:
		return nil
	case engine.StatusNeedsAttention:
		return &exitError{code: ExitNeedsAttention, err: fmt.Errorf("run %s needs attention: %v\n%s", o.Run.ID, res.Err, res.Summary())}
	case engine.StatusFailed:
		return &exitError{code: ExitFailed, err: fmt.Errorf("run %s failed, nothing was changed: %w", o.Run.ID, res.Err)}
	}
	return &exitError{code: ExitFailed, err: fmt.Errorf("run %s failed and was rolled back: %w", o.Run.ID, res.Err)}
}
