package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var hosts, rate int
	var strategy, app string
	var fail, keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole system on loopback: a load balancer, hosts, and a rollout under load",
		Long: `Start zerodown lb and a few agents on free loopback ports in a temporary
directory, deploy v1 of the sample app, then deploy v2 under constant load with
the live view, and print the load verifier's report: requests, failed 0,
latency percentiles and the version mix moving from v1 to v2. Nothing is left
running afterwards (the directory with the reports stays).

A fleet of one (--hosts 1) is deployed by swap: the new release starts in
the agent's second slot beside the running one, and the load balancer moves
to it before the old one stops, so even one host serves every request.

--fail makes v2 fail its health check: watch the automatic rollback, still with
zero failed requests. --keep leaves the sandbox running and prints its
addresses and a ready zerodown.yaml for trying zerodown deploy by hand.

The sample app comes from, in this order: --app PATH (a build of
examples/hello); examples/hello built with the Go toolchain when the demo runs
inside the zerodown source tree (as go run ./cmd/zerodown demo does), so
changes to it show; else this zerodown binary itself, which contains the
sample app: the release is this executable and the hosts run it as
"zerodown sample-app". An installed zerodown needs neither the source nor Go.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if hosts < 1 || hosts > 20 {
				return badInput(fmt.Errorf("--hosts %d: want 1 to 20", hosts))
			}
			if rate < 1 || rate > 20000 {
				return badInput(fmt.Errorf("--rate %d: want 1 to 20000 requests per second", rate))
			}
			switch strategy {
			case "auto":
				// A rolling deploy of one host leaves nobody serving.
				strategy = map[bool]string{true: "swap", false: "rolling"}[hosts == 1]
			case "rolling", "swap":
			default:
				return badInput(fmt.Errorf("--strategy %q: the demo knows auto, rolling and swap", strategy))
			}
			return runDemo(c, hosts, rate, app, fail, keep, strategy == "swap")
		},
	}
	cmd.Flags().IntVar(&hosts, "hosts", 2, "hosts in the fleet")
	cmd.Flags().IntVar(&rate, "rate", 200, "requests per second the verifier fires through the load balancer")
	cmd.Flags().StringVar(&strategy, "strategy", "auto", "deploy strategy: rolling, swap (each host's new release starts beside the old one), or auto: swap for one host, else rolling")
	cmd.Flags().StringVar(&app, "app", "", "a build of examples/hello to deploy (default: build it in the source tree, else this binary's own sample app)")
	cmd.Flags().BoolVar(&fail, "fail", false, "v2 fails its health check: show the automatic rollback")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the sandbox running and print how to use it")
	return cmd
}

func runDemo(c *cobra.Command, hosts, rate int, app string, fail, keep, swap bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := c.OutOrStdout()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the zerodown executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "zerodown-demo-")
	if err != nil {
		return err
	}
	sample, err := demoApp(ctx, c, app, self, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "starting a load balancer and %d hosts on loopback in %s\n", hosts, dir)
	sb, err := demo.Start(ctx, demo.Options{Hosts: hosts, Rate: rate, Swap: swap, Zerodown: self, App: sample, Dir: dir, Log: out})
	if err != nil {
		return err
	}
	defer sb.Close()

	fmt.Fprintln(out, "\ndeploying v1 (the first release, before any traffic)")
	if code := runSelf(ctx, self, out, c.ErrOrStderr(), "deploy", "staging", "--version", "v1", "--artifact", sb.Artifact, "-c", sb.Config); code != 0 {
		return &exitError{code: ExitFailed, err: fmt.Errorf("the first deploy failed (exit %d); logs are in %s", code, dir)}
	}
	cfg, what := sb.Config, "deploying v2 under load"
	if fail {
		cfg, what = sb.FailConfig, "deploying v2, which fails its health check, under load"
	}
	fmt.Fprintf(out, "\n%s (%d requests/s through the load balancer)\n", what, rate)
	code := runSelf(ctx, self, out, c.ErrOrStderr(), "deploy", "staging", "--version", "v2", "--artifact", sb.Artifact, "-c", cfg)
	switch {
	case !fail && code != 0:
		return &exitError{code: code, err: fmt.Errorf("the v2 deploy failed (exit %d); logs are in %s", code, dir)}
	case fail && code != ExitFailed:
		return &exitError{code: ExitFailed, err: fmt.Errorf("the failing v2 should have been rolled back (exit 1), got exit %d; logs are in %s", code, dir)}
	case fail:
		fmt.Fprintln(out, "\nv2 failed its health check and every host is back on v1, attached and healthy.")
	}
	fmt.Fprintf(out, "\nthe run's journal, reports and logs are in %s\n", dir)
	if keep {
		inv, err := demo.ThisInvocation()
		if err != nil {
			inv = demo.Invocation{Exe: self}
		}
		fmt.Fprintf(out, `
the sandbox keeps running until Ctrl-C:
  load balancer   %s   (admin API %s)
  zerodown.yaml   %s
try:
  %s
  %s
`, sb.LB, sb.Admin, sb.Config,
			inv.Line("deploy", "staging", "--version", "v3", "--artifact", sb.Artifact, "-c", sb.Config),
			inv.Line("history", "-c", sb.Config))
		<-ctx.Done()
	}
	return nil
}

// demoApp picks the sample app the demo deploys: the build --app names;
// else examples/hello built with the Go toolchain when the demo runs inside
// the zerodown source tree, so that changes to the sample app show; else
// this zerodown executable, which serves the sample app as `zerodown
// sample-app`, so that an installed binary needs neither the source nor Go.
func demoApp(ctx context.Context, c *cobra.Command, appPath, self, dir string) (demo.App, error) {
	out := c.OutOrStdout()
	if appPath != "" {
		return demo.HelloApp(appPath), nil
	}
	root := ""
	if wd, err := os.Getwd(); err == nil {
		root = demo.SourceTree(wd)
	}
	goBin, goErr := exec.LookPath("go")
	if root != "" && goErr == nil {
		fmt.Fprintf(out, "building the sample app (examples/hello in %s)…\n", root)
		app, err := demo.BuildHello(ctx, goBin, root, filepath.Join(dir, "hello-bin"), c.ErrOrStderr())
		if err != nil {
			return demo.App{}, fmt.Errorf("build the sample app: %w (or pass --app PATH)", err)
		}
		return app, nil
	}
	why := "no zerodown source tree here"
	if root != "" {
		why = "no go command on PATH"
	}
	fmt.Fprintf(out, "%s: the sample app is this zerodown binary (zerodown %s), packed as the release\n", why, sampleAppUse)
	return demo.App{Exe: self, Name: "zerodown", Args: []string{sampleAppUse}}, nil
}

// runSelf runs another zerodown command with the terminal, and returns its
// exit code.
func runSelf(ctx context.Context, self string, stdout, stderr io.Writer, args ...string) int {
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = stdout, stderr, nil
	if f, ok := stdout.(*os.File); ok {
		cmd.Stdout = f
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(stderr, "zerodown:", err)
		return ExitFailed
	}
	return 0
}
