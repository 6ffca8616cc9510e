package server

import (
	"context"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/server/api"
)

// lookFresh is how long one look at an environment's hosts serves every
// viewer: dashboards poll it, and each look asks every host and the load
// balancer.
const lookFresh = time.Second

// lookTimeout bounds one look.
const lookTimeout = 5 * time.Second

// lookCache shares looks at each environment among concurrent viewers: at
// most one look per environment is in flight, and its answer is reused
// for lookFresh.
type lookCache struct {
	cfg *config.Deploy
	mu  sync.Mutex
	env map[string]*look
}

type look struct {
	done chan struct{} // closed when hosts is set
	at   time.Time
	out  api.Hosts
	prev *look // the look before, finished, if any
}

func newLookCache(cfg *config.Deploy) *lookCache {
	return &lookCache{cfg: cfg, env: map[string]*look{}}
}

func (c *lookCache) get(ctx context.Context, env string) api.Hosts {
	c.mu.Lock()
	l := c.env[env]
	if l == nil || (isClosed(l.done) && time.Since(l.at) > lookFresh) {
		prev := l
		if prev != nil {
			prev.prev = nil // keep one look back, not a chain
		}
		l = &look{done: make(chan struct{}), prev: prev}
		c.env[env] = l
		go c.fill(env, l)
	}
	prev := l.prev
	c.mu.Unlock()
	select {
	case <-l.done:
		return l.out
	case <-ctx.Done():
		// A viewer that cannot wait gets the look before, which says
		// when it was taken.
		if prev != nil {
			return prev.out
		}
		return api.Hosts{Env: env, Hosts: []api.Host{}, Error: "the look at the hosts did not finish: " + ctx.Err().Error(), At: time.Now().UTC()}
	}
}

func (c *lookCache) fill(env string, l *look) {
	ctx, cancel := context.WithTimeout(context.Background(), lookTimeout)
	defer cancel()
	hosts, err := deploy.Look(ctx, c.cfg, env)
	out := api.Hosts{Env: env, Hosts: make([]api.Host, 0, len(hosts)), At: time.Now().UTC()}
	if err != nil {
		out.Error = err.Error()
	}
	for _, h := range hosts {
		ah := api.Host{Name: h.Name, Target: h.Target, Version: h.Version, Previous: h.Previous, Running: h.Running, Healthy: h.Healthy,
			LBState: string(h.State), InFlight: h.InFlight}
		if h.Err != nil {
			ah.Error = h.Err.Error()
		}
		out.Hosts = append(out.Hosts, ah)
	}
	l.out, l.at = out, time.Now()
	close(l.done)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
