package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
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
	unlock := lockFile(b.cfg.UpstreamFile)
	defer unlock()
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
	return b.ctl().apply(ctx, what, b.cfg.UpstreamFile, snap.conf.format(), snap)
}

// fileLocks serialize the changes of one file: the engine may detach two
// hosts at once, and under blue-green two upstreams (two drivers) share a
// file; each change is a read, write, test and reload.
var fileLocks sync.Map // path → *sync.Mutex

func lockFile(path string) (unlock func()) {
	m, _ := fileLocks.LoadOrStore(path, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// ctl is how zerodown makes nginx run a file it changed: test, reload, and
// wait until the new workers serve.
type ctl struct {
	test, reload []string
	pidFile      string
	// reloadWait bounds the wait for the new workers.
	reloadWait time.Duration
}

func (b *Balancer) ctl() ctl {
	return ctl{test: b.cfg.Test, reload: b.cfg.Reload, pidFile: b.cfg.PidFile, reloadWait: b.reloadWait}
}

// apply writes data to file (snap is what it held) and makes nginx run it;
// when nginx refuses it at any step snap is put back. It returns the
// worker pids that ran before the reload (nil when /proc cannot tell).
func (c ctl) apply(ctx context.Context, what, file string, data []byte, snap snapshot) (map[int]bool, error) {
	if err := atomicfile.Write(file, data, snap.mode); err != nil {
		return nil, fmt.Errorf("nginx: %s: write %s: %w", what, file, err)
	}
	if out, err := run(ctx, c.test); err != nil {
		return nil, restore(file, snap, fmt.Errorf("nginx: %s: `%s` rejected the new %s: %w: %s", what, argv(c.test), file, err, tail(out)))
	}
	var master int
	var old map[int]bool
	if procSupported {
		var ws []proc
		var err error
		master, ws, err = workers(c.pidFile)
		if err != nil {
			return nil, restore(file, snap, fmt.Errorf("nginx: %s: before the reload: %w", what, err))
		}
		old = map[int]bool{}
		for _, w := range ws {
			old[w.pid] = true
		}
	}
	if out, err := run(ctx, c.reload); err != nil {
		return nil, restore(file, snap, fmt.Errorf("nginx: %s: `%s` failed: %w: %s", what, argv(c.reload), err, tail(out)))
	}
	if procSupported {
		if err := c.awaitReload(ctx, master, old); err != nil {
			if ctx.Err() != nil {
				// nginx got the reload and most likely runs the new file:
				// putting the old one back could leave the file unlike
				// what runs.
				return nil, fmt.Errorf("nginx: %s: %w; %s keeps the change", what, err, file)
			}
			// nginx got the reload signal: with the old file back, reload
			// again, so what nginx runs is what the file says.
			err = restore(file, snap, fmt.Errorf("nginx: %s: %w", what, err))
			if out, rerr := run(ctx, c.reload); rerr != nil {
				err = fmt.Errorf("%w; reloading nginx with it failed too (%v: %s), so nginx may run the refused change", err, rerr, tail(out))
			}
			return nil, err
		}
	}
	return old, nil
}

// restore puts file back as snap read it, and says so in cause.
func restore(file string, snap snapshot, cause error) error {
	var err error
	if snap.exists {
		err = atomicfile.Write(file, snap.data, snap.mode)
	} else if err = os.Remove(file); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%w; putting the previous %s back failed too, so it holds the refused change: %v", cause, file, err)
	}
	if !snap.exists {
		return fmt.Errorf("%w; %s is removed again, as it was", cause, file)
	}
	return fmt.Errorf("%w; the previous %s is back in place", cause, file)
}

// awaitReload waits until nginx runs the new configuration: a worker that
// was not there before the reload, and every old worker shutting down or
// gone, so no new connection reaches an old one once a change returns.
// `nginx -s reload` only signals the master and returns at once; when the
// master cannot apply the configuration (a port it cannot bind, a file it
// cannot open) it logs that and keeps the old workers.
func (c ctl) awaitReload(ctx context.Context, master int, old map[int]bool) error {
	deadline := time.Now().Add(c.reloadWait)
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
				c.reloadWait, argv(c.reload), master, c.pidFile, fresh, serving)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for nginx (master pid %d from %s) to start workers with the new configuration: %w", master, c.pidFile, ctx.Err())
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
