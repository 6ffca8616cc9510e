package deploy

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/lb"
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

// ReadWaits asks bal for its bounds and advice, each within ctx, and
// works out the waits a rolling deploy of env would use: the same rule
// the engine applies (engine.Beyond).
func ReadWaits(ctx context.Context, env *config.Environment, bal lb.Balancer) Waits {
	drainTimeout, healthTimeout := config.DefaultDrainTimeout, config.DefaultRolloutHealthTimeout
	if r := env.Strategy.Rolling; r != nil {
		if r.DrainTimeout > 0 {
			drainTimeout = time.Duration(r.DrainTimeout)
		}
		if r.HealthTimeout > 0 {
			healthTimeout = time.Duration(r.HealthTimeout)
		}
	}
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
	w.Drain = engine.Beyond(drainTimeout, w.DrainBound, engine.DrainMargin)
	w.Health = engine.Beyond(healthTimeout, w.HealthBound, engine.HealthMargin)
	return w
}
