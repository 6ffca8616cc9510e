package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/store"
)

// RunSpec is the app spec run deployed: the one journaled with it, or
// zerodown.yaml's for a run from before runs kept theirs.
func RunSpec(run store.Run, cfg *config.Deploy) (config.App, error) {
	if len(run.Spec) == 0 {
		return cfg.App, nil
	}
	var app config.App
	if err := json.Unmarshal(run.Spec, &app); err != nil {
		return config.App{}, fmt.Errorf("run %s: its app spec in the journal is unreadable: %w", run.ID, err)
	}
	return app, nil
}

// Promotion is what `zerodown promote FROM TO` deploys: exactly the
// artifact (by sha256) and the app spec of a run that succeeded on FROM.
type Promotion struct {
	From store.Run
	App  config.App
}

// historyDepth is how many runs of an environment a promotion looks at
// for a version.
const historyDepth = 1000

// FindPromotion finds what to promote from env from: the artifact of its
// last run, which must have succeeded, or, with version, the last run of
// that version on from, which must have succeeded too. The artifact must
// still be at the path it was deployed from, with the same sha256.
// Anything else is refused as bad input, saying why.
func FindPromotion(ctx context.Context, st store.Store, cfg *config.Deploy, from, version string) (Promotion, error) {
	if _, err := Environment(cfg, from); err != nil {
		return Promotion{}, err
	}
	runs, err := st.ListRuns(ctx, from, historyDepth)
	if err != nil {
		return Promotion{}, err
	}
	var last *store.Run
	for i := range runs {
		if version == "" || runs[i].Version == version {
			last = &runs[i]
			break
		}
	}
	switch {
	case last == nil && version != "":
		return Promotion{}, badInput(fmt.Errorf("%s never ran version %s: only a build that passed %s can be promoted from it", from, version, from))
	case last == nil:
		return Promotion{}, badInput(fmt.Errorf("%s has no run yet: deploy there first, then promote", from))
	case last.Status != store.RunSucceeded:
		what := "the last run"
		if version != "" {
			what = "the last run of " + version
		}
		return Promotion{}, badInput(fmt.Errorf("%s on %s (run %s) did not succeed (%s): version %s did not pass %s and is not promoted",
			what, from, last.ID, last.Status, last.Version, from))
	}
	if len(last.Spec) == 0 {
		return Promotion{}, badInput(fmt.Errorf("run %s on %s was journaled by a zerodown that did not keep its app spec: deploy %s to %s again, then promote", last.ID, from, last.Version, from))
	}
	app, err := RunSpec(*last, cfg)
	if err != nil {
		return Promotion{}, err
	}
	rel, err := Release(last.Artifact, last.Version, app)
	if err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			return Promotion{}, badInput(fmt.Errorf("the artifact that passed %s in run %s is no longer usable: %w", from, last.ID, err))
		}
		return Promotion{}, err
	}
	if rel.SHA256 != last.SHA256 {
		return Promotion{}, badInput(fmt.Errorf("artifact %s changed since it passed %s in run %s (sha256 %s, was %s): only the build that passed is promoted",
			last.Artifact, from, last.ID, rel.SHA256, last.SHA256))
	}
	return Promotion{From: *last, App: app}, nil
}

// Request is the deploy of p to env.
func (p Promotion) Request(env string) Request {
	app := p.App
	return Request{Env: env, Version: p.From.Version, Artifact: p.From.Artifact, App: &app, PromotedFrom: p.From.ID, SHA256: p.From.SHA256}
}
