package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/sampleapp"
)

// sampleAppUse is how the command is called; the demo starts the sample app
// from a release of this binary with it.
const sampleAppUse = "sample-app"

// newSampleAppCmd is the hidden `zerodown sample-app`: the sample app of
// examples/hello served by the zerodown binary itself, so that `zerodown
// demo` deploys a real app from an installed binary, without the source
// tree or the Go toolchain. It is the demo's fixture, not a feature, hence
// hidden.
func newSampleAppCmd() *cobra.Command {
	return &cobra.Command{
		Use:   sampleAppUse + " [--listen ADDR] [--name NAME] [--version V] [flags]",
		Short: "Serve the sample app (examples/hello) until SIGTERM",
		Long: `Serve the sample app that examples/hello builds, with the same flags, routes
and graceful shutdown (see internal/sampleapp). zerodown demo deploys it when
there is no zerodown source tree to build examples/hello from.`,
		Hidden: true,
		// The app parses its own flags, so that it takes exactly the flags
		// examples/hello does (single or double dash, the PORT, VERSION and
		// HOST_NAME fallbacks, -help).
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			// Main has printed why it failed; the exit code is what is left
			// to carry.
			if code := sampleapp.Main("zerodown "+sampleAppUse, args, os.Getenv, c.ErrOrStderr()); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("%s: exit %d", sampleAppUse, code)}
			}
			return nil
		},
	}
}
