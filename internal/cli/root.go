// Package cli builds the zerodown command tree: one file per subcommand.
package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand.
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitBadInput = 2
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// badInput marks err as the user's mistake (exit code 2).
func badInput(err error) error { return &exitError{code: ExitBadInput, err: err} }

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "zerodown:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsageError(err) {
		return ExitBadInput
	}
	return ExitFailed
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "zerodown",
		Short: "Deploy new versions to servers behind a load balancer with zero failed requests",
		Long: `zerodown deploys new versions of HTTP services to fleets of servers behind a
load balancer. It detaches a server, waits until the load balancer says it is
drained, deploys, re-attaches it and waits until it is healthy again, while a
built-in load verifier proves that no request failed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return badInput(fmt.Errorf("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath()))
	})
	root.AddCommand(newVersionCmd(), newLBCmd(), newAgentCmd(), newValidateCmd(), newCheckCmd(), newLoadCmd(), newHostsCmd(), newServerCmd())
	root.AddCommand(newDeployCmds()...)
	root.AddCommand(newDemoCmd(), newSampleAppCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the zerodown version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintln(c.OutOrStdout(), "zerodown", Version)
			return nil
		},
	}
}

// isUsageError reports errors cobra raises for wrong arguments or commands.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, sub := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "required flag"} {
		if strings.Contains(msg, sub) {
			return true
		}
	}
	return false
}
