package haproxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/probe"
)

// Config is what the driver needs of zerodown.yaml.
type Config struct {
	// Socket is the Runtime API's stats socket at level admin: a unix
	// socket path or host:port.
	Socket  string
	Backend string
	// Servers maps a host's target address to its server name in the
	// backend (hosts[].server, else the host's name). A target whose name
	// the backend does not have is found by its address.
	Servers map[string]string
	// HealthPath is the app's health path: for a server HAProxy does not
	// check, zerodown asks GET http://ADDR+HealthPath itself.
	HealthPath string
	// CheckInter is HAProxy's check interval for these servers. The
	// Runtime API reports rise and fall but not inter; 0 means HAProxy's
	// default, 2s.
	CheckInter time.Duration
}

// DefaultCheckInter is HAProxy's own default check interval.
const DefaultCheckInter = 2 * time.Second

// Balancer is one HAProxy backend as the deploy engine sees it. Targets
// are the backend's servers, named by the hosts' target addresses.
type Balancer struct {
	rt      *Runtime
	backend string
	names   map[string]string // target address → server name
	inter   time.Duration
	probe   *probe.Prober
}

var (
	_ lb.Balancer      = (*Balancer)(nil)
	_ lb.Weighter      = (*Balancer)(nil)
	_ lb.Counter       = (*Balancer)(nil)
	_ lb.DrainFinisher = (*Balancer)(nil)
	_ lb.HealthBounder = (*Balancer)(nil)
	_ lb.Advisor       = (*Balancer)(nil)
	_ lb.TargetStatser = (*Balancer)(nil)
)

// New returns the backend's driver.
func New(cfg Config) (*Balancer, error) {
	rt, err := NewRuntime(cfg.Socket)
	if err != nil {
		return nil, err
	}
	if cfg.Backend == "" {
		return nil, fmt.Errorf("haproxy: the backend name is empty")
	}
	inter := cfg.CheckInter
	if inter <= 0 {
		inter = DefaultCheckInter
	}
	names := map[string]string{}
	for addr, name := range cfg.Servers {
		names[addr] = name
	}
	return &Balancer{rt: rt, backend: cfg.Backend, names: names, inter: inter, probe: probe.New(cfg.HealthPath, 0)}, nil
}

// addressed returns the backend's servers, each under the target address
// of the host it belongs to.
func (b *Balancer) addressed(ctx context.Context) ([]Server, error) {
	servers, err := b.rt.Servers(ctx, b.backend)
	if err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for i, s := range servers {
		byName[s.Name] = i
	}
	for addr, name := range b.names {
		if i, ok := byName[name]; ok {
			servers[i].Address = addr
		}
	}
	return servers, nil
}

// Targets implements lb.Balancer. A server HAProxy does not check is
// checked here, so "healthy" never means only "not in maintenance".
func (b *Balancer) Targets(ctx context.Context) ([]lb.Target, error) {
	servers, err := b.addressed(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]lb.Target, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = lb.Target{Address: s.Address, State: stateOf(s), InFlight: s.Sessions + s.Queued, Weight: s.Weight}
		switch t := &out[i]; {
		case t.State == lb.StateHealthy && !s.Checked():
			// All at once: a dead app costs one probe timeout, not one each.
			wg.Go(func() {
				if err := b.probe.Check(ctx, s.Address); err != nil {
					out[i].State = lb.StateUnhealthy
					out[i].Reason = err.Error() + " (HAProxy has no check on server " + s.Name + ": zerodown checks it itself)"
				}
			})
		case t.State == lb.StateUnhealthy || t.State == lb.StateInitial:
			t.Reason = strings.TrimSpace(s.CheckStatus + " " + s.CheckDesc)
		}
	}
	wg.Wait()
	return out, nil
}

// Checked says whether HAProxy health-checks the server (paused while it
// is in maintenance).
func (s Server) Checked() bool { return s.CheckConfigured }

// stateOf maps HAProxy's server status to ELBv2's words. A server in
// drain or maintenance is draining while it still has sessions or queued
// requests, and unused once it has none.
func stateOf(s Server) lb.State {
	status := strings.ToUpper(s.Status)
	switch {
	case s.Detached, strings.HasPrefix(status, "MAINT"), strings.HasPrefix(status, "DRAIN"), strings.HasPrefix(status, "NOLB"):
		if s.Sessions+s.Queued > 0 {
			return lb.StateDraining
		}
		return lb.StateUnused
	case status == "UP", strings.HasPrefix(status, "UP "), status == "NO CHECK":
		// "UP 1/3" is up and failing checks: it still gets traffic.
		return lb.StateHealthy
	case strings.HasPrefix(status, "DOWN "):
		// "DOWN 1/2": down and passing checks, on its way up.
		return lb.StateInitial
	}
	return lb.StateUnhealthy
}

// server finds the server of target address addr: by the name configured
// for it, else by its address.
func (b *Balancer) server(ctx context.Context, addr string) (Server, error) {
	servers, err := b.addressed(ctx)
	if err != nil {
		return Server{}, err
	}
	var have []string
	for _, s := range servers {
		if s.Address == addr {
			return s, nil
		}
		have = append(have, s.Name+"="+s.Address)
	}
	if name, ok := b.names[addr]; ok {
		return Server{}, fmt.Errorf("haproxy: backend %s has no server %s and none at %s (it has %s)", b.backend, name, addr, strings.Join(have, ", "))
	}
	return Server{}, fmt.Errorf("haproxy: backend %s has no server at %s (it has %s)", b.backend, addr, strings.Join(have, ", "))
}

// Attach implements lb.Balancer: from drain or maintenance to ready, with
// the server's health forced down first, so it takes requests only once
// HAProxy's checks have passed rise times against what runs there now.
// (HAProxy lets a server out of maintenance UP at once, on the strength of
// checks of the release before.) A server HAProxy does not check is
// checked here first, so a dead app is never put in rotation.
func (b *Balancer) Attach(ctx context.Context, addr string) error {
	s, err := b.server(ctx, addr)
	if err != nil {
		return err
	}
	if !s.Checked() {
		if err := b.probe.Check(ctx, addr); err != nil {
			return fmt.Errorf("not attached: %w (HAProxy has no check on server %s: zerodown checks it itself)", err, s.Name)
		}
		return b.rt.SetState(ctx, b.backend, s.Name, "ready")
	}
	if s.Detached {
		// Out of maintenance into drain (still no new request), where the
		// forced health holds until the checks change it.
		if err := b.rt.SetState(ctx, b.backend, s.Name, "drain"); err != nil {
			return err
		}
		if err := b.rt.SetHealth(ctx, b.backend, s.Name, "down"); err != nil {
			return err
		}
	}
	return b.rt.SetState(ctx, b.backend, s.Name, "ready")
}

// Detach implements lb.Balancer: drain sends the server no new request
// (but for sticky sessions) and lets those in flight finish.
func (b *Balancer) Detach(ctx context.Context, addr string) error {
	s, err := b.server(ctx, addr)
	if err != nil {
		return err
	}
	if s.Detached && strings.HasPrefix(strings.ToUpper(s.Status), "MAINT") {
		return nil // already further out than drain
	}
	return b.rt.SetState(ctx, b.backend, s.Name, "drain")
}

// FinishDrain implements lb.DrainFinisher: once drained, maintenance
// stops HAProxy's checks (which would log the app's restart as a failure)
// and the sticky sessions drain still lets through.
func (b *Balancer) FinishDrain(ctx context.Context, addr string) error {
	s, err := b.server(ctx, addr)
	if err != nil {
		return err
	}
	return b.rt.SetState(ctx, b.backend, s.Name, "maint")
}

// SetWeight implements lb.Weighter.
func (b *Balancer) SetWeight(ctx context.Context, addr string, weight int) error {
	s, err := b.server(ctx, addr)
	if err != nil {
		return err
	}
	return b.rt.SetWeight(ctx, b.backend, s.Name, weight)
}

// HealthBound implements lb.HealthBounder: a server HAProxy checks is UP
// after rise passing checks, one every inter, and the first may come a
// whole inter after the attach. Servers without a check count as one
// probe.
func (b *Balancer) HealthBound(ctx context.Context) (time.Duration, error) {
	servers, err := b.addressed(ctx)
	if err != nil {
		return 0, err
	}
	rise := 1
	for _, s := range servers {
		if _, ours := b.names[s.Address]; (ours || len(b.names) == 0) && s.Rise > rise {
			rise = s.Rise
		}
	}
	return time.Duration(rise+1) * b.inter, nil
}

// Advice implements lb.Advisor.
func (b *Balancer) Advice(ctx context.Context) ([]string, error) {
	servers, err := b.addressed(ctx)
	if err != nil {
		return nil, err
	}
	var out, unchecked []string
	for _, s := range servers {
		if !s.Checked() {
			unchecked = append(unchecked, s.Name)
		}
	}
	if len(unchecked) > 0 {
		out = append(out, fmt.Sprintf("HAProxy has no health check on %s: zerodown checks %s itself before attaching and while waiting; add `check` (and `option httpchk GET %s`) so HAProxy stops sending requests to a server that fails",
			strings.Join(unchecked, ", "), b.probe.URL("ADDR"), b.probe.Path))
	}
	return out, nil
}

// TargetStats implements lb.TargetStatser from `show stat`: a server's
// HTTP answers, and as errors its 5xx answers and the failures toward it.
func (b *Balancer) TargetStats(ctx context.Context) (map[string]lb.TargetStat, error) {
	servers, err := b.addressed(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]lb.TargetStat{}
	for _, s := range servers {
		errs := s.Answers5xx + s.ConnErrors + s.RespErrors
		out[s.Address] = lb.TargetStat{Requests: s.Answers + s.ConnErrors + s.RespErrors, Errors: errs}
	}
	return out, nil
}

// Counts implements lb.Counter: requests HAProxy tried again (wretr,
// wredis) and failures toward the servers (econ, eresp), since it started.
func (b *Balancer) Counts(ctx context.Context) (lb.Counts, error) {
	servers, err := b.rt.Servers(ctx, b.backend)
	if err != nil {
		return lb.Counts{}, err
	}
	var c lb.Counts
	for _, s := range servers {
		c.Retries += s.Retries + s.Redispatches
		c.TargetErrors += s.ConnErrors + s.RespErrors
	}
	return c, nil
}

// String names the backend and socket, for logs.
func (b *Balancer) String() string {
	return "HAProxy backend " + b.backend + " at " + b.rt.address
}
