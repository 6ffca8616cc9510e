package haproxy

import (
	"context"
	"fmt"
	"strings"

	"github.com/zerodown/zerodown/internal/lb"
)

// Balancer is one HAProxy backend as the deploy engine sees it. Targets
// are the backend's servers, named by their address (ip:port).
type Balancer struct {
	rt      *Runtime
	backend string
}

var (
	_ lb.Balancer = (*Balancer)(nil)
	_ lb.Weighter = (*Balancer)(nil)
	_ lb.Counter  = (*Balancer)(nil)
)

// New returns the backend's driver over the stats socket (a unix socket
// path, or host:port), which must be at `level admin`.
func New(socket, backend string) (*Balancer, error) {
	rt, err := NewRuntime(socket)
	if err != nil {
		return nil, err
	}
	if backend == "" {
		return nil, fmt.Errorf("haproxy: the backend name is empty")
	}
	return &Balancer{rt: rt, backend: backend}, nil
}

// Targets implements lb.Balancer.
func (b *Balancer) Targets(ctx context.Context) ([]lb.Target, error) {
	servers, err := b.rt.Servers(ctx, b.backend)
	if err != nil {
		return nil, err
	}
	out := make([]lb.Target, 0, len(servers))
	for _, s := range servers {
		t := lb.Target{Address: s.Address, State: stateOf(s), InFlight: s.Sessions + s.Queued, Weight: s.Weight}
		if t.State == lb.StateUnhealthy || t.State == lb.StateInitial {
			t.Reason = strings.TrimSpace(s.CheckStatus + " " + s.CheckDesc)
		}
		out = append(out, t)
	}
	return out, nil
}

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

// server finds the server with address addr.
func (b *Balancer) server(ctx context.Context, addr string) (Server, error) {
	servers, err := b.rt.Servers(ctx, b.backend)
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
	return Server{}, fmt.Errorf("haproxy: backend %s has no server at %s (it has %s)", b.backend, addr, strings.Join(have, ", "))
}

// Attach implements lb.Balancer: the server takes new requests again once
// HAProxy's checks find it up.
func (b *Balancer) Attach(ctx context.Context, addr string) error {
	s, err := b.server(ctx, addr)
	if err != nil {
		return err
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
	return b.rt.SetState(ctx, b.backend, s.Name, "drain")
}

// SetWeight implements lb.Weighter.
func (b *Balancer) SetWeight(ctx context.Context, addr string, weight int) error {
	s, err := b.server(ctx, addr)
	if err != nil {
		return err
	}
	return b.rt.SetWeight(ctx, b.backend, s.Name, weight)
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
