package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newLBUpgradeCmd() *cobra.Command {
	o := &targetsOptions{}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "upgrade [--admin URL] [--token-file F]",
		Short: "Restart or upgrade a running zerodown lb without refusing a connection",
		Long: `Ask a running 'zerodown lb' to start a new process from its executable's
path and hand it the listening sockets (replace the file first to upgrade the
binary; leave it to restart). The call returns once the new process serves;
the old one then stops accepting and finishes its requests in flight within
shutdown_timeout. SIGUSR2 to the process does the same without waiting.

While the new process starts, the admin API answers changes with 503 (the
new process reads the state file when it starts); clients such as
'zerodown deploy' try again and reach the new process.

If the new process fails (a bad config, a port it cannot bind, a health
timeout), nothing changes: the old process serves on, and this command says
why, exit 1.

Exit codes: 0 handed over; 1 the upgrade failed or the admin API could not
be reached; 2 bad input (arguments, token).`,
		Example: `  cp zerodown-new /usr/local/bin/zerodown && zerodown lb upgrade --token-file /etc/zerodown/lb.token`,
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return badInput(fmt.Errorf("--timeout must be positive, got %s", timeout))
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			res, err := cl.Upgrade(c.Context(), timeout)
			if err != nil {
				return apiFailure(err)
			}
			if o.output == "json" {
				return writeJSON(c.OutOrStdout(), res)
			}
			fmt.Fprintf(c.OutOrStdout(), "handed over to a new process in %.0f ms; the old one is finishing its requests\n", res.HandoverMillis)
			return nil
		},
	}
	o.addFlags(cmd.Flags(), false)
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the new process to serve")
	return cmd
}
