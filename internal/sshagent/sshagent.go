// Package sshagent reaches a host's zerodown agent through an SSH
// connection: where `zerodown hosts bootstrap` puts the agent on the host
// (Layout), and a host.Deployer that calls the agent's API over a channel
// to its loopback port, with the token read from the host. The agent never
// listens beyond loopback and its token never crosses the network in the
// clear.
package sshagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/sshhost"
)

// Layout is where one agent lives on a host. Paths are the host's (POSIX);
// a relative Dir is relative to the login's home directory, where SSH
// commands start.
type Layout struct {
	Dir  string
	Port int // the agent's loopback port; one host may carry one agent per port
}

// AgentDir holds the agent's files: agent-<port> under Dir.
func (l Layout) AgentDir() string { return path.Join(l.Dir, fmt.Sprintf("agent-%d", l.Port)) }

// BinDir holds the zerodown binaries by content, shared by the host's agents.
func (l Layout) BinDir() string { return path.Join(l.Dir, "bin") }

// Binary is the link to the binary the agent runs; an upgrade switches it.
func (l Layout) Binary() string { return path.Join(l.AgentDir(), "zerodown") }

// Config is the agent's agent.yaml.
func (l Layout) Config() string { return path.Join(l.AgentDir(), "agent.yaml") }

// PidFile is the supervisor's pid file when no systemd runs the agent.
func (l Layout) PidFile() string { return path.Join(l.AgentDir(), "agent.pid") }

// Log is the supervised agent's output.
func (l Layout) Log() string { return path.Join(l.AgentDir(), "agent.log") }

// Root is the agent's root: releases, state, its token.
func (l Layout) Root() string { return path.Join(l.AgentDir(), "root") }

// Token is the token file the agent writes at its first start.
func (l Layout) Token() string { return path.Join(l.Root(), "agent.token") }

// URL is the agent's API on the host's loopback.
func (l Layout) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", l.Port) }

// Deployer calls the agent of one host over its SSH connection. A call
// whose connection drops fails with an *sshhost.LostError (and the run
// stops and rolls back); the next call connects again.
type Deployer struct {
	ssh    *sshhost.Host
	layout Layout
	url    string

	mu     sync.Mutex
	gen    uint64
	client *agent.Client
}

var (
	_ host.Deployer = (*Deployer)(nil)
	_ host.Swapper  = (*Deployer)(nil)
)

// New returns the Deployer of the agent at url (on the host's loopback)
// laid out as l. It connects on first use.
func New(h *sshhost.Host, l Layout, url string) *Deployer {
	return &Deployer{ssh: h, layout: l, url: url}
}

// SSH is the connection the Deployer uses.
func (d *Deployer) SSH() *sshhost.Host { return d.ssh }

// Agent returns the agent's client on the live connection, and ctx pinned
// to that connection.
func (d *Deployer) Agent(ctx context.Context) (*agent.Client, context.Context, uint64, error) {
	gen, err := d.ssh.Connect(ctx)
	if err != nil {
		return nil, ctx, 0, err
	}
	pinned := d.ssh.Pin(ctx, gen)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil && d.gen == gen {
		return d.client, pinned, gen, nil
	}
	// A new connection: the token is read again, and the transport's
	// pooled connections were channels of the old one.
	tok, err := d.ssh.Run(pinned, "cat "+sshhost.Quote(d.layout.Token()), nil)
	if err != nil {
		var ee *sshhost.ExitError
		if errors.As(err, &ee) {
			return nil, ctx, 0, fmt.Errorf("host %s: no agent token at %s on the host: is the agent installed? (zerodown hosts bootstrap): %w", d.ssh.Config().Name, d.layout.Token(), err)
		}
		return nil, ctx, 0, err
	}
	c, err := agent.NewClient(agent.ClientConfig{
		URL:        d.url,
		Token:      strings.TrimSpace(string(tok)),
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.ssh.DialContext, MaxIdleConnsPerHost: 4}},
	})
	if err != nil {
		return nil, ctx, 0, fmt.Errorf("host %s: %w", d.ssh.Config().Name, err)
	}
	d.client, d.gen = c, gen
	return c, pinned, gen, nil
}

// call runs fn with the agent's client. The connection dropping ends fn
// at once (its context is cancelled): an activation under way goes on on
// the host, and the run stops and rolls back.
func (d *Deployer) call(ctx context.Context, what string, fn func(context.Context, *agent.Client) error) error {
	c, pinned, gen, err := d.Agent(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(pinned)
	defer cancel(nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-d.ssh.Done(gen):
			cancel(d.ssh.Lost(gen))
		case <-stop:
		}
	}()
	err = fn(ctx, c)
	if err != nil && !errors.As(err, new(*sshhost.LostError)) {
		if lost := d.ssh.Lost(gen); lost != nil {
			return fmt.Errorf("%s: %w", what, lost)
		}
	}
	return err
}

// Upload implements host.Deployer.
func (d *Deployer) Upload(ctx context.Context, r host.Release) error {
	return d.call(ctx, "upload "+r.Version, func(ctx context.Context, c *agent.Client) error { return c.Upload(ctx, r) })
}

// Activate implements host.Deployer.
func (d *Deployer) Activate(ctx context.Context, version string) error {
	return d.call(ctx, "activate "+version, func(ctx context.Context, c *agent.Client) error { return c.Activate(ctx, version) })
}

// Rollback implements host.Deployer.
func (d *Deployer) Rollback(ctx context.Context) error {
	return d.call(ctx, "roll back", func(ctx context.Context, c *agent.Client) error { return c.Rollback(ctx) })
}

// Status implements host.Deployer.
func (d *Deployer) Status(ctx context.Context) (host.Status, error) {
	var st host.Status
	err := d.call(ctx, "status", func(ctx context.Context, c *agent.Client) error {
		var err error
		st, err = c.Status(ctx)
		return err
	})
	return st, err
}

// AgentStatus is the agent's full status, which also says why an app is
// unhealthy and which agent answered.
func (d *Deployer) AgentStatus(ctx context.Context) (agent.Status, error) {
	var st agent.Status
	err := d.call(ctx, "status", func(ctx context.Context, c *agent.Client) error {
		var err error
		st, err = c.AgentStatus(ctx)
		return err
	})
	return st, err
}

// ActivateSwap implements host.Swapper.
func (d *Deployer) ActivateSwap(ctx context.Context, version string) error {
	return d.call(ctx, "activate "+version, func(ctx context.Context, c *agent.Client) error { return c.ActivateSwap(ctx, version) })
}

// RollbackSwap implements host.Swapper.
func (d *Deployer) RollbackSwap(ctx context.Context) error {
	return d.call(ctx, "roll back", func(ctx context.Context, c *agent.Client) error { return c.RollbackSwap(ctx) })
}

// Retire implements host.Swapper.
func (d *Deployer) Retire(ctx context.Context) error {
	return d.call(ctx, "retire", func(ctx context.Context, c *agent.Client) error { return c.Retire(ctx) })
}
