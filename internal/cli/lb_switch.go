package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/proxy"
)

func newLBSwitchCmd() *cobra.Command {
	o := &targetsOptions{}
	var force bool
	cmd := &cobra.Command{
		Use:   "switch FROM TO [--admin URL] [--token-file F]",
		Short: "Send the routes of one pool to another at once (blue-green), or list the switches",
		Long: `Send every route that lb.yaml points at pool FROM to pool TO instead, on every
listener at once: requests already under way finish on FROM, every new one
goes to TO. 'switch FROM FROM' puts the routes back. The switch is kept in
the state file, so a restart, reload or upgrade keeps it. With no pools it
lists the switches in force.

This is blue-green with zerodown lb: deploy the new release to the idle
pool (say green) while blue serves, check it, then 'zerodown lb switch blue
green'; 'zerodown lb switch blue blue' switches back in milliseconds.

Exit codes: 0 switched (or listed); 1 the admin API could not be reached or
failed; 2 bad input (an unknown pool, arguments, token).`,
		Example: `  zerodown lb switch blue green --token-file /etc/zerodown/lb.token
  zerodown lb switch blue blue       # back
  zerodown lb switch                 # what is switched now`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return badInput(fmt.Errorf("%s wants FROM TO, or nothing to list the switches (see '%s --help')", c.CommandPath(), c.CommandPath()))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			var switches map[string]string
			if len(args) == 2 {
				v, err := cl.Switch(c.Context(), proxy.SwitchRequest{From: args[0], To: args[1], Force: force})
				if err != nil {
					return apiFailure(err)
				}
				switches = v.Switches
				if o.output != "json" {
					fmt.Fprintf(c.OutOrStdout(), "routes of pool %s go to pool %s (switched in %.1f ms)\n", args[0], args[1], v.SwitchMillis)
				}
			} else if switches, err = cl.Switches(c.Context()); err != nil {
				return apiFailure(err)
			}
			if o.output == "json" {
				return writeJSON(c.OutOrStdout(), map[string]any{"switches": switches})
			}
			if len(args) == 0 {
				if len(switches) == 0 {
					fmt.Fprintln(c.OutOrStdout(), "no switches: every route goes to the pool lb.yaml names")
				}
				var lines []string
				for _, from := range slices.Sorted(maps.Keys(switches)) {
					lines = append(lines, fmt.Sprintf("routes of pool %s go to pool %s", from, switches[from]))
				}
				if len(lines) > 0 {
					fmt.Fprintln(c.OutOrStdout(), strings.Join(lines, "\n"))
				}
			}
			return nil
		},
	}
	o.addFlags(cmd.Flags(), false)
	cmd.Flags().BoolVar(&force, "force", false, "switch even to a pool with no healthy target (every request it gets fails)")
	return cmd
}
