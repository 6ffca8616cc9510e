// Package nginx drives open-source nginx, which has no runtime API and no
// active health checks: zerodown owns an include file holding one
// `upstream NAME { ... }` block, marks a detached host's server `down`,
// checks the configuration and reloads nginx.
//
// A reload does not end the old configuration at once: nginx starts new
// workers and lets the old ones finish their connections (bounded by
// worker_shutdown_timeout). A detached server is therefore draining until
// every worker that could still send it requests has exited, which the
// driver reads from /proc (Linux only). Health is zerodown's own: it GETs
// the app's health path on every attached server.
//
// lb.Counter is not implemented: open-source nginx counts no retries or
// errors per upstream.
package nginx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/probe"
)

// Config says which upstream block of which file zerodown owns, how to
// check and reload nginx, and which servers are the hosts'.
type Config struct {
	// UpstreamFile is the include file zerodown owns, holding
	// `upstream NAME { ... }`; Upstream is NAME.
	UpstreamFile string
	Upstream     string
	// Test and Reload are argv, such as [nginx -t] and [nginx -s reload]
	// (with the same -c or -p nginx runs with). DrainBound runs Test with
	// -t replaced by -T.
	Test, Reload []string
	// PidFile is the master's pid file, such as /run/nginx.pid: its
	// workers tell when a drain ends.
	PidFile string
	// Targets are the hosts' addresses (ip:port), in order: the servers
	// zerodown manages and reports. Empty: every server of the upstream.
	Targets []string
	// HealthPath is the app's health path, such as /healthz: zerodown GETs
	// http://ADDR+HealthPath, since nginx checks nothing.
	HealthPath string
	// HealthTimeout bounds one health request (DefaultHealthTimeout).
	HealthTimeout time.Duration
}

// Defaults.
const (
	DefaultHealthTimeout = 2 * time.Second
	// defaultFileMode is a new upstream file's mode, that of nginx's own
	// configuration files.
	defaultFileMode = 0o644
	// healthRetry is how often Attach asks a host's health before it
	// passes.
	healthRetry = 200 * time.Millisecond
	// defaultReloadWait bounds how long a change waits for nginx to start
	// workers with the new configuration; it takes milliseconds unless
	// nginx refused the configuration at reload time.
	defaultReloadWait = 10 * time.Second
)

// Balancer is one nginx upstream as the deploy engine sees it. Targets are
// its servers, named by address (ip:port).
type Balancer struct {
	cfg   Config
	probe *probe.Prober
	// reloadWait is defaultReloadWait; tests shorten it.
	reloadWait time.Duration

	// recMu guards drains; it is not mu, so Targets does not wait for a
	// change in progress.
	recMu sync.Mutex
	// drains holds, per detached address, the worker pids that ran before
	// the reload that marked it down: the workers that may still send it
	// requests.
	drains map[string]map[int]bool
}

var (
	_ lb.Balancer     = (*Balancer)(nil)
	_ lb.Weighter     = (*Balancer)(nil)
	_ lb.DrainBounder = (*Balancer)(nil)
	_ lb.Advisor      = (*Balancer)(nil)
)

// New checks cfg and returns its driver. It touches neither the file nor
// nginx.
func New(cfg Config) (*Balancer, error) {
	switch {
	case cfg.UpstreamFile == "":
		return nil, errors.New("nginx: the upstream file is empty: the include file zerodown owns, such as /etc/nginx/conf.d/app-upstream.conf")
	case cfg.Upstream == "":
		return nil, fmt.Errorf("nginx: the upstream name is empty: the NAME of `upstream NAME { }` in %s", cfg.UpstreamFile)
	case len(cfg.Test) == 0 || cfg.Test[0] == "":
		return nil, errors.New("nginx: the test command is empty, such as [nginx -t]")
	case len(cfg.Reload) == 0 || cfg.Reload[0] == "":
		return nil, errors.New("nginx: the reload command is empty, such as [nginx -s reload]")
	case cfg.PidFile == "":
		return nil, errors.New("nginx: the pid file is empty, such as /run/nginx.pid")
	case !strings.HasPrefix(cfg.HealthPath, "/"):
		return nil, fmt.Errorf("nginx: the health path %q does not start with '/', such as /healthz", cfg.HealthPath)
	}
	for _, t := range cfg.Targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return nil, fmt.Errorf("nginx: target %q is not ip:port: %w", t, err)
		}
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	cfg.Targets = append([]string(nil), cfg.Targets...)
	return &Balancer{
		cfg:        cfg,
		probe:      probe.New(cfg.HealthPath, cfg.HealthTimeout),
		reloadWait: defaultReloadWait,
		drains:     map[string]map[int]bool{},
	}, nil
}

// String names the upstream and its file, for logs.
func (b *Balancer) String() string {
	return "nginx upstream " + b.cfg.Upstream + " in " + b.cfg.UpstreamFile
}

// Targets implements lb.Balancer. A server without `down` is healthy when
// zerodown's own health check passes; a `down` one is draining while a
// worker of a configuration that had it up is still running, then unused;
// a host's address missing from the upstream is unused.
func (b *Balancer) Targets(ctx context.Context) ([]lb.Target, error) {
	snap, err := b.read()
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	c := snap.conf
	addrs := b.cfg.Targets
	if len(addrs) == 0 {
		for _, d := range c.up.Block {
			if d.Name == "server" {
				addrs = append(addrs, d.Args[0])
			}
		}
	}
	// The workers are read once, and only when a server is down.
	var ws []proc
	for _, addr := range addrs {
		if d := c.server(addr); d != nil && isDown(d) {
			if _, ws, err = b.workers(); err != nil {
				return nil, fmt.Errorf("nginx: is %s still draining: %w", addr, err)
			}
			break
		}
	}
	out := make([]lb.Target, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		t := &out[i]
		t.Address = addr
		d := c.server(addr)
		switch {
		case d == nil:
			t.State = lb.StateUnused
			t.Reason = "no server " + addr + " in " + b.String()
		case isDown(d):
			t.Weight = weightOf(d)
			if n := b.draining(addr, ws); n > 0 {
				t.State = lb.StateDraining
				t.Reason = fmt.Sprintf("%d nginx worker %s of the previous configuration %s still running (they exit when their connections end, or at worker_shutdown_timeout)",
					n, plural(n, "process", "processes"), plural(n, "is", "are"))
			} else {
				t.State = lb.StateUnused
			}
		default:
			t.Weight = weightOf(d)
			wg.Go(func() {
				if err := b.probe.Check(ctx, addr); err != nil {
					t.State = lb.StateUnhealthy
					t.Reason = err.Error() + " (zerodown checks health itself: open-source nginx has no active health checks)"
					return
				}
				t.State = lb.StateHealthy
			})
		}
	}
	wg.Wait()
	return out, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// draining counts the workers that may still send requests to the down
// server addr: those recorded at its detach, or, without a record
// (zerodown restarted mid-drain, or the file was edited by hand), every
// worker still shutting down.
func (b *Balancer) draining(addr string, ws []proc) int {
	b.recMu.Lock()
	defer b.recMu.Unlock()
	n := 0
	if rec, ok := b.drains[addr]; ok {
		for _, w := range ws {
			if rec[w.pid] {
				n++
			}
		}
		if n == 0 && len(rec) > 0 {
			// Drained for good: forget the pids before a new worker could
			// reuse one, but keep the (empty) record, so workers that a
			// later reload shuts down, which had this server down
			// already, do not count.
			b.drains[addr] = map[int]bool{}
		}
		return n
	}
	for _, w := range ws {
		if w.title == titleShuttingDown {
			n++
		}
	}
	return n
}

// checkTarget refuses an address that is not one of the hosts', so
// zerodown never toggles a server it does not manage.
func (b *Balancer) checkTarget(addr string) error {
	if len(b.cfg.Targets) == 0 {
		return nil
	}
	for _, t := range b.cfg.Targets {
		if t == addr {
			return nil
		}
	}
	return fmt.Errorf("nginx: %s is not one of the hosts' targets (%s) in %s", addr, strings.Join(b.cfg.Targets, ", "), b)
}

// Detach implements lb.Balancer: the server gets `down`, and once nginx
// has reloaded no new request reaches it; those in flight finish on the
// old workers, which Targets watches.
func (b *Balancer) Detach(ctx context.Context, addr string) error {
	if err := b.checkTarget(addr); err != nil {
		return err
	}
	old, err := b.change(ctx, "detach "+addr, func(c *conf) (bool, error) {
		d := c.server(addr)
		// A host with no server line gets no traffic: already detached.
		return d != nil && setDown(d, true), nil
	})
	if err != nil {
		return err
	}
	if old != nil {
		b.recMu.Lock()
		b.drains[addr] = old
		b.recMu.Unlock()
	}
	return nil
}

// Attach implements lb.Balancer: since nginx checks nothing, zerodown
// first waits for the app's own health check to pass, then removes
// `down` (or adds the server) and reloads.
func (b *Balancer) Attach(ctx context.Context, addr string) error {
	if err := b.checkTarget(addr); err != nil {
		return err
	}
	snap, err := b.read()
	if err != nil {
		return fmt.Errorf("nginx: attach %s: %w", addr, err)
	}
	if d := snap.conf.server(addr); d != nil && !isDown(d) {
		return nil
	}
	if err := b.probe.Wait(ctx, addr, healthRetry); err != nil {
		return fmt.Errorf("nginx: %s not attached to %s: its health check did not pass: %w", addr, b, err)
	}
	_, err = b.change(ctx, "attach "+addr, func(c *conf) (bool, error) {
		d := c.server(addr)
		if d == nil {
			c.addServer(addr)
			return true, nil
		}
		return setDown(d, false), nil
	})
	if err == nil {
		b.recMu.Lock()
		delete(b.drains, addr)
		b.recMu.Unlock()
	}
	return err
}

// SetWeight implements lb.Weighter with the server's weight= parameter.
// nginx takes no weight below 1; detach a server to send it nothing.
func (b *Balancer) SetWeight(ctx context.Context, addr string, weight int) error {
	if err := b.checkTarget(addr); err != nil {
		return err
	}
	if weight < 1 {
		return fmt.Errorf("nginx: weight %d for %s: nginx takes weights from 1 up; detach the server to send it nothing", weight, addr)
	}
	_, err := b.change(ctx, fmt.Sprintf("set the weight of %s to %d", addr, weight), func(c *conf) (bool, error) {
		d := c.server(addr)
		if d == nil {
			return false, fmt.Errorf("no server %s in %s", addr, b)
		}
		return setWeight(d, weight), nil
	})
	return err
}

// snapshot is the upstream file as read: parsed, and its bytes and mode
// to put back when nginx refuses a change.
type snapshot struct {
	conf   *conf
	data   []byte
	mode   os.FileMode
	exists bool
}

// read parses the upstream file; one that does not exist is an upstream
// with no servers.
func (b *Balancer) read() (snapshot, error) {
	data, err := os.ReadFile(b.cfg.UpstreamFile)
	if errors.Is(err, os.ErrNotExist) {
		return snapshot{conf: emptyConf(b.cfg.Upstream), mode: defaultFileMode}, nil
	}
	if err != nil {
		return snapshot{}, fmt.Errorf("read the upstream file: %w", err)
	}
	st, err := os.Stat(b.cfg.UpstreamFile)
	if err != nil {
		return snapshot{}, fmt.Errorf("read the upstream file: %w", err)
	}
	c, err := parseConf(b.cfg.UpstreamFile, data, b.cfg.Upstream)
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{conf: c, data: data, mode: st.Mode().Perm(), exists: true}, nil
}
