// Package deploy runs a release on an environment: it checks everything
// that can be checked before anything changes, takes the environment's
// lock, journals the run, runs its pipeline under the load verifier, and
// ends the run in the journal; it also resumes and rolls back old runs.
// The CLI and the server both call it: there is one implementation of "run
// this release on this environment".
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/notify"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/store"
)

// Options are what every run needs besides its request.
type Options struct {
	Config *config.Deploy
	Store  store.Store
	// OnStart is called once the run exists in the journal, before any
	// host or the load balancer is changed.
	OnStart func(Start)
	// OnEvent sees every event of the run as it happens.
	OnEvent func(engine.Event)
	// Warn receives messages for people: a lock taken over, a heartbeat
	// failing, a report that could not be written. Nil discards them.
	Warn io.Writer
	// Lease is how long the environment's lock outlives its holder's last
	// heartbeat; DefaultLease when zero. zerodown server's replicas take
	// over a run whose lease ran out.
	Lease time.Duration
}

func (o Options) lease() time.Duration {
	if o.Lease <= 0 {
		return DefaultLease
	}
	return o.Lease
}

// Request is one release for one environment.
type Request struct {
	Env      string
	Version  string
	Artifact string
	// Pipeline names a hand-written pipeline; empty runs the environment's
	// strategy.
	Pipeline string
	// TakeOver takes the environment's lock from a run whose process is
	// gone.
	TakeOver bool
	// App replaces zerodown.yaml's app spec (a promotion deploys the spec
	// that passed the environment before); PromotedFrom is that run.
	App          *config.App
	PromotedFrom string
	// SHA256, when set, is what the artifact must hash to: a promotion's
	// file read again must still be the build that passed.
	SHA256 string
}

// release checks and describes req's artifact.
func (req Request) release(cfg *config.Deploy) (host.Release, error) {
	rel, err := Release(req.Artifact, req.Version, req.app(cfg))
	if err == nil && req.SHA256 != "" && rel.SHA256 != req.SHA256 {
		err = badInput(fmt.Errorf("artifact %s changed since it was chosen (sha256 %s, want %s): only the build that passed is deployed", req.Artifact, rel.SHA256, req.SHA256))
	}
	return rel, err
}

// app is the spec req deploys.
func (req Request) app(cfg *config.Deploy) config.App {
	if req.App != nil {
		return *req.App
	}
	return cfg.App
}

// EvVerify is the journal's event for each second of the load verifier:
// its Data is the loadgen.Row of that second.
const EvVerify = "verify"

// Start describes a run as it begins.
type Start struct {
	RunID    string   `json:"id"`
	Env      string   `json:"env"`
	Version  string   `json:"version"`
	Pipeline string   `json:"pipeline"`
	Hosts    []string `json:"hosts"`
	Tasks    int      `json:"tasks"`
	// Mode is "deploy", "resume" or "rollback".
	Mode string `json:"mode"`
}

// Outcome is how a run ended.
type Outcome struct {
	// Run is the run as journaled at its end; zero when NothingToDo.
	Run    store.Run
	Result engine.Result
	// Verify is the load verifier's finding; nil without a verify block.
	Verify *Verification
	// NothingToDo: every host already ran the version and was healthy, so
	// no run was created.
	NothingToDo bool
}

// Plan returns what Deploy would run for req, and the hosts it would skip
// because they already run the version and are healthy. It contacts the
// balancer and the hosts, and changes nothing.
func Plan(ctx context.Context, cfg *config.Deploy, req Request) (*pipeline.Pipeline, map[string]bool, error) {
	if _, err := req.release(cfg); err != nil {
		return nil, nil, err
	}
	f, err := newFleet(ctx, cfg, req.Env)
	if err != nil {
		return nil, nil, err
	}
	defer f.close()
	skip, live, err := f.lookAround(ctx, req.Version)
	if err != nil {
		return nil, nil, err
	}
	p, err := Pipeline(cfg, f.env, req.Pipeline, skip, live)
	return p, skip, err
}

// lookAround finds the hosts already on version and, under blue-green,
// the pool that serves users.
func (f *fleet) lookAround(ctx context.Context, version string) (map[string]bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	skip, err := f.alreadyDone(ctx, version)
	if err != nil {
		return nil, "", err
	}
	live, err := LivePool(ctx, f.env, f.sw)
	return skip, live, err
}

// Deploy runs req. Everything that can be checked without changing
// anything — the artifact, the version, the drivers, the tokens, the lock —
// is checked before the run is created: a bad input is an *InputError and
// a held lock a *RefusedError, with no run left behind. A run whose lock
// another executor takes over stops here without an outcome: the error
// wraps engine.ErrTakenOver, and the run goes on there.
func Deploy(ctx context.Context, o Options, req Request) (*Outcome, error) {
	cfg := o.Config
	app := req.app(cfg)
	rel, err := req.release(cfg)
	if err != nil {
		return nil, err
	}
	if req.PromotedFrom != "" && req.App == nil {
		return nil, badInput(fmt.Errorf("a promotion from run %s carries no app spec", req.PromotedFrom))
	}
	f, err := newFleet(ctx, cfg, req.Env)
	if err != nil {
		return nil, err
	}
	defer f.close()
	skip, live, err := f.lookAround(ctx, req.Version)
	if err != nil {
		return nil, err
	}
	p, err := Pipeline(cfg, f.env, req.Pipeline, skip, live)
	if err != nil {
		return nil, err
	}
	if len(p.Stages) == 0 {
		return &Outcome{NothingToDo: true}, nil
	}
	// The lock comes first, so a refused deploy leaves no run behind.
	runID := store.NewRunID(time.Now())
	ctx, lockLost := context.WithCancelCause(ctx)
	defer lockLost(nil)
	lease, err := holdLock(ctx, o.Store, f.env.Name, runID, o.lease(), req.TakeOver, o.warn(), lockLost)
	if err != nil {
		return nil, err
	}
	defer lease.release()
	plan, _ := json.Marshal(p)
	spec, _ := json.Marshal(app)
	run, err := o.Store.CreateRun(ctx, store.Run{ID: runID, Env: f.env.Name, Pipeline: p.Name, Version: req.Version,
		Artifact: req.Artifact, SHA256: rel.SHA256, Owner: store.ProcessOwner(), Plan: plan, Spec: spec, PromotedFrom: req.PromotedFrom})
	if err != nil {
		return nil, err
	}
	return o.execute(ctx, lease, f, rel, run, p, nil, "deploy")
}

// Resume continues a run whose process died: tasks that passed are not run
// again, and the run's events say who resumed it.
func Resume(ctx context.Context, o Options, runID string) (*Outcome, error) {
	return o.reopen(ctx, runID, false)
}

// Rollback undoes a run: every host it touched goes back to its previous
// release through the load balancer, attached and healthy. It works from
// what the hosts and the balancer report, so it also undoes a run whose
// process died.
func Rollback(ctx context.Context, o Options, runID string) (*Outcome, error) {
	return o.reopen(ctx, runID, true)
}

func (o Options) reopen(ctx context.Context, runID string, rollback bool) (*Outcome, error) {
	run, err := GetRun(ctx, o.Store, runID)
	if err != nil {
		return nil, err
	}
	if !rollback && run.Status != store.RunRunning {
		return nil, badInput(fmt.Errorf("run %s ended (%s); only a run whose process died can be resumed", run.ID, run.Status))
	}
	var p pipeline.Pipeline
	if err := json.Unmarshal(run.Plan, &p); err != nil {
		return nil, fmt.Errorf("run %s: its plan in the journal is unreadable: %w", run.ID, err)
	}
	app, err := RunSpec(run, o.Config)
	if err != nil {
		return nil, err
	}
	rel, err := Release(run.Artifact, run.Version, app)
	switch {
	case err != nil && rollback:
		// Going back needs no artifact, only which version the run brought.
		rel = host.Release{Version: run.Version, SHA256: run.SHA256}
	case err != nil:
		return nil, err
	case rel.SHA256 != run.SHA256:
		return nil, badInput(fmt.Errorf("artifact %s changed since run %s started (sha256 %s, was %s)", run.Artifact, run.ID, rel.SHA256, run.SHA256))
	}
	f, err := newFleet(ctx, o.Config, run.Env)
	if err != nil {
		return nil, err
	}
	defer f.close()
	ctx, lockLost := context.WithCancelCause(ctx)
	defer lockLost(nil)
	// Only this run's own lock is taken over (when its holder is gone): a
	// lock another run holds is that run's to resume or roll back first.
	lease, err := holdLock(ctx, o.Store, f.env.Name, run.ID, o.lease(), false, o.warn(), lockLost)
	var refused *RefusedError
	var le *store.LockedError
	if errors.As(err, &refused) && errors.As(err, &le) && le.Lock.RunID != run.ID {
		return nil, &RefusedError{Err: fmt.Errorf("%w; resume or roll back run %s first", le, le.Lock.RunID)}
	}
	if err != nil {
		return nil, err
	}
	defer lease.release()
	// Read again under the lock: another executor may have ended the run
	// between the first read and the lock (a takeover that lost the race
	// finds the lock free once the winner is done).
	if run, err = GetRun(ctx, o.Store, runID); err != nil {
		return nil, err
	}
	if !rollback && run.Status != store.RunRunning {
		return nil, &RefusedError{Err: fmt.Errorf("run %s ended (%s) while this resume waited for its lock", run.ID, run.Status)}
	}
	if rollback {
		// Refused before the run is touched: a refusal leaves it as it was.
		if err := o.canSwitchBack(ctx, f, run, p.SwitchOf()); err != nil {
			return nil, err
		}
	}
	// The run is this process's now: `resume` of a pause in it must see a
	// live owner.
	_ = o.Store.UpdateRun(ctx, run.ID, store.RunUpdate{Status: store.RunRunning, Owner: store.ProcessOwner()})
	if !rollback {
		// Whoever follows the run (a server's event stream, show) learns
		// why its stages start over, and who carries it on.
		if _, err := o.Store.AppendEvent(ctx, store.Event{RunID: run.ID, Type: engine.EvInfo,
			Message: fmt.Sprintf("resumed by %s from where %s left it", store.ProcessOwner(), run.Owner)}); err != nil {
			fmt.Fprintf(o.warn(), "warning: journal the resume: %v\n", err)
		}
		skip, err := engine.PassedTasks(ctx, o.Store, run.ID)
		if err != nil {
			return nil, err
		}
		return o.execute(ctx, lease, f, rel, run, &p, skip, "resume")
	}
	touched, err := engine.TouchedHosts(ctx, o.Store, run.ID)
	if err != nil {
		return nil, err
	}
	eng := o.engine(f, lease, rel, run.ID, &p)
	nt := newRunNotifier(f.hooks, run, o.warn())
	nt.send(notify.RunStarted, "rollback")
	if o.OnStart != nil {
		o.OnStart(Start{RunID: run.ID, Env: run.Env, Version: run.Version, Pipeline: run.Pipeline, Hosts: touched, Mode: "rollback"})
	}
	if err := lease.confirm(ctx); err != nil {
		return nil, err
	}
	stranded := eng.RollBack(ctx, touched)
	if lease.isLost() {
		return nil, takenOver(ctx, run.ID)
	}
	res := engine.Result{Status: engine.StatusRolledBack, Changed: touched, Stranded: stranded, Err: errors.New("rolled back on request")}
	if len(stranded) > 0 {
		res.Status = engine.StatusNeedsAttention
	}
	out, err := o.end(run, res, nil)
	if out != nil {
		nt.ended(out.Run)
	}
	return out, err
}

func (o Options) warn() io.Writer {
	if o.Warn == nil {
		return io.Discard
	}
	return o.Warn
}

// takenOver is what a run that another executor took over returns here.
func takenOver(ctx context.Context, runID string) error {
	return fmt.Errorf("run %s stopped here, nothing rolled back: %w; it goes on under the new holder of the lock", runID, context.Cause(ctx))
}

// engine builds the run's engine for p: what a rollback must undo besides
// hosts (a blue-green switch, a canary's weights) comes from p. Its journal
// is fenced by the run's lease.
func (o Options) engine(f *fleet, lease *runLease, rel host.Release, runID string, p *pipeline.Pipeline) *engine.Engine {
	e := &engine.Engine{
		LB: f.bal, Hosts: f.hosts, Release: rel, Journal: fencedJournal{Journal: engine.StoreJournal{Store: o.Store, RunID: runID}, lease: lease},
		MinHealthy: minHealthy(f.env), Rollback: f.env.Rollback, OnEvent: o.OnEvent, Switcher: f.sw,
		Switch: p.SwitchOf(), Fence: lease.confirm,
	}
	if w := p.WeightsOf(); w != nil {
		e.Canary = &engine.Canary{Hosts: w.Canary, Base: w.Base}
	}
	_, health, parallel := f.env.Strategy.HostTimeouts()
	e.UploadParallel, e.HealthTimeout = parallel, health
	return e
}

// execute runs p under the load verifier when the environment has one: a
// failed request beyond its thresholds stops the run, the hosts serving the
// new version leave the balancer first, and the run is rolled back.
func (o Options) execute(ctx context.Context, lease *runLease, f *fleet, rel host.Release, run store.Run, p *pipeline.Pipeline,
	skip map[engine.TaskKey]bool, mode string) (*Outcome, error) {
	eng := o.engine(f, lease, rel, run.ID, p)
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	nt := newRunNotifier(f.hooks, run, o.warn())
	nt.send(notify.RunStarted, mode)
	end := func(res engine.Result, v *Verification) (*Outcome, error) {
		out, err := o.end(run, res, v)
		if out != nil {
			nt.ended(out.Run)
		}
		return out, err
	}
	var ver *verifier
	stopWatching := func() {}
	if f.env.Verify != nil {
		var err error
		if ver, err = newVerifier(f.env.Verify, f.bal, ReportDir(o.Config), run.ID); err != nil {
			return end(engine.Result{Status: engine.StatusFailed, Err: err}, nil)
		}
		if err := ver.start(runCtx); err != nil {
			return end(engine.Result{Status: engine.StatusFailed, Err: err}, nil)
		}
		ver.onSample = func(row loadgen.Row) {
			if lease.confirm(runCtx) != nil {
				return // the run's journal is another executor's now
			}
			// The server's charts read these from the journal, so every
			// replica draws the same.
			data, _ := json.Marshal(row)
			if _, err := o.Store.AppendEvent(runCtx, store.Event{RunID: run.ID, Type: EvVerify, Data: data,
				Message: fmt.Sprintf("%d sent, %d ok, %d failed, p99 %s", row.Sent, row.OK, row.Failed, row.P99.Duration())}); err != nil && runCtx.Err() == nil {
				fmt.Fprintf(o.warn(), "warning: journal the verifier's sample: %v\n", err)
			}
		}
		watchCtx, stopWatch := context.WithCancel(runCtx)
		watched := make(chan struct{})
		go func() { defer close(watched); ver.watch(watchCtx, stopRun) }()
		// Its samples, the last second's too, are journaled before the
		// run's end: once a run has ended, whoever follows it stops reading.
		stopWatching = func() { stopWatch(); <-watched }
		eng.VersionWindow = ver.g.VersionWindow
	}
	eng.OnEvent = func(e engine.Event) {
		if o.OnEvent != nil {
			o.OnEvent(e)
		}
		if ver != nil {
			ver.mark(e)
		}
		nt.event(e)
	}
	if o.OnStart != nil {
		o.OnStart(Start{RunID: run.ID, Env: run.Env, Version: run.Version, Pipeline: p.Name, Hosts: p.Hosts(),
			Tasks: CountTasks(p), Mode: mode})
	}
	res := eng.Run(runCtx, p, skip)
	if lease.isLost() {
		// The run is another executor's: its end, its report and its
		// webhooks are the other's to send.
		if ver != nil {
			_, _ = ver.finish()
		}
		stopWatching()
		return nil, takenOver(ctx, run.ID)
	}
	if cause := context.Cause(runCtx); res.Err != nil && cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(res.Err, cause) {
		// Say why the run stopped: the verifier.
		res.Err = fmt.Errorf("%w (%v)", cause, res.Err)
	}
	var verified *Verification
	if ver != nil {
		var err error
		verified, err = ver.finish()
		stopWatching()
		if err != nil {
			fmt.Fprintf(o.warn(), "warning: %v\n", err)
		}
		if verified != nil && !verified.Pass && verified.Report != nil && res.Status == engine.StatusSucceeded {
			// The hosts are on the new version but requests failed on the
			// way: that is not a deploy to keep.
			res.Err = errors.New("the load verifier's thresholds failed")
			if lease.confirm(context.Background()) != nil && lease.isLost() {
				return nil, takenOver(ctx, run.ID)
			}
			res.Stranded = eng.RollBack(context.Background(), res.Changed)
			res.Status = engine.StatusRolledBack
			if len(res.Stranded) > 0 {
				res.Status = engine.StatusNeedsAttention
			}
		}
		if verified != nil && verified.Report != nil {
			verified.Report.Run = &loadgen.RunInfo{ID: run.ID, Environment: run.Env, Version: run.Version, Outcome: string(res.Status)}
			if res.Err != nil {
				verified.Report.Run.Reason = res.Err.Error()
			}
			page, err := ver.write(verified)
			if err != nil {
				fmt.Fprintf(o.warn(), "warning: %v\n", err)
			}
			// In the journal too, before the run's end: whoever reads the
			// journal (any server replica) serves it once the run ends. A
			// run lost meanwhile is the new executor's to report.
			if page != nil && !lease.isLost() {
				if err := o.Store.PutReport(context.Background(), run.ID, page); err != nil {
					fmt.Fprintf(o.warn(), "warning: %v\n", err)
				}
			}
		}
	}
	return end(res, verified)
}

// end journals how the run ended.
func (o Options) end(run store.Run, res engine.Result, v *Verification) (*Outcome, error) {
	upd := store.RunUpdate{Status: StoreStatus(res), EndedAt: time.Now()}
	if res.Err != nil {
		upd.Error = res.Err.Error()
	}
	if err := o.Store.UpdateRun(context.Background(), run.ID, upd); err != nil {
		fmt.Fprintf(o.warn(), "warning: could not journal the end of the run: %v\n", err)
	}
	run.Status, run.EndedAt, run.Error = upd.Status, upd.EndedAt, upd.Error
	return &Outcome{Run: run, Result: res, Verify: v}, nil
}

// StoreStatus is how the journal names an engine result.
func StoreStatus(res engine.Result) store.RunStatus {
	switch res.Status {
	case engine.StatusSucceeded:
		return store.RunSucceeded
	case engine.StatusRolledBack:
		if res.Aborted {
			return store.RunAborted
		}
		return store.RunRolledBack
	case engine.StatusNeedsAttention:
		return store.RunNeedsAttention
	}
	if res.Aborted {
		return store.RunAborted
	}
	return store.RunFailed
}

// ReportDir is where a run's verifier reports go: beside the journal.
func ReportDir(cfg *config.Deploy) string {
	return filepath.Join(filepath.Dir(cfg.State), "reports")
}

// GetRun finds a run in the journal; an unknown id is bad input.
func GetRun(ctx context.Context, st store.Store, id string) (store.Run, error) {
	r, err := st.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return r, badInput(fmt.Errorf("no run %s (see zerodown history)", id))
	}
	return r, err
}
