package lb_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
)

// pool is a fake balancer of one pool: it lists targets and records the
// calls made to it. It has none of the optional capabilities.
type pool struct {
	name    string
	targets []lb.Target
	err     error // of every call

	mu    sync.Mutex
	calls []string
}

func (p *pool) record(call string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, call)
}

func (p *pool) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

func (p *pool) Targets(context.Context) ([]lb.Target, error) {
	p.record("targets")
	return p.targets, p.err
}

func (p *pool) Attach(_ context.Context, addr string) error {
	p.record("attach " + addr)
	return p.err
}

func (p *pool) Detach(_ context.Context, addr string) error {
	p.record("detach " + addr)
	return p.err
}

// capable is a pool with every optional capability Pools passes on.
type capable struct {
	*pool
	drain, health time.Duration
	counts        lb.Counts
	advice        []string
}

func (c *capable) FinishDrain(_ context.Context, addr string) error {
	c.record("finish-drain " + addr)
	return c.err
}

func (c *capable) DrainBound(context.Context) (time.Duration, error)  { return c.drain, c.err }
func (c *capable) HealthBound(context.Context) (time.Duration, error) { return c.health, c.err }
func (c *capable) Counts(context.Context) (lb.Counts, error)          { return c.counts, c.err }
func (c *capable) Advice(context.Context) ([]string, error)           { return c.advice, c.err }

var (
	_ lb.DrainFinisher = (*capable)(nil)
	_ lb.DrainBounder  = (*capable)(nil)
	_ lb.HealthBounder = (*capable)(nil)
	_ lb.Counter       = (*capable)(nil)
	_ lb.Advisor       = (*capable)(nil)
)

// Targets of the blue and green pools: two hosts in each.
const (
	blue1, blue2   = "10.0.0.1:80", "10.0.0.2:80"
	green1, green2 = "10.0.1.1:80", "10.0.1.2:80"
	stranger       = "10.0.9.9:80" // a target of no host
)

var members = map[string]string{blue1: "blue", blue2: "blue", green1: "green", green2: "green"}

func newPools(t *testing.T, blue, green lb.Balancer) *lb.Pools {
	t.Helper()
	p, err := lb.NewPools([]string{"blue", "green"}, map[string]lb.Balancer{"blue": blue, "green": green}, members)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoolsRouteByAddress(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		call      func(*lb.Pools, context.Context, string) error
		addr      string
		wantBlue  []string
		wantGreen []string
	}{
		{"attach blue", (*lb.Pools).Attach, blue2, []string{"attach " + blue2}, nil},
		{"attach green", (*lb.Pools).Attach, green1, nil, []string{"attach " + green1}},
		{"detach blue", (*lb.Pools).Detach, blue1, []string{"detach " + blue1}, nil},
		{"detach green", (*lb.Pools).Detach, green2, nil, []string{"detach " + green2}},
		{"finish drain blue", (*lb.Pools).FinishDrain, blue1, []string{"finish-drain " + blue1}, nil},
		// green cannot finish a drain: nothing to do, no error.
		{"finish drain on a pool without the step", (*lb.Pools).FinishDrain, green1, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blue, green := &capable{pool: &pool{name: "blue"}}, &pool{name: "green"}
			p := newPools(t, blue, green)
			if err := tt.call(p, ctx, tt.addr); err != nil {
				t.Fatal(err)
			}
			if got := blue.Calls(); !reflect.DeepEqual(got, tt.wantBlue) {
				t.Errorf("blue got %q, want %q", got, tt.wantBlue)
			}
			if got := green.Calls(); !reflect.DeepEqual(got, tt.wantGreen) {
				t.Errorf("green got %q, want %q", got, tt.wantGreen)
			}
		})
	}
	t.Run("the pool's error", func(t *testing.T) {
		boom := errors.New("boom")
		green := &pool{name: "green", err: boom}
		p := newPools(t, &pool{name: "blue"}, green)
		if err := p.Detach(ctx, green1); !errors.Is(err, boom) {
			t.Fatalf("detach: %v", err)
		}
	})
	t.Run("PoolOf and Pool", func(t *testing.T) {
		blue, green := &pool{name: "blue"}, &pool{name: "green"}
		p := newPools(t, blue, green)
		if p.PoolOf(green2) != "green" || p.PoolOf(blue1) != "blue" || p.PoolOf(stranger) != "" {
			t.Errorf("PoolOf: %q %q %q", p.PoolOf(green2), p.PoolOf(blue1), p.PoolOf(stranger))
		}
		if p.Pool("green") != lb.Balancer(green) || p.Pool("blue") != lb.Balancer(blue) || p.Pool("red") != nil {
			t.Error("Pool returns another balancer")
		}
	})
}

func TestPoolsAddressInNoPool(t *testing.T) {
	calls := map[string]func(*lb.Pools, context.Context, string) error{
		"attach":       (*lb.Pools).Attach,
		"detach":       (*lb.Pools).Detach,
		"finish drain": (*lb.Pools).FinishDrain,
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			blue, green := &capable{pool: &pool{name: "blue"}}, &capable{pool: &pool{name: "green"}}
			p := newPools(t, blue, green)
			err := call(p, context.Background(), stranger)
			want := "target " + stranger + " is in none of the pools [blue green]"
			if err == nil || err.Error() != want {
				t.Fatalf("error %v, want %q", err, want)
			}
			if len(blue.Calls())+len(green.Calls()) != 0 {
				t.Errorf("a pool was called: %q %q", blue.Calls(), green.Calls())
			}
		})
	}
}

func TestNewPoolsErrors(t *testing.T) {
	blue := &pool{name: "blue"}
	tests := []struct {
		name    string
		order   []string
		members map[string]string
		want    string
	}{
		{"pool without a driver", []string{"blue", "green"}, map[string]string{blue1: "blue"}, "pool green has no driver"},
		{"member of a pool without a driver", []string{"blue"}, map[string]string{blue1: "blue", green1: "green"},
			"target " + green1 + " is in pool green, which has no driver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := lb.NewPools(tt.order, map[string]lb.Balancer{"blue": blue}, tt.members)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("pools %v, error %v; want %q", p, err, tt.want)
			}
		})
	}
}

func TestPoolsTargets(t *testing.T) {
	tg := func(addr string, st lb.State) lb.Target { return lb.Target{Address: addr, State: st, Weight: 1} }
	tests := []struct {
		name        string
		blue, green []lb.Target
		want        []lb.Target
	}{
		{"both pools, in pool order",
			[]lb.Target{tg(blue1, lb.StateHealthy), tg(blue2, lb.StateDraining)},
			[]lb.Target{tg(green1, lb.StateUnused), tg(green2, lb.StateInitial)},
			[]lb.Target{tg(blue1, lb.StateHealthy), tg(blue2, lb.StateDraining), tg(green1, lb.StateUnused), tg(green2, lb.StateInitial)}},
		// The same address in both pools counts for its own: blue's
		// listing of green1 (unused there) is dropped, green's kept.
		{"an address listed in a pool it is not in is dropped",
			[]lb.Target{tg(blue1, lb.StateHealthy), tg(green1, lb.StateUnused)},
			[]lb.Target{tg(green1, lb.StateHealthy), tg(blue1, lb.StateUnused)},
			[]lb.Target{tg(blue1, lb.StateHealthy), tg(green1, lb.StateHealthy)}},
		// A target of no host is the pool's own: it stays.
		{"a target of no host stays in its pool",
			[]lb.Target{tg(blue1, lb.StateHealthy)},
			[]lb.Target{tg(stranger, lb.StateHealthy)},
			[]lb.Target{tg(blue1, lb.StateHealthy), tg(stranger, lb.StateHealthy)}},
		{"empty pools", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPools(t, &pool{name: "blue", targets: tt.blue}, &pool{name: "green", targets: tt.green})
			got, err := p.Targets(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("targets\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
	t.Run("a pool's error names the pool", func(t *testing.T) {
		boom := errors.New("connection refused")
		p := newPools(t, &pool{name: "blue"}, &pool{name: "green", err: boom})
		got, err := p.Targets(context.Background())
		if !errors.Is(err, boom) || err.Error() != "pool green: connection refused" || got != nil {
			t.Fatalf("targets %v, error %v", got, err)
		}
	})
}

func TestPoolsBoundsCountsAdvice(t *testing.T) {
	ctx := context.Background()
	blue := &capable{pool: &pool{name: "blue"}, drain: 30 * time.Second, health: 4 * time.Second,
		counts: lb.Counts{Retries: 2, TargetErrors: 5}, advice: []string{"set x", "set y"}}
	green := &capable{pool: &pool{name: "green"}, drain: 10 * time.Second, health: 9 * time.Second,
		counts: lb.Counts{Retries: 3, TargetErrors: 7}, advice: []string{"set z"}}
	plain := &pool{name: "green"}

	tests := []struct {
		name        string
		blue, green lb.Balancer
		drain       time.Duration
		health      time.Duration
		counts      lb.Counts
		advice      []string
	}{
		{"both pools capable: the longest bounds, counts summed, advice by pool", blue, green,
			30 * time.Second, 9 * time.Second, lb.Counts{Retries: 5, TargetErrors: 12},
			[]string{"pool blue: set x", "pool blue: set y", "pool green: set z"}},
		{"the other order", green, blue,
			30 * time.Second, 9 * time.Second, lb.Counts{Retries: 5, TargetErrors: 12},
			[]string{"pool blue: set z", "pool green: set x", "pool green: set y"}},
		{"a pool without the capabilities adds nothing", blue, plain,
			30 * time.Second, 4 * time.Second, lb.Counts{Retries: 2, TargetErrors: 5},
			[]string{"pool blue: set x", "pool blue: set y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPools(t, tt.blue, tt.green)
			if d, err := p.DrainBound(ctx); err != nil || d != tt.drain {
				t.Errorf("DrainBound %s, %v; want %s", d, err, tt.drain)
			}
			if d, err := p.HealthBound(ctx); err != nil || d != tt.health {
				t.Errorf("HealthBound %s, %v; want %s", d, err, tt.health)
			}
			if c, err := p.Counts(ctx); err != nil || c != tt.counts {
				t.Errorf("Counts %+v, %v; want %+v", c, err, tt.counts)
			}
			if a, err := p.Advice(ctx); err != nil || !reflect.DeepEqual(a, tt.advice) {
				t.Errorf("Advice %q, %v; want %q", a, err, tt.advice)
			}
		})
	}

	t.Run("no pool can tell", func(t *testing.T) {
		p := newPools(t, &pool{name: "blue"}, plain)
		if d, err := p.DrainBound(ctx); err != nil || d != 0 {
			t.Errorf("DrainBound %s, %v", d, err)
		}
		if d, err := p.HealthBound(ctx); err != nil || d != 0 {
			t.Errorf("HealthBound %s, %v", d, err)
		}
		if c, err := p.Counts(ctx); err == nil || !strings.Contains(err.Error(), "no pool reports its retries") {
			t.Errorf("Counts %+v, %v", c, err)
		}
		if a, err := p.Advice(ctx); err != nil || len(a) != 0 {
			t.Errorf("Advice %q, %v", a, err)
		}
	})

	t.Run("a pool's error names the pool", func(t *testing.T) {
		boom := errors.New("boom")
		broken := &capable{pool: &pool{name: "green", err: boom}}
		p := newPools(t, blue, broken)
		calls := map[string]func() error{
			"DrainBound":  func() error { _, err := p.DrainBound(ctx); return err },
			"HealthBound": func() error { _, err := p.HealthBound(ctx); return err },
			"Counts":      func() error { _, err := p.Counts(ctx); return err },
			"Advice":      func() error { _, err := p.Advice(ctx); return err },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, boom) || err.Error() != "pool green: boom" {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

func TestOtherPool(t *testing.T) {
	pools := [2]string{"blue", "green"}
	for pool, want := range map[string]string{"blue": "green", "green": "blue"} {
		if got, err := lb.OtherPool(pools, pool); err != nil || got != want {
			t.Errorf("OtherPool(%s) = %q, %v; want %s", pool, got, err, want)
		}
	}
	if _, err := lb.OtherPool(pools, "red"); err == nil || err.Error() != "switch live traffic to red: the pools are blue and green" {
		t.Errorf("OtherPool(red): %v", err)
	}
}
