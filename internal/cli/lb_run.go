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

// lbRunOptions are the flags of `zerodown lb` that are not in lb.yaml:
// they are about the process, not the load balancer.
type lbRunOptions struct {
	configPath     string
	pidFile        string
	upgradeTimeout time.Duration
}

// runLB runs the load balancer until SIGTERM or SIGINT; SIGHUP reloads the
// config, SIGUSR2 (or POST /v1/upgrade) hands the sockets to a new process.
func runLB(c *cobra.Command, o lbRunOptions) error {
	cfg, err := config.LoadLB(o.configPath)
	if err != nil {
		return badInput(err)
	}
	logger := slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Signals are taken before anything starts: SIGUSR2's default action
	// would end the process.
	signals := make(chan os.Signal, 4)
	notify := []os.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT}
	if upgradeSignal != nil {
		notify = append(notify, upgradeSignal)
	}
	signal.Notify(signals, notify...)
	defer signal.Stop(signals)
	hand, err := newHandover(o.pidFile, o.upgradeTimeout, logger)
	if err != nil {
		return err
	}
	opts := proxy.Options{Logger: logger, Out: c.ErrOrStderr()}
	var exit <-chan struct{}
	if hand != nil {
		// Upgrade starts the new process and waits until it serves, or
		// failed, within --upgrade-timeout.
		opts.Listen, opts.Upgrade = hand.listen, hand.upg.Upgrade
		// The previous process finishes its requests within its
		// shutdown_timeout; the margin covers its own start of shutdown.
		opts.Previous = hand.previous(time.Duration(cfg.ShutdownTimeout) + 30*time.Second)
		exit = hand.upg.Exit()
		defer hand.upg.Stop()
	}
	srv, err := proxy.New(cfg, opts)
	if err != nil {
		return err
	}

	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if hand != nil {
		// Tells the previous process, if any, to stop accepting; writes
		// the PID file.
		if err := hand.upg.Ready(); err != nil {
			_ = shutdownLB(srv, cfg, logger)
			return err
		}
		if hand.upg.HasParent() {
			fmt.Fprintf(c.OutOrStdout(), "zerodown lb: took over the sockets of process %d\n", os.Getppid())
		}
	}
	fmt.Fprintf(c.OutOrStdout(), "zerodown lb: serving on %v, admin API on %s\n", srv.ListenerAddrs(), srv.AdminAddr())
	// stop lets go of the copies of the sockets kept for a next process,
	// so a full stop refuses new connections at once (they would wait in
	// the queue until this process exits, then be reset) — unless a new
	// process took them over.
	stop := func() {
		if hand != nil {
			hand.upg.Stop()
			<-hand.upg.Exit()
		}
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return shutdownLB(srv, cfg, logger)
		case <-exit:
			// A new process serves on the same sockets; this one only
			// finishes what it has in flight.
			return shutdownLB(srv, cfg, logger)
		case sig := <-signals:
			switch sig {
			case syscall.SIGHUP:
				next, err := config.LoadLB(o.configPath)
				if err == nil {
					err = srv.Reload(next)
				}
				if err != nil {
					logger.Error("reload refused; the running config is unchanged", "err", err)
					continue
				}
				cfg = next
			case upgradeSignal:
				// The exit channel reports success; a failure is logged,
				// and this process serves on.
				go func() { _, _ = srv.Upgrade(ctx) }()
			default:
				logger.Info("stopping", "signal", sig.String(), "bound", time.Duration(cfg.ShutdownTimeout))
				stop()
				return shutdownLB(srv, cfg, logger)
			}
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
