package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
)

func newAgentCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "agent --config agent.yaml",
		Short: "Run the host agent that stores releases and switches the app between them, or talk to one",
		Long: `Run the agent of one host: it stores uploaded releases under root, switches the
app to a release behind its health check (and back when the check fails),
restarts the app when it crashes, and serves a JSON API with a bearer token.
See docs/agent.md for agent.yaml, the API and the app spec.

The first start without token or token_file writes a token into
<root>/agent.token (0600) and prints where.

Signals: SIGTERM and SIGINT stop the agent, not the app: the next agent adopts
the running app. An activation in progress gets shutdown_timeout to finish;
if it cannot, the next agent finishes it.

The subcommands talk to a running agent.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runAgent(c, configPath) },
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "agent.yaml", "agent config file")
	o := &agentOptions{}
	cmd.AddCommand(
		newAgentStatusCmd(o),
		newAgentReleasesCmd(o),
		newAgentUploadCmd(o),
		newAgentActivateCmd(o),
		newAgentRollbackCmd(o),
		newAgentLogsCmd(o),
		newAgentSuperviseCmd(),
	)
	return cmd
}

// runAgent runs the agent until SIGTERM or SIGINT.
func runAgent(c *cobra.Command, configPath string) error {
	cfg, err := config.LoadAgent(configPath)
	if err != nil {
		return badInput(err)
	}
	logger := slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(cfg, agent.Options{Logger: logger, Out: c.OutOrStdout(), Version: Version})
	if err != nil {
		return err
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	fmt.Fprintf(c.OutOrStdout(), "zerodown agent: API on %s://%s, releases in %s, app port %d\n", scheme, a.Addr(), cfg.Root, cfg.Port)
	var served error
	select {
	case <-ctx.Done():
	case sig := <-signals:
		logger.Info("stopping the agent; the app keeps running", "signal", sig.String())
	case served = <-a.Served():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	err = a.Shutdown(sctx)
	if served != nil && !errors.Is(served, http.ErrServerClosed) {
		return fmt.Errorf("agent API stopped: %w", served)
	}
	return err
}
