package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/config"
)

// validateCommand is `zerodown validate`.
type validateCommand struct {
	configPath     string
	skipTokenFiles bool
}

func newValidateCmd() *cobra.Command {
	v := &validateCommand{}
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

Every token file the config names (lb.token_file, agents.token_file,
hosts[].token_file) must exist, be readable and hold a token; a problem names
the path it resolved to. Relative paths in zerodown.yaml are relative to its
directory, not to the one the command runs in. --skip-token-files leaves the
token files out, for a machine that does not hold them, such as CI.

On success it prints a one-line summary and exits 0. Otherwise it prints every
problem on its own line to stderr, as file:line:col: key.path: what is wrong,
and exits 2.`,
		Example: `  zerodown validate
  zerodown validate --config deploy/zerodown.yaml
  zerodown validate --skip-token-files`,
		Args: cobra.NoArgs,
		RunE: v.run,
	}
	cmd.Flags().StringVarP(&v.configPath, "config", "c", "zerodown.yaml", "deploy config file")
	cmd.Flags().BoolVar(&v.skipTokenFiles, "skip-token-files", false, "do not check that the token files exist and hold a token")
	return cmd
}

func (v *validateCommand) run(c *cobra.Command, _ []string) error {
	cfg, err := config.LoadDeploy(v.configPath)
	var problems config.Errors
	if errors.As(err, &problems) {
		return printProblems(c.ErrOrStderr(), v.configPath, problems)
	}
	if err != nil {
		return badInput(err)
	}
	if !v.skipTokenFiles {
		if problems := cfg.CheckTokenFiles(""); len(problems) > 0 {
			return printProblems(c.ErrOrStderr(), v.configPath, problems)
		}
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(c.ErrOrStderr(), "warning: "+w)
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: ok (%s, %s)\n", v.configPath,
		nounCount(len(cfg.EnvOrder), "environment"), nounCount(len(cfg.PipelineOrder), "pipeline"))
	return nil
}

// printProblems prints every problem of a config file on its own line
// (Errors.Error stops after the first few) and returns the bad-input error
// that counts them.
func printProblems(w io.Writer, path string, problems config.Errors) error {
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
	return badInput(fmt.Errorf("%s: %s", path, nounCount(len(problems), "problem")))
}

// nounCount writes a count with its noun: "1 pipeline", "2 pipelines".
func nounCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
