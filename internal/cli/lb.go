package cli

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/config"
)

// startCPUProfile profiles the process into path; the returned func stops
// and flushes it.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func newLBCmd() *cobra.Command {
	var o lbRunOptions
	var cpuProfile string
	var check bool
	cmd := &cobra.Command{
		Use:   "lb --config lb.yaml",
		Short: "Run the built-in load balancer, or manage its targets",
		Long: `Run the built-in load balancer: a reverse proxy with health checks, draining
and an admin API. See docs/lb.md for the config file.

Signals:
  SIGHUP   reload the config in place, without dropping a connection
  SIGUSR2  upgrade or restart: start a new process from the executable's path
           (replace the file first to upgrade), hand it the listening sockets,
           and once it serves, stop accepting here and finish the requests in
           flight within shutdown_timeout. No connection is refused meanwhile.
           A new process that fails to start changes nothing: this one serves on.
           'zerodown lb upgrade' does the same over the admin API and waits.
  SIGTERM  stop accepting and finish in-flight requests within shutdown_timeout

Under systemd, let the unit follow the process that serves with --pid-file
(see docs/lb.md).`,
		Example: `  zerodown lb --config lb.yaml
  zerodown lb --config /etc/zerodown/lb.yaml --pid-file /run/zerodown-lb.pid
  kill -USR2 "$(cat /run/zerodown-lb.pid)"     # or: zerodown lb upgrade`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if check {
				if _, err := config.LoadLB(o.configPath); err != nil {
					return badInput(err)
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: ok\n", o.configPath)
				return nil
			}
			if o.upgradeTimeout <= 0 {
				return badInput(fmt.Errorf("--upgrade-timeout must be positive, got %s", o.upgradeTimeout))
			}
			return runLB(c, o)
		},
	}
	cmd.Flags().StringVarP(&o.configPath, "config", "c", "lb.yaml", "load balancer config file")
	cmd.Flags().BoolVar(&check, "check", false, "only check the config file and exit (0 if it is valid, 2 if not)")
	cmd.Flags().StringVar(&o.pidFile, "pid-file", "", "write the PID of the process serving to this file (rewritten by each upgrade)")
	cmd.Flags().DurationVar(&o.upgradeTimeout, "upgrade-timeout", time.Minute, "how long a new process may take to serve before the upgrade is given up")
	cmd.Flags().StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile to this file until the load balancer stops")
	_ = cmd.Flags().MarkHidden("cpu-profile")
	cmd.AddCommand(newLBTargetsCmd(), newLBUpgradeCmd(), newLBSwitchCmd())
	return cmd
}
