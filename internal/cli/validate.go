package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/zerodown/zerodown/internal/config"
)

func newValidateCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "validate [--config zerodown.yaml]",
		Short: "Check zerodown.yaml and report every problem in it",
		Long: `Check the deploy config (zerodown.yaml) without touching any host or load
balancer: the app block, every environment (load balancer driver and settings,
hosts, rolling strategy, load verification, rollback policy) and every
hand-written pipeline (stages, jobs, tasks and the hosts they name).

${VAR} is expanded from the environment first; an unset variable is a problem
too. ${PORT} and ${VERSION} are left for the agent, which sets them when it
starts the app.

On success it prints a one-line summary and exits 0. Otherwise it prints every
problem on its own line to stderr, as file:line:col: key.path: what is wrong,
and exits 2.`,
		Example: `  zerodown validate
  zerodown validate --config deploy/zerodown.yaml`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := config.LoadDeploy(configPath)
			var problems config.Errors
			if errors.As(err, &problems) {
				// One per line and all of them: Errors.Error stops after
				// the first few.
				for _, p := range problems {
					fmt.Fprintln(c.ErrOrStderr(), p)
				}
				return badInput(fmt.Errorf("%s: %s", configPath, nounCount(len(problems), "problem")))
			}
			if err != nil {
				return badInput(err)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: ok (%s, %s)\n", configPath,
				nounCount(len(cfg.EnvOrder), "environment"), nounCount(len(cfg.PipelineOrder), "pipeline"))
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "zerodown.yaml", "deploy config file")
	return cmd
}

// nounCount writes a count with its noun: "1 pipeline", "2 pipelines".
func nounCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
