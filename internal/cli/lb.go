package cli

import (
	"fmt"
	"os"
	"runtime/pprof"

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
	var configPath, cpuProfile string
	var check bool
	cmd := &cobra.Command{
		Use:   "lb --config lb.yaml",
		Short: "Run the built-in load balancer, or manage its targets",
		Long: `Run the built-in load balancer: a reverse proxy with health checks, draining
and an admin API. See docs/lb.md for the config file.

Signals: SIGHUP reloads the config without dropping connections; SIGTERM stops
accepting and finishes in-flight requests within shutdown_timeout.`,
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
				if _, err := config.LoadLB(configPath); err != nil {
					return badInput(err)
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: ok\n", configPath)
				return nil
			}
			return runLB(c, configPath)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "lb.yaml", "load balancer config file")
	cmd.Flags().BoolVar(&check, "check", false, "only check the config file and exit (0 if it is valid, 2 if not)")
	cmd.Flags().StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile to this file until the load balancer stops")
	_ = cmd.Flags().MarkHidden("cpu-profile")
	cmd.AddCommand(newLBTargetsCmd())
	return cmd
}
