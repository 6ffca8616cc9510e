package deploy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/exechost"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/awslb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
	"github.com/zerodown/zerodown/internal/lb/haproxy"
	"github.com/zerodown/zerodown/internal/lb/nginx"
	"github.com/zerodown/zerodown/internal/notify"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// fleet is an environment with its drivers built: what a run acts on.
type fleet struct {
	cfg   *config.Deploy
	env   *config.Environment
	bal   lb.Balancer
	sw    lb.Switcher // blue-green's; nil otherwise
	hosts map[string]engine.Host
	hooks []notify.Webhook
	// close ends the connections to the hosts (SSH).
	close func()
}

// Environment returns the named environment of cfg, or bad input naming
// the ones there are.
func Environment(cfg *config.Deploy, name string) (*config.Environment, error) {
	env, ok := cfg.Environments[name]
	if !ok {
		return nil, badInput(fmt.Errorf("%s: no environment %q (environments: %s)", cfg.Path, name, strings.Join(cfg.EnvOrder, ", ")))
	}
	return env, nil
}

// newFleet builds the environment's load balancer driver and a client per
// host; a token that cannot be read is bad input.
func newFleet(ctx context.Context, cfg *config.Deploy, envName string) (*fleet, error) {
	env, err := Environment(cfg, envName)
	if err != nil {
		return nil, err
	}
	setupCtx, cancel := context.WithTimeout(ctx, SetupTimeout)
	bal, err := Balancer(setupCtx, cfg, env)
	var sw lb.Switcher
	if err == nil {
		sw, err = Switcher(setupCtx, env)
	}
	cancel()
	if err != nil {
		return nil, SetupError(err)
	}
	hooks, err := webhooks(cfg)
	if err != nil {
		return nil, err
	}
	hosts, closeHosts, err := Hosts(cfg, env)
	if err != nil {
		return nil, badInput(err)
	}
	return &fleet{cfg: cfg, env: env, bal: bal, sw: sw, hosts: hosts, hooks: hooks, close: closeHosts}, nil
}

// secret returns an inline token or the trimmed content of a token file.
func secret(token, file, what string) (string, error) {
	if token != "" {
		return token, nil
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s token: %w", what, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s token: %s is empty", what, file)
	}
	return tok, nil
}

// serverNames maps each host's target to its HAProxy server name: server:
// when written, else the host's name. Under blue-green only the hosts of
// backend are named: the same name may be in each backend.
func serverNames(env *config.Environment, backend string) map[string]string {
	out := map[string]string{}
	for _, h := range env.Hosts {
		if env.Strategy.BlueGreen == nil || h.Pool == backend {
			out[h.Target] = cmp.Or(h.Server, h.Name)
		}
	}
	return out
}

// SetupTimeout bounds building a driver: the AWS ones load credentials
// and describe the load balancer, with the SDK's retries.
const SetupTimeout = 30 * time.Second

// SetupError classifies a driver that could not be set up: a balancer that
// could not be reached in time is a failure (exit 1), anything else — a
// missing token, credentials or permission, an unknown load balancer — is
// the config's to fix (an *InputError).
func SetupError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return badInput(err)
}

// Balancer builds the environment's load balancer driver; the app's health
// path is for drivers whose balancer checks nothing itself. The AWS drivers
// load credentials and describe the load balancer here, within ctx. Under
// blue-green it is one driver per pool, joined (lb.Pools).
func Balancer(ctx context.Context, cfg *config.Deploy, env *config.Environment) (lb.Balancer, error) {
	if env.LB.Driver == config.DriverAWSALB && env.LB.CanaryTargetGroup != "" {
		return albCanary(ctx, env)
	}
	bg := env.Strategy.BlueGreen
	if bg == nil {
		return poolBalancer(ctx, cfg, env, env.LB.Pool, env.LB.Backend)
	}
	pools := map[string]lb.Balancer{}
	members := map[string]string{}
	for _, name := range bg.Pools {
		b, err := poolBalancer(ctx, cfg, env, name, name)
		if err != nil {
			return nil, err
		}
		pools[name] = b
	}
	for _, h := range env.Hosts {
		members[h.Target] = h.Pool
	}
	b, err := lb.NewPools(bg.Pools, pools, members)
	if err != nil {
		return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
	}
	return b, nil
}

// albCanary builds an ALB canary's balancer: the canary hosts (the first
// strategy.canary.hosts) in the canary's target group, the others in the
// main one, weighed by the listener.
func albCanary(ctx context.Context, env *config.Environment) (lb.Balancer, error) {
	cn := env.Strategy.Canary
	if cn == nil {
		return nil, fmt.Errorf("environment %s: lb.canary_target_group is used by strategy.canary only", env.Name)
	}
	k := cn.Hosts.Of(len(env.Hosts))
	ids := [2]map[string]string{{}, {}} // main, canary: target → instance
	members := map[string]string{}
	for i, h := range env.Hosts {
		g, arn := 0, env.LB.TargetGroup
		if i < k {
			g, arn = 1, env.LB.CanaryTargetGroup
		}
		ids[g][h.Target] = h.Instance
		members[h.Target] = arn
	}
	var groups [2]*awslb.ALB
	for i, arn := range []string{env.LB.TargetGroup, env.LB.CanaryTargetGroup} {
		a, err := awslb.NewALB(ctx, awsConfig(env, arn), arn, ids[i])
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		groups[i] = a
	}
	b, err := awslb.NewCanaryGroups(ctx, env.LB.Listener, groups[0], groups[1], members)
	if err != nil {
		return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
	}
	return b, nil
}

// Switcher builds blue-green's pool switch; nil for other strategies. The
// AWS one describes the live listener within ctx.
func Switcher(ctx context.Context, env *config.Environment) (lb.Switcher, error) {
	bg := env.Strategy.BlueGreen
	if bg == nil {
		return nil, nil
	}
	if len(bg.Pools) != 2 {
		return nil, fmt.Errorf("environment %s: strategy.blue_green needs two pools", env.Name)
	}
	switch env.LB.Driver {
	case config.DriverBuiltin, "":
		c, err := builtinClient(env)
		if err != nil {
			return nil, err
		}
		return c.BlueGreen(bg.Pools[0], bg.Pools[1]), nil
	case config.DriverHAProxy:
		sw, err := haproxy.NewMapSwitcher(env.LB.Socket, env.LB.Map, [2]string{bg.Pools[0], bg.Pools[1]})
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return sw, nil
	case config.DriverNginx:
		sw, err := nginx.NewSwitch(nginx.SwitchConfig{File: env.LB.SwitchFile, Pools: [2]string{bg.Pools[0], bg.Pools[1]},
			Test: env.LB.Test, Reload: env.LB.Reload, PidFile: env.LB.PidFile})
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return sw, nil
	case config.DriverAWSALB:
		sw, err := awslb.NewListeners(ctx, awsConfig(env, bg.Pools[0]), env.LB.Listener, env.LB.PreviewListener, [2]string{bg.Pools[0], bg.Pools[1]})
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return sw, nil
	}
	return nil, fmt.Errorf("environment %s: the %s driver cannot switch pools", env.Name, env.LB.Driver)
}

func builtinClient(env *config.Environment) (*builtin.Client, error) {
	tok, err := secret(env.LB.Token, env.LB.TokenFile, "load balancer")
	if err != nil {
		return nil, err
	}
	c, err := builtin.New(builtin.Config{Admin: env.LB.Admin, Token: tok})
	if err != nil {
		return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
	}
	return c, nil
}

// poolBalancer builds the driver of one pool (builtin) or backend
// (haproxy) of the environment's load balancer.
func poolBalancer(ctx context.Context, cfg *config.Deploy, env *config.Environment, pool, backend string) (lb.Balancer, error) {
	app := cfg.App
	switch env.LB.Driver {
	case config.DriverBuiltin, "":
		c, err := builtinClient(env)
		if err != nil {
			return nil, err
		}
		return c.Balancer(pool), nil
	case config.DriverHAProxy:
		b, err := haproxy.New(haproxy.Config{Socket: env.LB.Socket, Backend: backend, Servers: serverNames(env, backend), HealthPath: app.Health.Path, CheckInter: time.Duration(env.LB.CheckInter)})
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return b, nil
	case config.DriverNginx:
		upstream := env.LB.Upstream
		if env.Strategy.BlueGreen != nil {
			upstream = pool // the pools are upstreams
		}
		var targets []string
		for _, h := range env.Hosts {
			if env.Strategy.BlueGreen == nil || h.Pool == pool {
				targets = append(targets, h.Target)
			}
		}
		b, err := nginx.New(nginx.Config{UpstreamFile: env.LB.UpstreamFile, Upstream: upstream, Test: env.LB.Test,
			Reload: env.LB.Reload, PidFile: env.LB.PidFile, Targets: targets, HealthPath: cmp.Or(app.Health.Path, "/")})
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return b, nil
	case config.DriverAWSELB, config.DriverAWSALB:
		targetGroup := env.LB.TargetGroup
		if env.Strategy.BlueGreen != nil {
			targetGroup = pool // the pools are target groups
		}
		ac := awsConfig(env, targetGroup)
		ids := map[string]string{}
		for _, h := range env.Hosts {
			if env.Strategy.BlueGreen == nil || h.Pool == pool {
				ids[h.Target] = h.Instance
			}
		}
		var b lb.Balancer
		var err error
		if env.LB.Driver == config.DriverAWSELB {
			b, err = awslb.NewELB(ctx, ac, env.LB.Name, ids)
		} else {
			b, err = awslb.NewALB(ctx, ac, targetGroup, ids)
		}
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("environment %s: unknown load balancer driver %q", env.Name, env.LB.Driver)
}

// awsConfig is the AWS drivers' settings; an ARN's region is the default,
// not whatever AWS_REGION says.
func awsConfig(env *config.Environment, arn string) awslb.Config {
	ac := awslb.Config{Region: env.LB.Region, Endpoint: env.LB.Endpoint, Profile: env.LB.Profile, PollInterval: time.Duration(env.LB.PollInterval)}
	if region, ok := config.ARNRegion(arn); ok && ac.Region == "" {
		ac.Region = region
	}
	return ac
}

// Hosts builds a Deployer per host: a client of its agent, reached at its
// URL or through an SSH connection, or the host's own deploy scripts. It
// connects to nothing; closeAll ends the SSH connections, and waits for
// exec scripts a run stopped waiting for, once the caller is done with
// every host.
func Hosts(cfg *config.Deploy, env *config.Environment) (hosts map[string]engine.Host, closeAll func(), err error) {
	hosts = map[string]engine.Host{}
	var closers []func()
	closeAll = func() {
		for _, c := range closers {
			c()
		}
	}
	var artifacts *exechost.Artifacts // one store for the environment's exec hosts
	for i := range env.Hosts {
		h := &env.Hosts[i]
		var d host.Deployer
		var closeHost func()
		switch {
		case h.Exec != nil:
			if artifacts == nil {
				artifacts = exechost.NewArtifacts(ArtifactDir(cfg), exechost.DefaultKeep)
			}
			var x *exechost.Deployer
			if x, err = execDeployer(cfg, env, h, artifacts); err == nil {
				d, closeHost = x, x.Close
			}
		case h.SSH != "":
			d, closeHost, err = sshDeployer(env, h)
		default:
			d, err = agentDeployer(env, h)
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		if closeHost != nil {
			closers = append(closers, closeHost)
		}
		hosts[h.Name] = engine.Host{Name: h.Name, Target: h.Target, SwapTarget: h.SwapTarget, Deployer: d}
	}
	return hosts, closeAll, nil
}

// agentDeployer is the client of an agent reached at its URL.
func agentDeployer(env *config.Environment, h *config.Host) (host.Deployer, error) {
	tok, err := secret(h.Token, h.TokenFile, "agent")
	if err == nil && tok == "" {
		tok, err = secret(env.Agents.Token, env.Agents.TokenFile, "agent")
	}
	if err != nil {
		return nil, err
	}
	return agent.NewClient(agent.ClientConfig{URL: h.Agent, Token: tok})
}

// Release checks and describes the artifact at path, hashing it once:
// everything about it that can be known here is checked before a run
// exists, so a bad artifact is bad input, not a failed run.
func Release(path, version string, app config.App) (host.Release, error) {
	if err := host.CheckVersion(version); err != nil {
		return host.Release{}, badInput(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return host.Release{}, badInput(fmt.Errorf("artifact: %w", err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return host.Release{}, badInput(fmt.Errorf("artifact %s: %w", path, err))
	}
	if !st.Mode().IsRegular() {
		return host.Release{}, badInput(fmt.Errorf("artifact %s is not a regular file (a .tar.gz, a .zip or a single executable)", path))
	}
	if st.Size() == 0 {
		return host.Release{}, badInput(fmt.Errorf("artifact %s is empty", path))
	}
	r := host.Release{Version: version, Spec: app, Open: func() (io.ReadCloser, error) { return os.Open(path) }}
	var magic []byte
	switch base := filepath.Base(path); {
	case strings.HasSuffix(base, ".tar.gz"), strings.HasSuffix(base, ".tgz"):
		r.Format, magic = host.FormatTarGz, []byte{0x1f, 0x8b}
	case strings.HasSuffix(base, ".zip"):
		r.Format, magic = host.FormatZip, []byte("PK")
	default:
		r.Format, r.Name = host.FormatFile, base
	}
	if magic != nil {
		head := make([]byte, len(magic))
		if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, magic) {
			return host.Release{}, badInput(fmt.Errorf("artifact %s is named like a %s but is not one", path, r.Format))
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return host.Release{}, fmt.Errorf("artifact %s: %w", path, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return host.Release{}, fmt.Errorf("artifact %s: %w", path, err)
	}
	r.SHA256, r.Size = hex.EncodeToString(h.Sum(nil)), n
	return r, nil
}

// minHealthy resolves the environment's min_healthy.
func minHealthy(env *config.Environment) int {
	if env.Strategy.Canary != nil {
		return 1 // the canary's update and the rollout keep one serving
	}
	if env.Strategy.Rolling == nil {
		return 0
	}
	return env.Strategy.Rolling.MinHealthy.Of(len(env.Hosts))
}

// alreadyDone asks the balancer and every host, with their tokens, and
// returns the hosts that run version and are healthy: a re-run leaves them
// alone. It is also where a refused token is found, before a run exists.
func (f *fleet) alreadyDone(ctx context.Context, version string) (map[string]bool, error) {
	targets, err := f.bal.Targets(ctx)
	if err != nil {
		return nil, classify("read the load balancer's targets", err)
	}
	healthy := map[string]bool{}
	for _, t := range targets {
		healthy[t.Address] = t.State == lb.StateHealthy
	}
	skip := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(f.env.Hosts))
	for i, h := range f.env.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := f.hosts[h.Name].Deployer.Status(ctx)
			if err != nil {
				errs[i] = classify("host "+h.Name, err)
				return
			}
			// A host with two slots serves from either; one that cannot
			// say what it runs (Assumed) is never skipped.
			if st.Version == version && !st.Assumed && (healthy[h.Target] || h.SwapTarget != "" && healthy[h.SwapTarget]) {
				mu.Lock()
				skip[h.Name] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		var ie *InputError
		if errors.As(err, &ie) {
			return nil, err
		}
	}
	return skip, errors.Join(errs...)
}

// Pipeline picks the hand-written pipeline named, or expands the
// environment's strategy without the hosts in skip; live is the pool that
// serves users now, for blue-green (LivePool).
func Pipeline(cfg *config.Deploy, env *config.Environment, name string, skip map[string]bool, live string) (*pipeline.Pipeline, error) {
	if name != "" {
		pc, ok := cfg.Pipelines[name]
		if !ok {
			return nil, badInput(fmt.Errorf("%s: no pipeline %q", cfg.Path, name))
		}
		if pc.Environment != env.Name {
			return nil, badInput(fmt.Errorf("pipeline %s is for environment %s, not %s", name, pc.Environment, env.Name))
		}
		return gated(env, pipeline.FromConfig(name, pc)), nil
	}
	var p *pipeline.Pipeline
	var err error
	switch {
	case env.Strategy.BlueGreen != nil:
		p, err = pipeline.BlueGreen(env, live, skip)
	case env.Strategy.Swap != nil:
		p, err = pipeline.Swap(env, skip)
	case env.Strategy.Canary != nil:
		p, err = pipeline.Canary(env, skip)
	default:
		p, err = pipeline.Rolling(env, skip)
	}
	if err != nil {
		return nil, badInput(err)
	}
	return gated(env, p), nil
}

// LivePool asks the balancer which pool serves users now: empty for an
// environment that is not blue-green.
func LivePool(ctx context.Context, env *config.Environment, sw lb.Switcher) (string, error) {
	if env.Strategy.BlueGreen == nil {
		return "", nil
	}
	if sw == nil {
		var err error
		if sw, err = Switcher(ctx, env); err != nil {
			return "", err
		}
	}
	live, err := sw.Live(ctx)
	if err != nil {
		return "", classify("read which pool serves live traffic", err)
	}
	return live, nil
}

// ApprovalStage is the stage an environment with require_approval starts
// with.
const ApprovalStage = "environment-approval"

// isGate reports whether st does nothing but wait for approvals, every one
// of which must pass: then nothing changes before a person approved.
func isGate(st pipeline.Stage) bool {
	n := 0
	for _, j := range st.Jobs {
		for _, t := range j.Tasks {
			if t.Kind != pipeline.KindApprove || (t.RunIf != "" && t.RunIf != config.RunIfPassed) {
				return false
			}
			n++
		}
	}
	return n > 0
}

// gated puts an approval before everything else when env requires one and
// p does not start with one; an empty p stays empty (nothing to approve).
func gated(env *config.Environment, p *pipeline.Pipeline) *pipeline.Pipeline {
	if !env.RequireApproval || len(p.Stages) == 0 || isGate(p.Stages[0]) {
		return p
	}
	gate := pipeline.Stage{Name: ApprovalStage, Jobs: []pipeline.Job{{Name: "approve", Tasks: []pipeline.Task{{
		Kind: pipeline.KindApprove, Approve: &config.ApproveTask{Message: "environment " + env.Name + " requires an approval before a deploy starts"},
	}}}}}
	p.Stages = append([]pipeline.Stage{gate}, p.Stages...)
	return p
}

// CountTasks is the number of tasks of p, for progress.
func CountTasks(p *pipeline.Pipeline) int {
	n := 0
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			n += len(j.Tasks)
		}
	}
	return n
}
