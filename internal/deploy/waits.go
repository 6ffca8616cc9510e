package deploy

import (
	"cmp"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// RecipeSleep is what the hand-made recipe zerodown replaces waits after
// each load balancer call, whatever the balancer's settings.
const RecipeSleep = 60 * time.Second

// Waits are the longest a deploy waits per host for a drain and for
// health, from the config and the balancer's own settings, and what the
// balancer advises about them.
type Waits struct {
	// DrainBound and HealthBound are the balancer's own (0: it has none
	// or did not tell).
	DrainBound  time.Duration `json:"-"`
	HealthBound time.Duration `json:"-"`
	// Drain and Health are what a deploy waits at most per host.
	Drain  time.Duration `json:"-"`
	Health time.Duration `json:"-"`
	Advice []string      `json:"advice"`
	// Unread says which settings could not be read, and why.
	Unread []string `json:"unread,omitempty"`
}

// MarshalJSON writes the durations in seconds.
func (w Waits) MarshalJSON() ([]byte, error) {
	type plain Waits
	return json.Marshal(struct {
		DrainBound  float64 `json:"drain_bound_s"`
		HealthBound float64 `json:"health_bound_s"`
		Drain       float64 `json:"drain_s"`
		Health      float64 `json:"health_s"`
		plain
	}{w.DrainBound.Seconds(), w.HealthBound.Seconds(), w.Drain.Seconds(), w.Health.Seconds(), plain(w)})
}

// StrategyTimeouts are the drain and health timeouts of env's strategy,
// with their defaults.
func StrategyTimeouts(env *config.Environment) (drain, health time.Duration) {
	drain, health, _ = env.Strategy.HostTimeouts()
	if drain <= 0 {
		drain = config.DefaultDrainTimeout
	}
	if health <= 0 {
		health = config.DefaultRolloutHealthTimeout
	}
	return drain, health
}

// PipelineTimeouts are the longest drain and health timeouts of p's wait
// tasks, a task without one taking the engine's default (0 when p has no
// such task).
func PipelineTimeouts(p *pipeline.Pipeline) (drain, health time.Duration) {
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			for _, t := range j.Tasks {
				switch t.Kind {
				case pipeline.KindWaitDrained:
					drain = max(drain, cmp.Or(t.Timeout, config.DefaultDrainTimeout))
				case pipeline.KindWaitHealthy:
					health = max(health, cmp.Or(t.Timeout, config.DefaultRolloutHealthTimeout))
				}
			}
		}
	}
	return drain, health
}

// ReadWaits asks bal for its bounds and advice, each within ctx, and
// works out the longest waits for a drain and for health that steps
// bounded by drainTimeout and healthTimeout get: the rule the engine
// applies (engine.Beyond).
func ReadWaits(ctx context.Context, bal lb.Balancer, drainTimeout, healthTimeout time.Duration) Waits {
	w := Waits{Advice: []string{}}
	var mu sync.Mutex
	unread := func(what string, err error) {
		mu.Lock()
		w.Unread = append(w.Unread, what+": "+err.Error())
		mu.Unlock()
	}
	var wg sync.WaitGroup
	if b, ok := bal.(lb.DrainBounder); ok {
		wg.Go(func() {
			d, err := b.DrainBound(ctx)
			if err != nil {
				unread("draining bound", err)
			}
			w.DrainBound = d
		})
	}
	if b, ok := bal.(lb.HealthBounder); ok {
		wg.Go(func() {
			d, err := b.HealthBound(ctx)
			if err != nil {
				unread("health check bound", err)
			}
			w.HealthBound = d
		})
	}
	if a, ok := bal.(lb.Advisor); ok {
		wg.Go(func() {
			advice, err := a.Advice(ctx)
			if err != nil {
				unread("settings", err)
			}
			mu.Lock()
			w.Advice = append(w.Advice, advice...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if drainTimeout > 0 {
		w.Drain = engine.Beyond(drainTimeout, w.DrainBound, engine.DrainMargin)
	}
	if healthTimeout > 0 {
		w.Health = engine.Beyond(healthTimeout, w.HealthBound, engine.HealthMargin)
	}
	return w
}
