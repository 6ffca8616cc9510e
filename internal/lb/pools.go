package lb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Switcher is blue-green's capability: live traffic goes to one of two
// pools and moves to the other at once. A request already sent to a pool
// finishes there; every request after the switch goes to the other one.
// Where the balancer has a preview route it goes to the pool that is not
// live, so the idle pool can be checked before it serves users.
type Switcher interface {
	// Live returns the pool that gets live traffic now.
	Live(ctx context.Context) (string, error)
	// SwitchLive sends live traffic to pool, and the preview route to
	// the other pool.
	SwitchLive(ctx context.Context, pool string) error
}

// OtherPool is the pool of the two that pool is not: where the preview goes
// when live traffic goes to pool. A pool that is neither is an error.
func OtherPool(pools [2]string, pool string) (string, error) {
	switch pool {
	case pools[0]:
		return pools[1], nil
	case pools[1]:
		return pools[0], nil
	}
	return "", fmt.Errorf("switch live traffic to %s: the pools are %s and %s", pool, pools[0], pools[1])
}

// Pools is the balancer of an environment whose hosts are in several pools
// of one load balancer (blue-green): each call about a target goes to the
// pool the target belongs to, and Targets lists every pool's targets.
type Pools struct {
	order  []string
	pools  map[string]Balancer
	byAddr map[string]string // target address → pool
}

var (
	_ Balancer      = (*Pools)(nil)
	_ DrainBounder  = (*Pools)(nil)
	_ HealthBounder = (*Pools)(nil)
	_ DrainFinisher = (*Pools)(nil)
	_ Counter       = (*Pools)(nil)
	_ Advisor       = (*Pools)(nil)
)

// NewPools joins pools (by name, in order) into one balancer; members maps
// each target address to its pool's name.
func NewPools(order []string, pools map[string]Balancer, members map[string]string) (*Pools, error) {
	for _, name := range order {
		if pools[name] == nil {
			return nil, fmt.Errorf("pool %s has no driver", name)
		}
	}
	for addr, name := range members {
		if pools[name] == nil {
			return nil, fmt.Errorf("target %s is in pool %s, which has no driver", addr, name)
		}
	}
	return &Pools{order: slices.Clone(order), pools: pools, byAddr: members}, nil
}

// PoolOf names the pool of a target address.
func (p *Pools) PoolOf(address string) string { return p.byAddr[address] }

// Pool returns one pool's balancer.
func (p *Pools) Pool(name string) Balancer { return p.pools[name] }

func (p *Pools) of(address string) (Balancer, error) {
	b := p.pools[p.byAddr[address]]
	if b == nil {
		return nil, fmt.Errorf("target %s is in none of the pools %v", address, p.order)
	}
	return b, nil
}

// Targets lists the targets of every pool; a target listed in a pool it
// does not belong to (the same address in both) counts for its own pool.
func (p *Pools) Targets(ctx context.Context) ([]Target, error) {
	var out []Target
	for _, name := range p.order {
		ts, err := p.pools[name].Targets(ctx)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", name, err)
		}
		for _, t := range ts {
			if owner, ok := p.byAddr[t.Address]; ok && owner != name {
				continue
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// Attach attaches the target in its pool.
func (p *Pools) Attach(ctx context.Context, address string) error {
	b, err := p.of(address)
	if err != nil {
		return err
	}
	return b.Attach(ctx, address)
}

// Detach detaches the target from its pool.
func (p *Pools) Detach(ctx context.Context, address string) error {
	b, err := p.of(address)
	if err != nil {
		return err
	}
	return b.Detach(ctx, address)
}

// FinishDrain runs the pool's last drain step, when it has one.
func (p *Pools) FinishDrain(ctx context.Context, address string) error {
	b, err := p.of(address)
	if err != nil {
		return err
	}
	if f, ok := b.(DrainFinisher); ok {
		return f.FinishDrain(ctx, address)
	}
	return nil
}

// DrainBound is the longest of the pools' bounds.
func (p *Pools) DrainBound(ctx context.Context) (time.Duration, error) {
	return p.longest(ctx, func(b Balancer) (func(context.Context) (time.Duration, error), bool) {
		d, ok := b.(DrainBounder)
		if !ok {
			return nil, false
		}
		return d.DrainBound, true
	})
}

// HealthBound is the longest of the pools' bounds.
func (p *Pools) HealthBound(ctx context.Context) (time.Duration, error) {
	return p.longest(ctx, func(b Balancer) (func(context.Context) (time.Duration, error), bool) {
		h, ok := b.(HealthBounder)
		if !ok {
			return nil, false
		}
		return h.HealthBound, true
	})
}

func (p *Pools) longest(ctx context.Context, read func(Balancer) (func(context.Context) (time.Duration, error), bool)) (time.Duration, error) {
	var out time.Duration
	for _, name := range p.order {
		f, ok := read(p.pools[name])
		if !ok {
			continue
		}
		d, err := f(ctx)
		if err != nil {
			return 0, fmt.Errorf("pool %s: %w", name, err)
		}
		out = max(out, d)
	}
	return out, nil
}

// Counts adds up the pools' counts; a pool that cannot count adds nothing.
func (p *Pools) Counts(ctx context.Context) (Counts, error) {
	var out Counts
	counted := false
	for _, name := range p.order {
		c, ok := p.pools[name].(Counter)
		if !ok {
			continue
		}
		n, err := c.Counts(ctx)
		if err != nil {
			return Counts{}, fmt.Errorf("pool %s: %w", name, err)
		}
		out.Retries += n.Retries
		out.TargetErrors += n.TargetErrors
		counted = true
	}
	if !counted {
		return Counts{}, errors.New("no pool reports its retries")
	}
	return out, nil
}

// Advice is every pool's advice, each line naming its pool.
func (p *Pools) Advice(ctx context.Context) ([]string, error) {
	var out []string
	for _, name := range p.order {
		a, ok := p.pools[name].(Advisor)
		if !ok {
			continue
		}
		lines, err := a.Advice(ctx)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", name, err)
		}
		for _, l := range lines {
			out = append(out, "pool "+name+": "+l)
		}
	}
	return out, nil
}
