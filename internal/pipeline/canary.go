package pipeline

import (
	"fmt"
	"slices"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// Canary expands the canary strategy of env: the artifact onto every host;
// the canary hosts updated one at a time with their share of traffic set
// to the first step's first; then each step's share, held for its pause
// while the canary is compared with the baseline; after the last step
// (the canary serving everything) the other hosts updated in batches, and
// every host's weight set back. Hosts in skip are left out; with every
// canary host skipped the canary is over and only the rest is updated.
func Canary(env *config.Environment, skip map[string]bool) (*Pipeline, error) {
	cn := env.Strategy.Canary
	if cn == nil || len(cn.Steps) == 0 {
		return nil, fmt.Errorf("environment %s: no canary strategy with steps", env.Name)
	}
	p := &Pipeline{Name: env.Name + "-canary", Environment: env.Name, Strategy: "canary"}
	k := cn.Hosts.Of(len(env.Hosts))
	if k < 1 || k >= len(env.Hosts) {
		return nil, fmt.Errorf("environment %s: %d canary hosts of %d leave no baseline", env.Name, k, len(env.Hosts))
	}
	var canary, rest []string
	for i, h := range env.Hosts {
		switch {
		case i < k:
			canary = append(canary, h.Name)
		case !skip[h.Name]:
			rest = append(rest, h.Name)
		}
	}
	var todo []string
	for _, h := range canary {
		if !skip[h] {
			todo = append(todo, h)
		}
	}
	if len(todo) == 0 && len(rest) == 0 {
		return p, nil
	}
	upload := Stage{Name: "upload"}
	for _, h := range append(slices.Clone(todo), rest...) {
		upload.Jobs = append(upload.Jobs, Job{Name: h, Tasks: []Task{{Kind: KindUpload, Host: h}}})
	}
	p.Stages = append(p.Stages, upload)
	drain := durationOr(cn.DrainTimeout, config.DefaultDrainTimeout)
	health := durationOr(cn.HealthTimeout, config.DefaultRolloutHealthTimeout)
	update := func(h string) []Task {
		return []Task{
			{Kind: KindDetach, Host: h},
			{Kind: KindWaitDrained, Host: h, Timeout: drain},
			{Kind: KindDeploy, Host: h},
			{Kind: KindAttach, Host: h},
			{Kind: KindWaitHealthy, Host: h, Timeout: health},
		}
	}
	weights := func(share int) Task {
		return Task{Kind: KindWeights, Weights: &config.WeightsTask{Canary: slices.Clone(canary), Share: share, Base: cn.Weight}}
	}
	if len(todo) > 0 {
		// The share is set before the canary comes back, so it never
		// gets more than the first step gives it.
		st := Stage{Name: "canary", Jobs: []Job{{Name: "canary", Tasks: []Task{weights(cn.Steps[0].Weight)}}}}
		for _, h := range todo {
			st.Jobs[0].Tasks = append(st.Jobs[0].Tasks, update(h)...)
		}
		p.Stages = append(p.Stages, st)
		for i, step := range cn.Steps {
			tasks := []Task{weights(step.Weight)}
			if step.Pause > 0 {
				tasks = append(tasks, Task{Kind: KindAnalyze, Analyze: &config.AnalyzeTask{
					Canary: slices.Clone(canary), For: step.Pause,
					MaxErrorRate: *cn.Analysis.MaxErrorRate, MaxP99Increase: *cn.Analysis.MaxP99Increase, MinRequests: cn.Analysis.MinRequests,
				}})
			}
			p.Stages = append(p.Stages, Stage{Name: fmt.Sprintf("step-%d-%d%%", i+1, step.Weight), Jobs: []Job{{Name: "canary", Tasks: tasks}}})
		}
	}
	if len(rest) > 0 {
		sizes, err := BatchSizes(cn.Batch, len(env.Hosts), len(rest))
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", env.Name, err)
		}
		next := 0
		for b, size := range sizes {
			st := Stage{Name: fmt.Sprintf("rollout-%d", b+1)}
			for _, h := range rest[next : next+size] {
				st.Jobs = append(st.Jobs, Job{Name: h, Tasks: update(h)})
			}
			next += size
			p.Stages = append(p.Stages, st)
		}
	}
	p.Stages = append(p.Stages, Stage{Name: "weights", Jobs: []Job{{Name: "weights", Tasks: []Task{weights(0)}}}})
	return p, nil
}

// canaryEstimate is an analysis's expected duration: its whole window.
func canaryEstimate(t Task) time.Duration {
	if t.Analyze == nil {
		return 0
	}
	return time.Duration(t.Analyze.For)
}
