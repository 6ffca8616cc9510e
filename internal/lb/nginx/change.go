package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/atomicfile"
)

// change applies edit to the upstream file and makes nginx run it: write
// the file atomically, test the configuration, reload. When nginx refuses
// it at any step the previous content is put back, so the file always
// holds what nginx runs. An edit that changes nothing reloads nothing.
// It returns the worker pids that ran before the reload (nil when
// nothing changed or /proc cannot tell).
func (b *Balancer) change(ctx context.Context, what string, edit func(*conf) (bool, error)) (map[int]bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	snap, err := b.read()
	if err != nil {
		return nil, fmt.Errorf("nginx: %s: %w", what, err)
	}
	changed, err := edit(snap.conf)
	if err != nil {
		return nil, fmt.Errorf("nginx: %s: %w", what, err)
	}
	if !changed {
		return nil, nil
	}
	file := b.cfg.UpstreamFile
	if err := atomicfile.Write(file, snap.conf.format(), snap.mode); err != nil {
		return nil, fmt.Errorf("nginx: %s: write %s: %w", what, file, err)
	}
	if out, err := run(ctx, b.cfg.Test); err != nil {
		return nil, b.restore(snap, fmt.Errorf("nginx: %s: `%s` rejected the new %s: %w: %s", what, argv(b.cfg.Test), file, err, tail(out)))
	}
	var master int
	var old map[int]bool
	if procSupported {
		var ws []proc
		master, ws, err = b.workers()
		if err != nil {
			return nil, b.restore(snap, fmt.Errorf("nginx: %s: before the reload: %w", what, err))
		}
		old = map[int]bool{}
		for _, w := range ws {
			old[w.pid] = true
		}
	}
	if out, err := run(ctx, b.cfg.Reload); err != nil {
		return nil, b.restore(snap, fmt.Errorf("nginx: %s: `%s` failed: %w: %s", what, argv(b.cfg.Reload), err, tail(out)))
	}
	if procSupported {
		if err := b.awaitReload(ctx, master, old); err != nil {
			if ctx.Err() != nil {
				// nginx got the reload and most likely runs the new file:
				// putting the old one back could leave the file unlike
				// what runs.
				return nil, fmt.Errorf("nginx: %s: %w; %s keeps the change", what, err, file)
			}
			// nginx got the reload signal: with the old file back, reload
			// again, so what nginx runs is what the file says.
			err = b.restore(snap, fmt.Errorf("nginx: %s: %w", what, err))
			if out, rerr := run(ctx, b.cfg.Reload); rerr != nil {
				err = fmt.Errorf("%w; reloading nginx with it failed too (%v: %s), so nginx may run the refused change", err, rerr, tail(out))
			}
			return nil, err
		}
	}
	return old, nil
}

// restore puts the file back as snap read it, and says so in cause.
func (b *Balancer) restore(snap snapshot, cause error) error {
	var err error
	if snap.exists {
		err = atomicfile.Write(b.cfg.UpstreamFile, snap.data, snap.mode)
	} else if err = os.Remove(b.cfg.UpstreamFile); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%w; putting the previous %s back failed too, so it holds the refused change: %v", cause, b.cfg.UpstreamFile, err)
	}
	if !snap.exists {
		return fmt.Errorf("%w; %s is removed again, as it was", cause, b.cfg.UpstreamFile)
	}
	return fmt.Errorf("%w; the previous %s is back in place", cause, b.cfg.UpstreamFile)
}

// awaitReload waits until nginx runs the new configuration: a worker that
// was not there before the reload, and every old worker shutting down or
// gone, so no new connection reaches an old one once a change returns.
// `nginx -s reload` only signals the master and returns at once; when the
// master cannot apply the configuration (a port it cannot bind, a file it
// cannot open) it logs that and keeps the old workers.
func (b *Balancer) awaitReload(ctx context.Context, master int, old map[int]bool) error {
	deadline := time.Now().Add(b.reloadWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ws, err := children(master)
		if err != nil {
			return fmt.Errorf("after the reload: %w", err)
		}
		fresh, serving := 0, 0
		for _, w := range ws {
			switch {
			case old[w.pid] && w.title != titleShuttingDown:
				serving++
			case !old[w.pid] && w.title == titleWorker:
				fresh++
			}
		}
		if fresh > 0 && serving == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after `%s`, nginx (master pid %d from %s) has started %d workers with the new configuration and %d of the old one still accept connections: "+
				"nginx did not take the new configuration at reload time; its error log says why",
				b.reloadWait, argv(b.cfg.Reload), master, b.cfg.PidFile, fresh, serving)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for nginx (master pid %d from %s) to start workers with the new configuration: %w", master, b.cfg.PidFile, ctx.Err())
		case <-tick.C:
		}
	}
}

// run runs argv and returns its output, stdout and stderr together.
func run(ctx context.Context, args []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	// A child that keeps the output pipe open must not hold the change.
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

func argv(args []string) string { return strings.Join(args, " ") }

// tail is the end of a command's output on one line: nginx says what it
// refused in its last lines.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
