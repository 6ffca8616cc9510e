package cli

import (
	"github.com/spf13/cobra"
)

func newLBCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "lb --config lb.yaml",
		Short: "Run the built-in load balancer, or manage its targets",
		Long: `Run the built-in load balancer: a reverse proxy with health checks, draining
and an admin API. See docs/lb.md for the config file.

Signals: SIGHUP reloads the config without dropping connections; SIGTERM stops
accepting and finishes in-flight requests within shutdown_timeout.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runLB(c, configPath)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "lb.yaml", "load balancer config file")
	cmd.AddCommand(newLBTargetsCmd())
	return cmd
}
