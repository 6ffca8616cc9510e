package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proxy"
)

// runLB runs the load balancer until SIGTERM or SIGINT; SIGHUP reloads.
func runLB(c *cobra.Command, configPath string) error {
	cfg, err := config.LoadLB(configPath)
	if err != nil {
		return badInput(err)
	}
	logger := slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := proxy.New(cfg, proxy.Options{Logger: logger, Out: c.ErrOrStderr()})
	if err != nil {
		return err
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.OutOrStdout(), "zerodown lb: serving on %v, admin API on %s\n", srv.ListenerAddrs(), srv.AdminAddr())
	for {
		select {
		case <-ctx.Done():
			return shutdownLB(srv, cfg, logger)
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				next, err := config.LoadLB(configPath)
				if err == nil {
					err = srv.Reload(next)
				}
				if err != nil {
					logger.Error("reload refused; the running config is unchanged", "err", err)
					continue
				}
				cfg = next
				continue
			}
			logger.Info("stopping", "signal", sig.String(), "bound", time.Duration(cfg.ShutdownTimeout))
			return shutdownLB(srv, cfg, logger)
		}
	}
}

func shutdownLB(srv *proxy.Server, cfg *config.LB, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("in-flight requests were cut at the shutdown bound", "bound", time.Duration(cfg.ShutdownTimeout))
		return nil
	}
	return err
}
