// Package sampleapp is the sample HTTP service that zerodown's tests,
// benchmarks and demo deploy: examples/hello is a thin main over it, and the
// zerodown binary serves it too (the hidden `zerodown sample-app`), so the
// demo runs from an installed binary. Each answer says which host and
// version produced it, so a deploy can be watched switching versions; flags
// make it fail health checks, answer slowly, stream, or close idle
// keep-alive connections early, which are the situations a zero-downtime
// deploy has to survive.
//
// Routes:
//
//	GET  /healthz                   200 "ok", or 503 with --fail-health or while --unhealthy-file exists
//	GET  /stream?n=5&every=100ms    n lines, each flushed at once (chunked)
//	GET  /ws                        WebSocket echo
//	POST (any path)                 echoes the body with its Content-Type
//	GET  (any other path)           "hello from NAME version V"
//	     ?sleep=2s                  answers after that long (also for POST)
//	     ?size=N                    answers exactly N bytes (0..64MiB) instead
//
// Every answer carries X-Version and X-Host. With --request-log FILE, every
// POST carrying X-Request-Id appends a line to FILE as it starts, so a test
// can prove that no proxy ran a POST twice.
package sampleapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// logPrefix starts every line the app logs. The app is "hello" whichever
// program serves it, so its logs read the same under either.
const logPrefix = "hello:"

// Main runs the app from a command line (without the program name, which
// prog gives for usage messages) until SIGTERM or SIGINT, and returns the
// exit code: 0 after a graceful shutdown or -help, 1 when serving or the
// shutdown failed, 2 for a bad command line.
func Main(prog string, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := ParseArgs(prog, args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, logPrefix, err)
		return 2
	}
	// Subscribe before listening so a signal sent as soon as the port is
	// open is not lost to the default handler (which would kill the process).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		select {
		case sig := <-sigs:
			cancel(fmt.Errorf("got %s", sig))
		case <-ctx.Done():
		}
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintln(stderr, logPrefix, err)
		return 1
	}
	if err := Serve(ctx, ln, cfg, stderr); err != nil {
		fmt.Fprintln(stderr, logPrefix, err)
		return 1
	}
	return 0
}

// Serve serves the app on ln until ctx ends, then stops accepting and waits
// up to cfg.ShutdownTimeout for in-flight requests and open WebSockets. It
// writes its progress lines (naming context.Cause(ctx) as the reason to stop)
// to log, closes ln, and returns nil after a graceful shutdown.
func Serve(ctx context.Context, ln net.Listener, cfg Config, log io.Writer) error {
	a := newApp(cfg)
	if cfg.RequestLog != "" {
		l, f, err := openRequestLog(cfg.RequestLog, ln.Addr(), cfg.Version)
		if err != nil {
			ln.Close()
			return err
		}
		defer f.Close()
		a.reqLog = l
	}
	srv := &http.Server{
		Handler:           a,
		IdleTimeout:       cfg.IdleTimeout,
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(log, "%s listening on %s (name %s, version %s)\n", logPrefix, ln.Addr(), cfg.Name, cfg.Version)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		fmt.Fprintf(log, "%s %v, finishing in-flight requests (up to %s)\n", logPrefix, context.Cause(ctx), cfg.ShutdownTimeout)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Hijacked WebSocket connections are invisible to Shutdown: tell them to
	// close so a deploy does not leave them dangling until the process dies.
	// This runs before Shutdown (not via RegisterOnShutdown, which runs
	// concurrently) so that no WebSocket can be tracked after waitWebSockets
	// starts waiting.
	a.closeWebSockets()
	err := srv.Shutdown(sctx)
	if err == nil {
		err = a.waitWebSockets(sctx)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
