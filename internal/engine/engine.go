// Package engine executes pipelines: it detaches hosts from the load
// balancer, waits until they are drained, deploys, attaches them again and
// waits until the load balancer reports them healthy, journaling every step,
// and rolls back every host it changed when a step fails.
package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// Journal is what the engine records as it goes. A task's start is written
// before the task acts, so a crashed run can be resumed or rolled back.
type Journal interface {
	TaskStarted(ctx context.Context, k TaskKey, t pipeline.Task) error
	TaskFinished(ctx context.Context, k TaskKey, status TaskStatus, err error) error
	Event(ctx context.Context, e Event) error
	// AbortRequested reports whether `zerodown abort RUN` asked this run to
	// stop.
	AbortRequested(ctx context.Context) (bool, error)
	// Approved reports whether a person approved the stage, and who.
	Approved(ctx context.Context, stage string) (by string, ok bool, err error)
}

// TaskKey names a task within a run.
type TaskKey struct {
	Stage string
	Job   string
	Index int
}

func (k TaskKey) String() string { return fmt.Sprintf("%s/%s/%d", k.Stage, k.Job, k.Index) }

// TaskStatus is how a task ended.
type TaskStatus string

// Task statuses.
const (
	TaskPassed    TaskStatus = "passed"
	TaskFailed    TaskStatus = "failed"
	TaskSkipped   TaskStatus = "skipped"
	TaskCancelled TaskStatus = "cancelled"
)

// Event is one thing that happened during a run, for the journal, the live
// view and the load verifier's report.
type Event struct {
	At      time.Time `json:"at"`
	Host    string    `json:"host,omitempty"`
	Type    string    `json:"type"`
	Message string    `json:"message"`
	// InFlight is the target's in-flight count, for draining events.
	InFlight int `json:"in_flight,omitempty"`
	// Stage is the stage waiting, for approval and pause events.
	Stage string `json:"stage,omitempty"`
}

// Event types.
const (
	EvStage      = "stage"
	EvTask       = "task"
	EvDetaching  = "detaching"
	EvDraining   = "draining"
	EvDrained    = "drained"
	EvDeploying  = "deploying"
	EvActivated  = "activated"
	EvAttaching  = "attaching"
	EvChecking   = "checking-health"
	EvHealthy    = "healthy"
	EvDone       = "done"
	EvFailed     = "failed"
	EvRollback   = "rolling-back"
	EvRolledBack = "rolled-back"
	EvDetached   = "left-detached"
	EvWaiting    = "waiting"
	// EvApproval is a run waiting for a person's approval of a stage.
	EvApproval = "waiting-for-approval"
	// EvPaused is a run held by a pause task.
	EvPaused = "paused"
	EvInfo   = "info"
	// EvProgress is how a host's activation or rollback is getting on.
	EvProgress = "progress"
	// EvSwitched is live traffic moved to another pool (blue-green).
	EvSwitched = "switched"
	// EvCanary is a canary's share of traffic or analysis.
	EvCanary = "canary"
)

// Host is one host the engine may act on.
type Host struct {
	Name     string
	Target   string // ip:port in the load balancer
	Deployer host.Deployer
	// SwapTarget is the address of the host's second slot (swap); empty
	// when it has one.
	SwapTarget string
}

// Engine runs pipelines for one environment and one release.
type Engine struct {
	LB      lb.Balancer
	Hosts   map[string]Host
	Release host.Release
	Journal Journal
	// MinHealthy is how many targets must stay healthy in the load balancer;
	// a detach that would go below it fails.
	MinHealthy int
	// Rollback is config.RollbackAuto or config.RollbackManual.
	Rollback       string
	UploadParallel int
	// HealthTimeout bounds the wait for a host to be healthy again during a
	// rollback.
	HealthTimeout time.Duration
	// OnEvent, if set, sees every event as it happens (the live view).
	OnEvent func(Event)
	// Switcher and Switch are blue-green's: the balancer's pool switch,
	// and the run's switch of live traffic (from its pipeline), which a
	// rollback undoes first.
	Switcher lb.Switcher
	Switch   *config.SwitchTask
	// Canary is the run's canary (from its pipeline). VersionWindow opens
	// a window on the load verifier's answers by version, which a canary
	// step's analysis compares: the function it returns gives the answers
	// since it opened. Nil without a verifier.
	Canary        *Canary
	VersionWindow func() (answered func() map[string]loadgen.VersionStat)
	// Fence, if set, confirms that the run may still act on hosts: it is
	// asked before a rollback and an on_cancel task. An error wrapping
	// ErrTakenOver stops the run where it is (another executor has it).
	Fence func(ctx context.Context) error

	detachMu  sync.Mutex // one min_healthy check and detach at a time
	uploadSem chan struct{}
	byTarget  map[string]string // target address → host name

	mu          sync.Mutex
	touched     map[string]bool // hosts this run detached or deployed to
	order       []string
	switched    bool      // this run switched live traffic
	canarySince time.Time // when the first canary host began serving the release
	// saidNoCounts: the run said its canary is compared on the verifier alone.
	saidNoCounts bool

	// drainBound and healthBound are the balancer's own bounds, read once
	// per run (a failed read is tried again at the next wait).
	drainBound, healthBound lbBound
	notedMu                 sync.Mutex
	noted                   map[string]bool

	// Events go to the journal from a queue, off the run's critical path;
	// task starts and ends stay synchronous.
	evMu sync.RWMutex
	evq  chan Event
}

// takenOver reports, as an error wrapping ErrTakenOver, that another
// executor has the run: ctx's cause says so, or the fence does. nil: this
// run may act.
func (e *Engine) takenOver(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrTakenOver) {
		return cause
	}
	if e.Fence == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.Fence(fctx); errors.Is(err, ErrTakenOver) {
		return err
	}
	return nil
}

// eventQueue is how many events may wait for the journal.
const eventQueue = 4096

// journalEvents starts writing events to the journal in the background and
// returns the func that flushes and stops it. Nested calls share one writer.
func (e *Engine) journalEvents() (flush func()) {
	e.evMu.Lock()
	defer e.evMu.Unlock()
	if e.Journal == nil || e.evq != nil {
		return func() {}
	}
	q := make(chan Event, eventQueue)
	done := make(chan struct{})
	e.evq = q
	go func() {
		defer close(done)
		for ev := range q {
			_ = e.Journal.Event(context.Background(), ev)
		}
	}()
	return func() {
		e.evMu.Lock()
		e.evq = nil
		close(q)
		e.evMu.Unlock()
		<-done
	}
}

// Status of a finished run.
type Status string

// Run statuses, with the exit codes the CLI gives them.
const (
	StatusSucceeded      Status = "succeeded"       // exit 0
	StatusRolledBack     Status = "rolled_back"     // exit 1
	StatusFailed         Status = "failed"          // exit 1: failed, nothing to roll back
	StatusNeedsAttention Status = "needs_attention" // exit 3
	// StatusTakenOver: another executor took the run over (its lock)
	// and carries it on from the journal; this one stopped where it was
	// and undid nothing.
	StatusTakenOver Status = "taken_over"
)

// Result is how a run ended.
type Result struct {
	Status Status
	// Err is the first failure, nil on success.
	Err error
	// Changed are the hosts the run touched.
	Changed []string
	// Stranded are hosts left detached or on a half-done version, each with
	// the reason, when even the rollback could not fix them.
	Stranded map[string]string
	// Aborted is set when the run stopped because it was asked to.
	Aborted bool
}

// ErrAborted is the failure of a run stopped by SIGINT, SIGTERM or
// `zerodown abort`.
var ErrAborted = errors.New("run aborted")

// ErrTakenOver is the cause of a run stopped because another executor took
// it over: it stops at once and rolls nothing back, since undoing the
// hosts would undo the new executor's work on them.
var ErrTakenOver = fmt.Errorf("%w: another executor took the run over", ErrAborted)

// ErrRequestsFailing is the cause of a run stopped because requests through
// the load balancer fail (the load verifier). The hosts serving the new
// version are then the suspects, taken out before anything is rolled back.
var ErrRequestsFailing = fmt.Errorf("%w: requests through the load balancer are failing", ErrAborted)

// Run executes p. skip holds tasks that already passed in an earlier attempt
// of the same run (resume). ctx ending, or the journal's abort flag, stops
// the run at the next safe point and rolls back — unless ctx's cause is
// ErrTakenOver: then the run stops and changes nothing more.
func (e *Engine) Run(ctx context.Context, p *pipeline.Pipeline, skip map[TaskKey]bool) Result {
	e.init()
	flush := e.journalEvents()
	defer flush()
	stop, stopRun := context.WithCancelCause(context.Background())
	defer stopRun(nil)
	stopFor := func() {
		cause := context.Cause(ctx)
		if !errors.Is(cause, ErrAborted) {
			cause = ErrAborted
		}
		stopRun(cause)
	}
	go func() {
		select {
		case <-ctx.Done():
			stopFor()
		case <-stop.Done():
		}
	}()
	go e.watchAbort(stop, stopRun)
	e.advise(stop)

	var failure error
	for _, st := range p.Stages {
		if ctx.Err() != nil {
			stopFor() // at once, not when the goroutine above gets to it
		}
		if stop.Err() != nil {
			failure = context.Cause(stop)
			break
		}
		e.emit(Event{Type: EvStage, Message: "stage " + st.Name})
		if err := e.runStage(stop, st, skip); err != nil {
			failure = err
			break
		}
	}
	stopRun(nil)
	res := Result{Changed: e.changed()}
	if failure == nil {
		res.Status = StatusSucceeded
		return res
	}
	res.Err = failure
	res.Aborted = errors.Is(failure, ErrAborted)
	if err := e.takenOver(ctx); err != nil {
		// A task refused for the lost lock can end the stage before stop
		// learns why; and a run that only now learns the lock is gone
		// (paused, or cut off from the journal) must undo nothing: the
		// hosts are the new executor's.
		res.Err = err
		res.Status = StatusTakenOver
		return res
	}
	if len(res.Changed) == 0 && !e.hasSwitched() {
		res.Status = StatusFailed
		return res
	}
	if e.Rollback == config.RollbackManual {
		res.Stranded = e.describeLeftovers(res.Changed, "rollback: manual; left for a person")
		res.Status = StatusNeedsAttention
		return res
	}
	// Every host gets its weight back before anything leaves: at a
	// canary's last step the others have weight 0, and taking the canary
	// out then would leave nothing routable.
	e.resetWeights()
	if errors.Is(failure, ErrCanaryFailed) {
		// The canary leaves at once, before its rollback's drain.
		e.detachSuspects(res.Changed)
		e.emit(Event{Type: EvCanary, Message: fmt.Sprintf("canary aborted: out of the load balancer %s after it began serving",
			time.Since(e.canaryStart()).Round(time.Millisecond))})
	}
	if errors.Is(failure, ErrRequestsFailing) && e.Switch == nil {
		// Under blue-green the remedy is the switch back, at once: the
		// old pool is warm, and the new one may be all that is live.
		e.detachSuspects(res.Changed)
	}
	res.Stranded = e.RollBack(context.Background(), res.Changed)
	if len(res.Stranded) > 0 {
		res.Status = StatusNeedsAttention
	} else {
		res.Status = StatusRolledBack
	}
	return res
}

// advise says, once at the start, what in the balancer's settings makes
// this run slower or riskier than it needs to be, and reads its bounds
// then, so a balancer that cannot be asked at the first drain has already
// told.
func (e *Engine) advise(ctx context.Context) {
	if db, ok := e.LB.(lb.DrainBounder); ok {
		e.drainBound.get(e, "draining bound", db.DrainBound)
	}
	if hb, ok := e.LB.(lb.HealthBounder); ok {
		e.healthBound.get(e, "health check bound", hb.HealthBound)
	}
	a, ok := e.LB.(lb.Advisor)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, defaultLBCallTimeout)
	defer cancel()
	advice, err := a.Advice(ctx)
	if err != nil {
		e.emit(Event{Type: EvInfo, Message: "could not read the load balancer's settings: " + err.Error()})
		return
	}
	for _, line := range advice {
		e.emit(Event{Type: EvInfo, Message: line})
	}
}

func (e *Engine) init() {
	if e.touched == nil {
		e.touched = map[string]bool{}
	}
	if e.UploadParallel <= 0 {
		e.UploadParallel = config.DefaultUploadParallel
	}
	if e.uploadSem == nil {
		e.uploadSem = make(chan struct{}, e.UploadParallel)
	}
	if e.HealthTimeout <= 0 {
		e.HealthTimeout = config.DefaultRolloutHealthTimeout
	}
	if e.byTarget == nil {
		e.byTarget = make(map[string]string, len(e.Hosts))
		for _, h := range e.Hosts {
			e.byTarget[h.Target] = h.Name
			if h.SwapTarget != "" {
				e.byTarget[h.SwapTarget] = h.Name
			}
		}
	}
}

// abortPoll is how often the journal's abort flag is read.
const abortPoll = 250 * time.Millisecond

func (e *Engine) watchAbort(stop context.Context, stopRun context.CancelCauseFunc) {
	if e.Journal == nil {
		return
	}
	tick := time.NewTicker(abortPoll)
	defer tick.Stop()
	for {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
			if yes, err := e.Journal.AbortRequested(stop); err == nil && yes {
				e.emit(Event{Type: EvInfo, Message: "abort requested; stopping at the next safe point"})
				stopRun(ErrAborted)
				return
			}
		}
	}
}

func (e *Engine) emit(ev Event) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	if e.OnEvent != nil {
		e.OnEvent(ev)
	}
	if e.Journal == nil {
		return
	}
	e.evMu.RLock()
	if e.evq != nil {
		e.evq <- ev
		e.evMu.RUnlock()
		return
	}
	e.evMu.RUnlock()
	_ = e.Journal.Event(context.Background(), ev)
}

func (e *Engine) touch(h string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.touched[h] {
		e.touched[h] = true
		e.order = append(e.order, h)
	}
}

func (e *Engine) changed() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.order...)
}

// errSiblingFailed stops the other jobs of a stage when one fails: they
// stop at their next safe point, so the rollback starts at once instead of
// after their waits run out.
var errSiblingFailed = fmt.Errorf("%w: another job of the stage failed", ErrAborted)

// runStage runs the stage's jobs in parallel and fails if any job failed.
// The first failure stops the others.
func (e *Engine) runStage(stop context.Context, st pipeline.Stage, skip map[TaskKey]bool) error {
	jobs, stopJobs := context.WithCancelCause(stop)
	defer stopJobs(nil)
	errs := make([]error, len(st.Jobs))
	var wg sync.WaitGroup
	for i, j := range st.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.runJob(jobs, st.Name, j, skip)
			if errs[i] != nil {
				stopJobs(errSiblingFailed)
			}
		}()
	}
	wg.Wait()
	// The job that failed first is the cause; siblings it stopped only
	// report that they were stopped.
	var stopped error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ErrAborted):
			if stopped == nil {
				stopped = err
			}
		default:
			// The task's label names the step and the host; the journal
			// has the stage and job.
			return err
		}
	}
	if stopped != nil && stop.Err() != nil {
		return fmt.Errorf("%w", context.Cause(stop))
	}
	return stopped
}

// runJob runs tasks in order; run_if decides which run after a failure.
func (e *Engine) runJob(stop context.Context, stage string, j pipeline.Job, skip map[TaskKey]bool) error {
	var failed error
	for i, t := range j.Tasks {
		k := TaskKey{Stage: stage, Job: j.Name, Index: i}
		runIf := t.RunIf
		if runIf == "" {
			runIf = config.RunIfPassed
		}
		run := runIf == config.RunIfAny || (runIf == config.RunIfPassed) == (failed == nil)
		if skip[k] {
			// Done by an earlier attempt of this run: the host is changed all
			// the same, and a rollback must include it.
			if t.Kind == pipeline.KindDetach || t.Kind == pipeline.KindDeploy || t.Kind == pipeline.KindAttach {
				e.touch(t.Host)
			}
			continue
		}
		if !run || (stop.Err() != nil && failed == nil) {
			if stop.Err() != nil && failed == nil {
				failed = ErrAborted
			}
			e.finish(k, TaskSkipped, nil)
			continue
		}
		if e.Journal != nil {
			if err := e.Journal.TaskStarted(context.Background(), k, t); err != nil {
				// Acting without a journal entry would make the run
				// impossible to resume or roll back from the journal.
				return fmt.Errorf("journal %s before acting: %w", t.Label(), err)
			}
		}
		e.emit(Event{Host: t.Host, Type: EvTask, Message: "start " + t.Label()})
		err := e.runTask(stop, k, t)
		switch {
		case err == nil:
			e.finish(k, TaskPassed, nil)
		case errors.Is(err, ErrAborted) || stop.Err() != nil && errors.Is(err, context.Canceled):
			e.finish(k, TaskCancelled, err)
			if t.OnCancel != nil && e.takenOver(stop) == nil {
				e.emit(Event{Host: t.Host, Type: EvInfo, Message: "on_cancel of " + t.Label() + ": " + t.OnCancel.Label()})
				if cerr := e.runTask(context.Background(), k, *t.OnCancel); cerr != nil {
					e.emit(Event{Host: t.Host, Type: EvFailed, Message: "on_cancel failed: " + cerr.Error()})
				}
			}
			if failed == nil {
				failed = ErrAborted
			}
		default:
			e.finish(k, TaskFailed, err)
			e.emit(Event{Host: t.Host, Type: EvFailed, Message: t.Label() + ": " + err.Error()})
			if failed == nil {
				failed = fmt.Errorf("%s: %w", t.Label(), err)
			}
		}
	}
	return failed
}

func (e *Engine) finish(k TaskKey, st TaskStatus, err error) {
	if e.Journal != nil {
		_ = e.Journal.TaskFinished(context.Background(), k, st, err)
	}
}

// hostOf resolves a task's host.
func (e *Engine) hostOf(name string) (Host, error) {
	h, ok := e.Hosts[name]
	if !ok {
		return Host{}, fmt.Errorf("unknown host %q", name)
	}
	return h, nil
}

// targetState reads one target from the load balancer; a target the
// balancer does not list is reported as unused.
func (e *Engine) targetState(ctx context.Context, addr string) (lb.Target, error) {
	ts, err := e.LB.Targets(ctx)
	if err != nil {
		return lb.Target{}, fmt.Errorf("read load balancer targets: %w", err)
	}
	for _, t := range ts {
		if t.Address == addr {
			return t, nil
		}
	}
	return lb.Target{Address: addr, State: lb.StateUnused}, nil
}

// describeLeftovers says, for each changed host, what state it is left in.
func (e *Engine) describeLeftovers(hosts []string, why string) map[string]string {
	out := map[string]string{}
	for _, h := range hosts {
		out[h] = why
	}
	return out
}

// Summary is one line per stranded host, sorted, for people.
func (r Result) Summary() string {
	if len(r.Stranded) == 0 {
		return ""
	}
	names := make([]string, 0, len(r.Stranded))
	for h := range r.Stranded {
		names = append(names, h)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, h := range names {
		fmt.Fprintf(&b, "%s: %s\n", h, r.Stranded[h])
	}
	return b.String()
}
