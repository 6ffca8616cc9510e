package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
	"github.com/zerodown/zerodown/internal/sshhost"
)

// defaultCheckTimeout bounds each call of `zerodown check`: a host that
// does not answer within it is reported, not waited for.
const defaultCheckTimeout = 5 * time.Second

// checkCommand is `zerodown check ENV`.
type checkCommand struct {
	configPath string
	timeout    time.Duration
	output     string
}

func newCheckCmd() *cobra.Command {
	cc := &checkCommand{}
	cmd := &cobra.Command{
		Use:   "check ENV [-c zerodown.yaml] [--timeout 5s] [-o text|json]",
		Short: "Check that the load balancer and every agent of an environment answer and accept their tokens",
		Long: `Check an environment before the first deploy, or whenever something looks off:
contact its load balancer and the agent of every host, with the tokens of
zerodown.yaml, all at once and each within --timeout. Nothing is changed.

For the load balancer, through the environment's driver (builtin, haproxy,
nginx, aws-elb, aws-alb), it shows whether it answered, whether it accepted
the token or credentials (an AWS AccessDenied counts as refused), the targets
with their states, the longest a deploy waits per host for a drain and for
health — derived from the balancer's own settings (deregistration delay,
health check interval and thresholds) next to the recipe's fixed sleep 60 —
and warnings about settings that make deploys slower or riskier.

For each host: whether its agent answered and accepted the token (for a host
reached over SSH: whether SSH let zerodown in, whether known_hosts knows the
host's key, whether the agent is installed and its version), the version it runs and the one a
rollback would go back to, whether the app is healthy, and the state of the
host's target in the load balancer ("not in pool" when the balancer does not
know it; deploy attaches it). An exec host's status script is run and its
answer shown ("exec host: status script says v1"), or "no status script";
its health is the load balancer's word alone.

Token files are read first; a missing or empty one is reported at its place
in zerodown.yaml, with the path it resolved to (relative paths are relative to
the directory of zerodown.yaml).

With --output json the same is printed as one JSON object: environment,
load_balancer (driver, name, reachable, token_accepted, targets), waits
(drain_bound_s, health_bound_s, drain_s, health_s in seconds, advice),
hosts (reachable, token_accepted, version, previous, healthy, target_state,
in_balancer), warnings, problems and ok. A value that could not be learnt is null.

Exit codes: 0 everything answered and accepted its token (a host without a
release yet is fine); 1 something did not answer in time, or answered with an
error, or an app or a target is unhealthy; 2 bad input (config, unknown
environment, a token file that cannot be read) or a token refused (401 or 403
from the load balancer or an agent).`,
		Example: `  zerodown check staging
  zerodown check production -c deploy/zerodown.yaml --timeout 10s
  zerodown check staging -o json`,
		Args: exactArgs("ENV"),
		RunE: cc.run,
	}
	addConfigFlag(cmd, &cc.configPath)
	cmd.Flags().DurationVar(&cc.timeout, "timeout", defaultCheckTimeout, "longest wait for each answer")
	cmd.Flags().StringVarP(&cc.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (cc *checkCommand) run(c *cobra.Command, args []string) error {
	if cc.output != "text" && cc.output != "json" {
		return badInput(fmt.Errorf("--output must be text or json, got %q", cc.output))
	}
	if cc.timeout <= 0 {
		return badInput(fmt.Errorf("--timeout must be positive, got %s", cc.timeout))
	}
	cfg, err := loadDeployConfig(cc.configPath)
	if err != nil {
		return err
	}
	env, err := deploy.Environment(cfg, args[0])
	if err != nil {
		return deployError(err)
	}
	if problems := cfg.CheckTokenFiles(env.Name); len(problems) > 0 {
		return printProblems(c.ErrOrStderr(), cc.configPath, problems)
	}
	setupCtx, cancel := context.WithTimeout(c.Context(), cc.timeout)
	bal, err := deploy.Balancer(setupCtx, cfg, env)
	cancel()
	if err != nil {
		return deployError(deploy.SetupError(err))
	}
	hosts, closeHosts, err := deploy.Hosts(cfg, env)
	if err != nil {
		return badInput(err)
	}
	defer closeHosts()
	rep := checkEnvironment(c.Context(), env, bal, hosts, cc.timeout)
	rep.Config = cc.configPath
	if cc.output == "json" {
		err = writeJSON(c.OutOrStdout(), rep)
	} else {
		err = rep.writeText(c.OutOrStdout())
	}
	if err != nil {
		return err
	}
	return rep.exit()
}

// checkReport is what `zerodown check` found; --output json prints it.
type checkReport struct {
	Config       string        `json:"config"`
	Environment  string        `json:"environment"`
	OK           bool          `json:"ok"`
	LoadBalancer checkBalancer `json:"load_balancer"`
	Hosts        []checkHost   `json:"hosts"`
	Problems     []string      `json:"problems"`
	// Warnings do not fail the check: settings that work but risk a
	// needless rollback, or make a deploy slower than it needs to be.
	Warnings []string `json:"warnings"`
	// Waits are the longest a deploy waits per host, from the config and
	// the balancer's own settings.
	Waits *deploy.Waits `json:"waits"`

	// tokenRefused is set when a problem is a refused token (exit 2).
	tokenRefused bool
}

type checkBalancer struct {
	Driver string `json:"driver"`
	// Name says which balancer, in the driver's words ("HAProxy backend
	// app at /run/haproxy/admin.sock").
	Name  string `json:"name"`
	Admin string `json:"admin"`
	Pool  string `json:"pool"`
	checkReach
	// Targets is nil when they could not be read.
	Targets []checkTarget `json:"targets"`
}

type checkTarget struct {
	Address  string   `json:"address"`
	State    lb.State `json:"state"`
	InFlight int      `json:"in_flight"`
	Weight   int      `json:"weight"`
	Reason   string   `json:"reason,omitempty"`
	// Host is the host of the environment the target belongs to; empty
	// for a target no host of it names.
	Host string `json:"host"`
}

type checkHost struct {
	Name   string `json:"name"`
	Agent  string `json:"agent"`
	Target string `json:"target"`
	// SSH is the destination of a host reached over SSH; HostKeyKnown
	// whether known_hosts vouched for its key (null: not reached), and
	// AgentVersion the version of the agent bootstrap installed there.
	SSH          string `json:"ssh,omitempty"`
	HostKeyKnown *bool  `json:"host_key_known,omitempty"`
	AgentVersion string `json:"agent_version,omitempty"`
	checkReach
	// Status is set when the agent answered it.
	Version     *string `json:"version"`
	Previous    *string `json:"previous"`
	Running     *bool   `json:"running"`
	Healthy     *bool   `json:"healthy"`
	HealthError string  `json:"health_error,omitempty"`
	Activating  string  `json:"activating,omitempty"`
	// InBalancer and TargetState are null when the load balancer could
	// not be read.
	InBalancer  *bool     `json:"in_balancer"`
	TargetState *lb.State `json:"target_state"`
	// Exec is what an exec host's status script says (check_exec.go);
	// empty for a host with an agent.
	Exec string `json:"exec,omitempty"`
}

// checkReach is how a call went: answered at all, token accepted (null
// when there was no answer to tell), and what went wrong.
type checkReach struct {
	Reachable     bool   `json:"reachable"`
	TokenAccepted *bool  `json:"token_accepted"`
	Error         string `json:"error,omitempty"`
	refused       bool
}

// agentStatuser is the agent client's full status, which also says why an
// app is unhealthy; other host drivers give host.Status only.
type agentStatuser interface {
	AgentStatus(ctx context.Context) (agent.Status, error)
}

// checkEnvironment asks the load balancer for the pool's targets and every
// agent for its status, all at once, each call within timeout.
func checkEnvironment(ctx context.Context, env *config.Environment, bal lb.Balancer, hosts map[string]engine.Host, timeout time.Duration) *checkReport {
	var (
		wg       sync.WaitGroup
		targets  []lb.Target
		lbErr    error
		statuses = make([]host.Status, len(env.Hosts))
		health   = make([]string, len(env.Hosts))
		versions = make([]string, len(env.Hosts))
		errs     = make([]error, len(env.Hosts))
	)
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		targets, lbErr = bal.Targets(ctx)
	})
	var waits deploy.Waits
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		drain, health := deploy.StrategyTimeouts(env)
		waits = deploy.ReadWaits(ctx, bal, drain, health)
	})
	for i, h := range env.Hosts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			d := hosts[h.Name].Deployer
			if full, ok := d.(agentStatuser); ok {
				var s agent.Status
				s, errs[i] = full.AgentStatus(ctx)
				statuses[i], health[i], versions[i] = s.Host(), s.HealthError, s.Agent.Version
				return
			}
			statuses[i], errs[i] = d.Status(ctx)
		})
	}
	wg.Wait()

	rep := &checkReport{Environment: env.Name, Hosts: []checkHost{}, Problems: []string{}, Warnings: []string{}}
	rep.Waits = &waits
	// The engine waits at least the bound plus a margin; below that, what
	// the file says is not what a deploy does.
	drainTimeout, healthTimeout := deploy.StrategyTimeouts(env)
	if drainTimeout < waits.Drain {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf(
			"drain_timeout %s is not above the load balancer's draining bound %s: a deploy waits %s instead, until the balancer ends a drain itself; set drain_timeout to %s or more",
			drainTimeout, waits.DrainBound, waits.Drain, waits.Drain))
	}
	if healthTimeout < waits.Health {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf(
			"health_timeout %s is not above the time the load balancer's checks may take, %s: a deploy waits %s instead",
			healthTimeout, waits.HealthBound, waits.Health))
	}
	rep.Warnings = append(rep.Warnings, waits.Advice...)
	for _, u := range waits.Unread {
		rep.Warnings = append(rep.Warnings, "could not read the load balancer's "+u)
	}
	problem := func(r checkReach, format string, args ...any) {
		rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		rep.tokenRefused = rep.tokenRefused || r.refused
	}

	b := &rep.LoadBalancer
	b.Driver, b.Admin, b.Pool = env.LB.Driver, env.LB.Admin, env.LB.Pool
	b.Name = describeBalancer(env, bal)
	b.checkReach = reachOf(lbErr, timeout)
	byAddress := map[string]lb.Target{}
	hostOf := map[string]string{}
	for _, h := range env.Hosts {
		hostOf[h.Target] = h.Name
	}
	if lbErr != nil {
		problem(b.checkReach, "load balancer (%s): %s", b.Name, b.Error)
	} else {
		b.Targets = []checkTarget{}
		for _, t := range targets {
			addr := t.Address
			if norm, err := config.NormalizeTarget(addr); err == nil {
				addr = norm
			}
			byAddress[addr] = t
			b.Targets = append(b.Targets, checkTarget{Address: t.Address, State: t.State, InFlight: t.InFlight,
				Weight: t.Weight, Reason: t.Reason, Host: hostOf[addr]})
		}
	}

	for i, h := range env.Hosts {
		hr := checkHost{Name: h.Name, Agent: h.Agent, Target: h.Target, checkReach: reachOf(errs[i], timeout)}
		if h.SSH != "" {
			dest, _ := env.SSHDestination(&h)
			hr.SSH, hr.AgentVersion = dest.String(), versions[i]
			known := !sshhost.IsHostKeyError(errs[i])
			if known && !hr.Reachable {
				// Not reached: nothing was said about the key.
			} else {
				hr.HostKeyKnown = &known
			}
		}
		if h.Exec != nil {
			if p := hr.fromExec(h, statuses[i], errs[i]); p != "" {
				problem(checkReach{}, "%s", p)
			}
		} else if errs[i] != nil {
			what := "agent " + h.Agent
			if h.SSH != "" {
				what = "ssh " + hr.SSH
			}
			if !hr.Reachable {
				what += " unreachable"
			}
			problem(hr.checkReach, "%s: %s: %s", h.Name, what, hr.Error)
		} else {
			st := statuses[i]
			hr.Version, hr.Previous = &st.Version, &st.Previous
			hr.Running, hr.Healthy = &st.Running, &st.Healthy
			hr.HealthError, hr.Activating = health[i], st.Activating
			if st.Version != "" && !st.Healthy {
				why := ""
				if health[i] != "" {
					why = ": " + health[i]
				} else if !st.Running {
					why = ": not running"
				}
				problem(hr.checkReach, "%s: app %s is not healthy%s", h.Name, st.Version, why)
			}
		}
		if lbErr == nil {
			t, known := byAddress[h.Target]
			hr.InBalancer = &known
			if known {
				hr.TargetState = &t.State
				if t.State == lb.StateUnhealthy {
					why := ""
					if t.Reason != "" {
						why = ": " + t.Reason
					}
					problem(checkReach{}, "%s: the load balancer reports target %s unhealthy%s", h.Name, h.Target, why)
				}
			}
		}
		rep.Hosts = append(rep.Hosts, hr)
	}
	rep.OK = len(rep.Problems) == 0
	return rep
}

// reachOf classifies the error of a call. The admin API and the agent both
// check the token before anything else, so any answer but 401 or 403 means
// the token was accepted.
func reachOf(err error, timeout time.Duration) checkReach {
	yes, no := true, false
	if err == nil {
		return checkReach{Reachable: true, TokenAccepted: &yes}
	}
	status, msg := 0, ""
	var ae *agent.APIError
	var be *builtin.APIError
	switch {
	case errors.As(err, &ae):
		status, msg = ae.Status, ae.Message
	case errors.As(err, &be):
		status, msg = be.Status, be.Message
	}
	var ue *url.Error
	var oe *net.OpError
	if status == 0 && deploy.AccessRefused(err) {
		// AWS refusing credentials or a permission.
		return checkReach{Reachable: true, TokenAccepted: &no, refused: true, Error: err.Error()}
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return checkReach{Reachable: true, TokenAccepted: &no, refused: true,
			Error: fmt.Sprintf("token refused (%d: %s)", status, msg)}
	case status != 0:
		return checkReach{Reachable: true, TokenAccepted: &yes, Error: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return checkReach{Error: fmt.Sprintf("no answer within %s", timeout)}
	case errors.As(err, &ue):
		// The call and URL are in the table already: say what failed.
		return checkReach{Error: ue.Err.Error()}
	case errors.As(err, &oe):
		// A socket that could not be dialed (HAProxy's stats socket).
		return checkReach{Error: err.Error()}
	}
	// An answer that is not what the API sends: something else listens.
	return checkReach{Reachable: true, Error: err.Error()}
}

// describeBalancer names the balancer as its driver does, or by its admin
// URL and pool.
func describeBalancer(env *config.Environment, bal lb.Balancer) string {
	if s, ok := bal.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.TrimSpace(env.LB.Admin + " pool " + env.LB.Pool)
}

// exit maps the report to the exit code: 2 for a refused token, which is
// the config's to fix; 1 for anything else wrong.
func (r *checkReport) exit() error {
	if r.OK {
		return nil
	}
	err := fmt.Errorf("check %s: %s:\n  %s", r.Environment, nounCount(len(r.Problems), "problem"), strings.Join(r.Problems, "\n  "))
	if r.tokenRefused {
		return badInput(err)
	}
	return &exitError{code: ExitFailed, err: err}
}

func (r *checkReport) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	b := r.LoadBalancer
	fmt.Fprintln(tw, "LOAD BALANCER\tDRIVER\tREACHABLE\tACCESS")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Name, b.Driver, yesNo(b.Reachable), tokenText(b.TokenAccepted))
	if b.Targets != nil {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "TARGET\tSTATE\tIN-FLIGHT\tWEIGHT\tHOST")
		if len(b.Targets) == 0 {
			fmt.Fprintln(tw, "(no targets)")
		}
		for _, t := range b.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", t.Address, t.State, t.InFlight, t.Weight, orDash(t.Host))
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "HOST\tAGENT\tREACHABLE\tTOKEN\tVERSION\tPREVIOUS\tAPP\tTARGET\tIN LOAD BALANCER")
	for _, h := range r.Hosts {
		agentText := h.Agent
		switch {
		case h.Exec != "":
			agentText = "exec"
		case h.SSH != "":
			agentText = "ssh " + h.SSH
			if h.AgentVersion != "" {
				agentText += " (agent " + h.AgentVersion + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, agentText, yesNo(h.Reachable), tokenText(h.TokenAccepted),
			orDash(deref(h.Version)), orDash(deref(h.Previous)), appText(h), h.Target, inBalancerText(h))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Waits != nil {
		fmt.Fprintln(w)
		if err := writeWaits(w, *r.Waits); err != nil {
			return err
		}
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warning)
	}
	if r.OK {
		_, err := fmt.Fprintf(w, "\nok: %s\n", answeredText(r.Hosts))
		return err
	}
	return nil
}

// writeWaits prints the longest waits of a deploy per host beside the
// recipe's fixed sleep, and where each comes from.
func writeWaits(w io.Writer, waits deploy.Waits) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "WAIT PER HOST\tAT MOST\tTHE RECIPE\tFROM\n")
	from := func(bound time.Duration, what string) string {
		if bound <= 0 {
			return "zerodown.yaml (the load balancer gives no bound)"
		}
		return fmt.Sprintf("the load balancer's %s %s", what, bound)
	}
	atMost := func(d time.Duration) string {
		if d <= 0 {
			return "no such step"
		}
		return d.String()
	}
	fmt.Fprintf(tw, "drain\t%s\t%s\t%s\n", atMost(waits.Drain), deploy.RecipeSleep, from(waits.DrainBound, "draining bound"))
	fmt.Fprintf(tw, "health\t%s\t%s\t%s\n", atMost(waits.Health), deploy.RecipeSleep, from(waits.HealthBound, "health check bound"))
	return tw.Flush()
}

func tokenText(accepted *bool) string {
	switch {
	case accepted == nil:
		return "-"
	case *accepted:
		return "accepted"
	}
	return "refused"
}

func appText(h checkHost) string {
	var s string
	switch {
	case h.Exec != "":
		return h.Exec
	case h.Version == nil:
		return "-"
	case *h.Version == "":
		s = "no release"
	case *h.Healthy:
		s = "healthy"
	default:
		s = "unhealthy"
	}
	if h.Activating != "" {
		s += " (activating " + h.Activating + ")"
	}
	return s
}

func inBalancerText(h checkHost) string {
	switch {
	case h.InBalancer == nil:
		return "-"
	case !*h.InBalancer:
		return "not in pool"
	}
	return string(*h.TargetState)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
