package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/bootstrap"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
)

// bootstrapCommand is `zerodown hosts bootstrap ENV`.
type bootstrapCommand struct {
	configPath string
	upgrade    bool
	binaries   []string
	timeout    time.Duration
	output     string
}

func newHostsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "Install the agent on an environment's hosts over SSH",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	bc := &bootstrapCommand{}
	b := &cobra.Command{
		Use:   "bootstrap ENV [-c zerodown.yaml] [--upgrade] [--binary PATH]...",
		Short: "Install and start zerodown's agent on every SSH host of an environment",
		Long: `Install zerodown's agent on every host of ENV that has an ssh: destination,
all hosts at once, over SSH (docs/hosts.md):

  1. ask the host its OS and architecture (uname), home and user;
  2. copy the zerodown binary built for it — this one when it matches, else
     the --binary given for that platform — and check its sha256 on the host;
  3. write agent.yaml: the API on the host's loopback only (deploys reach it
     through the SSH connection), the app on the port of the host's target;
  4. start the agent: as a systemd unit (zerodown-agent-PORT.service) where
     systemd runs and the login is root, else under "zerodown agent
     supervise", which restarts it if it dies and keeps a pid file;
  5. wait until the agent answers through the SSH connection.

The agent writes its own token on the host at its first start; deploys read
it there over SSH, so no token is copied anywhere.

Running it again changes nothing when all is in place (and starts an agent
that was stopped). When the installed binary or agent.yaml differs from what
this zerodown would write, it says so and leaves it; --upgrade replaces them
and restarts the agent. The app keeps running through an upgrade: the new
agent adopts it.

Host keys are checked against ssh.known_hosts; an unknown host is refused
with its key's fingerprint and the command that trusts it.

Exit codes: 0 every host done; 1 a host failed; 2 bad input (config,
unknown environment, no SSH host).`,
		Example: `  zerodown hosts bootstrap staging
  zerodown hosts bootstrap production --upgrade
  zerodown hosts bootstrap production --binary dist/zerodown-linux-arm64`,
		Args: exactArgs("ENV"),
		RunE: bc.run,
	}
	addConfigFlag(b, &bc.configPath)
	b.Flags().BoolVar(&bc.upgrade, "upgrade", false, "replace an installed agent whose binary or agent.yaml differs, and restart it; the app keeps running")
	b.Flags().StringArrayVar(&bc.binaries, "binary", nil, "a zerodown build for hosts of another OS or architecture (repeatable); its platform is read from the file")
	b.Flags().DurationVar(&bc.timeout, "timeout", 5*time.Minute, "longest time for each host")
	b.Flags().StringVarP(&bc.output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(b)
	return cmd
}

func (bc *bootstrapCommand) run(c *cobra.Command, args []string) error {
	if bc.output != "text" && bc.output != "json" {
		return badInput(fmt.Errorf("--output must be text or json, got %q", bc.output))
	}
	if bc.timeout <= 0 {
		return badInput(fmt.Errorf("--timeout must be positive, got %s", bc.timeout))
	}
	cfg, err := loadDeployConfig(bc.configPath)
	if err != nil {
		return err
	}
	env, err := deploy.Environment(cfg, args[0])
	if err != nil {
		return deployError(err)
	}
	var hosts []bootstrap.Host
	for i := range env.Hosts {
		h := &env.Hosts[i]
		if h.SSH == "" {
			continue
		}
		conn, layout, err := deploy.SSHHost(env, h)
		if err != nil {
			return badInput(fmt.Errorf("host %s: %w", h.Name, err))
		}
		defer conn.Close()
		bh := bootstrap.Host{Name: h.Name, SSH: conn, Layout: layout, AllowRoot: env.SSH.AllowRoot}
		bh.AppPort = portOf(h.Target)
		bh.SwapPort = portOf(h.SwapTarget)
		hosts = append(hosts, bh)
	}
	if len(hosts) == 0 {
		return badInput(fmt.Errorf("environment %s has no host with an ssh: destination to bootstrap", env.Name))
	}
	opts := bootstrap.Options{Binaries: bc.binaries, Upgrade: bc.upgrade, Version: Version}
	results := make([]bootstrap.Result, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.Context(), bc.timeout)
			defer cancel()
			results[i], errs[i] = bootstrap.Run(ctx, h, opts)
		})
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
			results[i].Host = hosts[i].Name
		}
	}
	if bc.output == "json" {
		out := struct {
			Environment string             `json:"environment"`
			Hosts       []bootstrap.Result `json:"hosts"`
			Errors      []string           `json:"errors"`
		}{env.Name, results, append([]string{}, failed...)}
		enc := json.NewEncoder(c.OutOrStdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		writeBootstrap(c, results, errs)
	}
	if len(failed) > 0 {
		return &exitError{code: ExitFailed, err: fmt.Errorf("bootstrap %s: %s:\n  %s", env.Name, nounCount(len(failed), "host")+" failed", strings.Join(failed, "\n  "))}
	}
	return nil
}

func writeBootstrap(c *cobra.Command, results []bootstrap.Result, errs []error) {
	tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPLATFORM\tAGENT\tPID\tTOOK\tDONE")
	for i, r := range results {
		done := "nothing to do"
		if len(r.Done) > 0 {
			done = strings.Join(r.Done, "; ")
		}
		if errs[i] != nil {
			done = "failed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, orDash(r.Platform), orDash(r.Mode), pidText(r.AgentPID), r.Took.Round(time.Millisecond), done)
	}
	tw.Flush()
	for _, r := range results {
		for _, p := range r.Pending {
			fmt.Fprintf(c.OutOrStdout(), "%s: %s; run with --upgrade to replace it\n", r.Host, p)
		}
	}
}

// portOf is the port of a host:port target; 0 when there is none.
func portOf(target string) int {
	if target == "" {
		return 0
	}
	norm, err := config.NormalizeTarget(target)
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(norm, ':')
	var p int
	fmt.Sscan(norm[i+1:], &p)
	return p
}
