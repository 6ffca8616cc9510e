// Package exechost drives a host with the user's own deploy, rollback and
// status scripts (a host's exec: in zerodown.yaml). zerodown does all
// around them — detach, observed drain, attach, observed health, the
// verifier, the journal, rollback and resume — and the scripts change the
// host. The scripts run on this machine, one at a time per host, each
// under its deadline (internal/script).
package exechost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/script"
)

// Config is one exec host.
type Config struct {
	// Host is the host's name: ${HOST} of its scripts.
	Host string
	Exec config.HostExec
	// Artifacts is where releases are stored for ${ARTIFACT}; the
	// environment's exec hosts share one.
	Artifacts *Artifacts
	// Record is the file that keeps what zerodown last did to the host
	// (record.go).
	Record string
}

// Deployer is a host.Deployer over the host's scripts.
type Deployer struct {
	cfg Config

	mu       sync.Mutex
	uploaded map[string]string // version → artifact path
	running  *scriptRun        // the deploy or rollback script under way
	wg       sync.WaitGroup    // scripts still running
}

// scriptRun is a deploy or rollback script under way; it may outlive the
// call that started it (an abort stops the wait, not the script).
type scriptRun struct {
	target string // the version it puts on the host
	done   chan struct{}
	err    error
}

// progressEvery is how often a running script is reported.
const progressEvery = time.Second

// statusLimit bounds what a status script may print: a version is short.
const statusLimit = 4 << 10

// errorLines is how much of a script's output an error message quotes;
// the journal gets the whole tail.
const errorLines = 10

var (
	_ host.Deployer        = (*Deployer)(nil)
	_ host.Bounder         = (*Deployer)(nil)
	_ host.RollbackChecker = (*Deployer)(nil)
)

// New returns the Deployer of one exec host.
func New(cfg Config) (*Deployer, error) {
	switch {
	case cfg.Host == "":
		return nil, errors.New("exec host: no name")
	case len(cfg.Exec.Deploy) == 0:
		return nil, fmt.Errorf("%s: exec.deploy is required", cfg.Host)
	case cfg.Artifacts == nil || cfg.Record == "":
		return nil, fmt.Errorf("%s: exec host without a store for artifacts and its record", cfg.Host)
	}
	if cfg.Exec.Timeout <= 0 {
		cfg.Exec.Timeout = config.Duration(config.DefaultExecTimeout)
	}
	return &Deployer{cfg: cfg, uploaded: map[string]string{}}, nil
}

// Bound is each script's deadline (host.Bounder).
func (d *Deployer) Bound() time.Duration { return time.Duration(d.cfg.Exec.Timeout) }

// CanRollBack says whether there is a rollback script (host.RollbackChecker).
func (d *Deployer) CanRollBack() error {
	if len(d.cfg.Exec.Rollback) == 0 {
		return fmt.Errorf("%s has no exec.rollback script: put the previous release back by hand", d.cfg.Host)
	}
	return nil
}

// Close waits for scripts still running, each within its deadline: one
// that a run stopped waiting for (an abort) is not cut short by the end of
// zerodown, which would leave its host half-changed.
func (d *Deployer) Close() { d.wg.Wait() }

// Upload stores the artifact where the deploy script finds it, ${ARTIFACT}.
func (d *Deployer) Upload(ctx context.Context, r host.Release) error {
	path, err := d.cfg.Artifacts.Put(ctx, r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.uploaded[r.Version] = path
	d.mu.Unlock()
	return nil
}

// Activate runs the deploy script for version. What the host ran before is
// recorded first (its status script's answer, else the record's last
// version), so a rollback — also one by another zerodown process — knows
// what to go back to.
func (d *Deployer) Activate(ctx context.Context, version string) error {
	d.mu.Lock()
	art, ok := d.uploaded[version]
	busy := d.running != nil
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: no artifact of %s stored for its deploy script: %w", d.cfg.Host, version, host.ErrNotFound)
	}
	if busy {
		return fmt.Errorf("%s: %w", d.cfg.Host, host.ErrBusy)
	}
	rec, err := readRecord(d.cfg.Record)
	if err != nil {
		return fmt.Errorf("%s: %w", d.cfg.Host, err)
	}
	cur := rec.Version
	if len(d.cfg.Exec.Status) > 0 {
		if cur, err = d.status(ctx); err != nil {
			return fmt.Errorf("read what %s runs before its deploy: %w", d.cfg.Host, err)
		}
	}
	next := record{Version: version, Artifact: art, Previous: cur}
	switch {
	case cur == version && rec.Version == version:
		// A deploy of the same version again (a resumed run): what it
		// replaced the first time is still what to go back to.
		next.Previous, next.PreviousArtifact = rec.Previous, rec.PreviousArtifact
	case cur == rec.Version:
		next.PreviousArtifact = rec.Artifact
	case cur == rec.Previous:
		next.PreviousArtifact = rec.PreviousArtifact
	}
	if err := context.Cause(ctx); err != nil {
		// Stopped before it began: nothing of the host changes, nor its record.
		return fmt.Errorf("%s: deploy script %s not started: %w", d.cfg.Host, d.cfg.Exec.Deploy[0], err)
	}
	if err := writeRecord(d.cfg.Record, next); err != nil {
		return fmt.Errorf("%s: record the deploy of %s before it starts: %w", d.cfg.Host, version, err)
	}
	return d.run(ctx, "deploy", d.cfg.Exec.Deploy, version, art)
}

// Rollback runs the rollback script, with ${VERSION} the release the last
// deploy replaced when that is known (else empty: the script knows).
func (d *Deployer) Rollback(ctx context.Context) error {
	if err := d.CanRollBack(); err != nil {
		return err
	}
	d.mu.Lock()
	busy := d.running != nil
	d.mu.Unlock()
	if busy {
		return fmt.Errorf("%s: %w", d.cfg.Host, host.ErrBusy)
	}
	rec, err := readRecord(d.cfg.Record)
	if err != nil {
		return fmt.Errorf("%s: %w", d.cfg.Host, err)
	}
	art := rec.PreviousArtifact
	if _, err := os.Stat(art); art != "" && err != nil {
		art = "" // pruned from the store: the script has its own copy or none
	}
	if err := d.run(ctx, "rollback", d.cfg.Exec.Rollback, rec.Previous, art); err != nil {
		return err
	}
	// What it went back to is now the host's version; what came before
	// that, zerodown does not know.
	if err := writeRecord(d.cfg.Record, record{Version: rec.Previous, Artifact: art}); err != nil {
		return fmt.Errorf("%s: rolled back, but its record could not be written: %w", d.cfg.Host, err)
	}
	return nil
}

// Status is the status script's answer, with the version the last deploy
// replaced as Previous when the host runs what that deploy put there.
// Without a status script it is zerodown's own record, marked Assumed.
// Whether the app runs and is healthy, only the load balancer says.
func (d *Deployer) Status(ctx context.Context) (host.Status, error) {
	d.mu.Lock()
	r := d.running
	d.mu.Unlock()
	rec, err := readRecord(d.cfg.Record)
	if err != nil {
		return host.Status{}, fmt.Errorf("%s: %w", d.cfg.Host, err)
	}
	noStatus := len(d.cfg.Exec.Status) == 0
	if r != nil {
		// The status script is not asked while the host is being changed.
		activating := r.target
		if activating == "" {
			activating = "the release before " + rec.Version
		}
		return host.Status{Version: rec.Version, Activating: activating, Assumed: noStatus}, nil
	}
	if noStatus {
		return host.Status{Version: rec.Version, Previous: rec.Previous, Assumed: true}, nil
	}
	v, err := d.status(ctx)
	if err != nil {
		return host.Status{}, err
	}
	st := host.Status{Version: v}
	if v != "" && v == rec.Version {
		st.Previous = rec.Previous
	}
	return st, nil
}

// status runs the status script and reads the version it printed: one
// word, or nothing for a host without a release yet.
func (d *Deployer) status(ctx context.Context) (string, error) {
	argv := d.cfg.Exec.Status
	out := &limited{max: statusLimit}
	res, err := script.Run(ctx, d.command(argv, "", "", out))
	if err != nil {
		return "", d.failed("status", argv, res, err)
	}
	if out.over {
		return "", fmt.Errorf("status script %s for %s printed more than %d bytes; want the version the host runs", argv[0], d.cfg.Host, statusLimit)
	}
	v := strings.TrimSpace(out.String())
	if v == "" {
		return "", nil
	}
	if err := host.CheckVersion(v); err != nil {
		shown := []rune(v)
		if len(shown) > 80 {
			shown = append(shown[:79], '…')
		}
		return "", fmt.Errorf("status script %s for %s printed %q, which is not a version: want the version the host runs, alone (or nothing before its first release)",
			argv[0], d.cfg.Host, string(shown))
	}
	return v, nil
}

// run runs a deploy or rollback script and waits for it. The script runs
// to its own deadline: when ctx ends first (an abort) the wait stops and
// the script goes on, reported by Status as Activating, which a rollback
// waits for.
func (d *Deployer) run(ctx context.Context, kind string, argv []string, version, artifact string) error {
	if err := context.Cause(ctx); err != nil {
		// Stopped before it began: nothing of the host changes.
		return fmt.Errorf("%s: %s script %s not started: %w", d.cfg.Host, kind, argv[0], err)
	}
	r := &scriptRun{target: version, done: make(chan struct{})}
	d.mu.Lock()
	if d.running != nil {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w", d.cfg.Host, host.ErrBusy)
	}
	d.running = r
	d.wg.Add(1)
	d.mu.Unlock()
	bg := context.WithoutCancel(ctx) // keeps the run's reporters
	start := time.Now()
	go func() {
		defer d.wg.Done()
		res, err := script.Run(bg, d.command(argv, version, artifact, nil))
		host.Output(bg, d.outputMessage(kind, argv, res, err))
		if err != nil {
			err = d.failed(kind, argv, res, err)
		}
		d.mu.Lock()
		r.err, d.running = err, nil
		d.mu.Unlock()
		close(r.done)
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			return r.err
		case <-tick.C:
			host.Progress(ctx, fmt.Sprintf("%s script %s: running for %s", kind, argv[0], time.Since(start).Round(time.Second)))
		case <-ctx.Done():
			return fmt.Errorf("%s: stopped waiting for its %s script %s after %s; it goes on within its deadline of %s: %w",
				d.cfg.Host, kind, argv[0], time.Since(start).Round(time.Second), script.Short(d.Bound()), context.Cause(ctx))
		}
	}
}

// command is a script's run: ${HOST}, ${VERSION} and ${ARTIFACT} replaced
// in its argv and set in its environment, in the exec dir, under the
// host's deadline.
func (d *Deployer) command(argv []string, version, artifact string, stdout *limited) script.Command {
	vars := strings.NewReplacer("${HOST}", d.cfg.Host, "${VERSION}", version, "${ARTIFACT}", artifact)
	c := script.Command{
		Argv:    make([]string, len(argv)),
		Dir:     d.cfg.Exec.Dir,
		Env:     []string{"HOST=" + d.cfg.Host, "VERSION=" + version, "ARTIFACT=" + artifact},
		Timeout: d.Bound(),
	}
	for i, a := range argv {
		c.Argv[i] = vars.Replace(a)
	}
	if stdout != nil {
		c.Stdout = stdout
	}
	return c
}

// outputMessage is what the journal keeps of a finished script: how it
// ended and the tail of its output.
func (d *Deployer) outputMessage(kind string, argv []string, res script.Result, err error) string {
	how := "exit status 0"
	if err != nil {
		how = err.Error()
	}
	msg := fmt.Sprintf("%s script %s: %s after %s", kind, argv[0], how, res.Took.Round(time.Millisecond))
	out := strings.TrimRight(res.Output, "\n\r\t ")
	switch {
	case out == "":
		return msg + ", no output"
	case res.Truncated:
		return msg + fmt.Sprintf("; the last %d bytes of its output:\n", len(out)) + out
	}
	return msg + "; output:\n" + out
}

// failed is the error of a script that did not exit 0: the host, the
// script, how it ended, and the end of its output.
func (d *Deployer) failed(kind string, argv []string, res script.Result, err error) error {
	var te *script.TimeoutError
	how := err.Error()
	if errors.As(err, &te) {
		how += " and was killed, with what it started in its process group"
	} else if res.Took > 0 {
		how += fmt.Sprintf(" after %s", res.Took.Round(time.Millisecond))
	}
	tail := ", with no output"
	if strings.TrimSpace(res.Output) != "" {
		tail = "; its output ends:" + script.LastLines(res.Output, errorLines, 200)
	}
	return &ScriptError{Host: d.cfg.Host, Kind: kind, Program: argv[0], msg: how + tail, err: err}
}

// ScriptError is a script that failed: which host, which script, and why.
type ScriptError struct {
	Host    string
	Kind    string // deploy, rollback or status
	Program string
	msg     string
	err     error
}

func (e *ScriptError) Error() string {
	return fmt.Sprintf("%s script %s for %s: %s", e.Kind, e.Program, e.Host, e.msg)
}

func (e *ScriptError) Unwrap() error { return e.err }

// limited keeps up to max bytes and notes more.
type limited struct {
	max  int
	b    strings.Builder
	over bool
}

// Write takes all of p, keeping what fits: a short write would fail the
// script's run.
func (l *limited) Write(p []byte) (int, error) {
	keep := p
	if room := l.max - l.b.Len(); len(keep) > room {
		l.over = true
		keep = keep[:max(room, 0)]
	}
	l.b.Write(keep)
	return len(p), nil
}

func (l *limited) String() string { return l.b.String() }
