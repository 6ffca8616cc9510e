package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/script"
)

// Bounds of steps that have no timeout of their own in the pipeline.
const (
	defaultLBCallTimeout  = 30 * time.Second
	defaultUploadTimeout  = 10 * time.Minute
	defaultActivateBound  = 10 * time.Minute
	defaultDrainTimeout   = config.DefaultDrainTimeout
	defaultHealthyTimeout = config.DefaultRolloutHealthTimeout
)

// runTask does one task. stop ends waits early (a safe point); calls that
// change the load balancer run to completion under their own bound, and an
// activation the run stops waiting for completes (or is undone) on the
// host itself, so an abort never leaves one half-done.
func (e *Engine) runTask(stop context.Context, k TaskKey, t pipeline.Task) error {
	switch t.Kind {
	case pipeline.KindUpload:
		return e.upload(stop, t)
	case pipeline.KindDetach:
		return e.detach(t)
	case pipeline.KindWaitDrained:
		return e.waitDrained(stop, t)
	case pipeline.KindDeploy:
		return e.deploy(stop, t)
	case pipeline.KindAttach:
		return e.attach(t)
	case pipeline.KindWaitHealthy:
		return e.waitHealthy(stop, t)
	case pipeline.KindSleep:
		return sleep(stop, t.Sleep)
	case pipeline.KindExec:
		return e.exec(stop, t)
	case pipeline.KindSmoke:
		return smoke(stop, t)
	case pipeline.KindApprove:
		return e.approve(stop, k.Stage, t)
	case pipeline.KindPause:
		return e.pause(stop, k, t)
	case pipeline.KindSwitch:
		return e.switchLive(t)
	case pipeline.KindRetire:
		return e.retire(t)
	case pipeline.KindWeights:
		return e.setWeights(t)
	case pipeline.KindAnalyze:
		return e.analyze(stop, t)
	case pipeline.KindPreviewLoad:
		return previewLoad(stop, t)
	}
	return fmt.Errorf("unknown task kind %q", t.Kind)
}

func bound(t pipeline.Task, def time.Duration) time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return def
}

func (e *Engine) upload(stop context.Context, t pipeline.Task) error {
	h, err := e.hostOf(t.Host)
	if err != nil {
		return err
	}
	select {
	case e.uploadSem <- struct{}{}:
	case <-stop.Done():
		return ErrAborted
	}
	defer func() { <-e.uploadSem }()
	if stop.Err() != nil {
		return ErrAborted
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound(t, defaultUploadTimeout))
	defer cancel()
	start := time.Now()
	if err := h.Deployer.Upload(ctx, e.Release); err != nil {
		return fmt.Errorf("upload %s to %s: %w", e.Release.Version, h.Name, err)
	}
	e.emit(Event{Host: h.Name, Type: EvInfo, Message: fmt.Sprintf("uploaded %s in %s", e.Release.Version, time.Since(start).Round(time.Millisecond))})
	return nil
}

// detach takes a host out of the load balancer after checking, against the
// balancer's real state, that enough others stay healthy.
func (e *Engine) detach(t pipeline.Task) error {
	h, err := e.hostFor(t)
	if err != nil {
		return err
	}
	e.detachMu.Lock()
	defer e.detachMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), bound(t, defaultLBCallTimeout))
	defer cancel()
	targets, err := e.LB.Targets(ctx)
	if err != nil {
		return fmt.Errorf("detach %s (%s): read load balancer targets: %w", h.Name, h.Target, err)
	}
	healthy := 0
	self := lb.Target{Address: h.Target, State: lb.StateUnused}
	for _, tg := range targets {
		if tg.Address == h.Target {
			self = tg
			continue
		}
		if tg.State == lb.StateHealthy {
			healthy++
		}
	}
	if self.State == lb.StateDraining || self.State == lb.StateUnused {
		e.touch(h.Name)
		return nil // already out: detach is idempotent for resume
	}
	// Taking out a target that serves nothing (a first deploy, a broken
	// host) costs no healthy capacity, so only a healthy one is checked.
	if self.State == lb.StateHealthy && healthy < e.MinHealthy {
		var names []string
		for _, tg := range targets {
			if tg.Address != h.Target && tg.State == lb.StateHealthy {
				names = append(names, e.nameOf(tg.Address))
			}
		}
		return fmt.Errorf("detach %s (%s) refused: it would leave %d healthy target(s) (%s), min_healthy is %d",
			h.Name, h.Target, healthy, strings.Join(names, ", "), e.MinHealthy)
	}
	return e.detachNow(ctx, h, "detaching "+h.Target)
}

// detachNow takes h out of the load balancer without a capacity check; the
// detach task checks min_healthy first, a suspect serving a bad version is
// taken out regardless.
func (e *Engine) detachNow(ctx context.Context, h Host, msg string) error {
	e.emit(Event{Host: h.Name, Type: EvDetaching, Message: msg})
	e.touch(h.Name)
	if err := e.LB.Detach(ctx, h.Target); err != nil {
		return fmt.Errorf("detach %s (%s): %w", h.Name, h.Target, err)
	}
	return nil
}

func (e *Engine) nameOf(addr string) string {
	if name, ok := e.byTarget[addr]; ok {
		return name
	}
	return addr
}

// DrainMargin is how much longer than the balancer's draining bound the
// engine waits for a drain: the balancer cuts at its bound, then reports.
const DrainMargin = 5 * time.Second

// lbBound is one of the balancer's own bounds, read once per run; a read
// that failed is tried again at the next wait, a rollback's included.
type lbBound struct {
	mu   sync.Mutex
	read bool
	d    time.Duration
}

// get returns the bound read by read, reading it at most once
// successfully; what says which bound, for the event of a failed read.
func (b *lbBound) get(e *Engine, what string, read func(context.Context) (time.Duration, error)) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read {
		return b.d
	}
	// Its own deadline, not the run's: a rollback after an abort needs it too.
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	d, err := read(ctx)
	if err != nil {
		e.emit(Event{Type: EvInfo, Message: "could not read the load balancer's " + what + ": " + err.Error()})
		return 0
	}
	b.read, b.d = true, d
	return d
}

// waitBeyond is wait, or the balancer's bound plus margin when that is
// longer: giving up a moment before the balancer would act rolls back a
// step that was about to end. The first time it lengthens a wait it says
// so.
func (e *Engine) waitBeyond(wait time.Duration, b *lbBound, what, key string, margin time.Duration, read func(context.Context) (time.Duration, error)) time.Duration {
	d := b.get(e, what, read)
	w := Beyond(wait, d, margin)
	if w != wait {
		e.noteOnce(what, fmt.Sprintf("%s %s is not above the load balancer's %s %s: waited for up to %s", key, wait, what, d, w))
	}
	return w
}

// Beyond is how long the engine waits for a step the config bounds by
// wait when the balancer's own bound for it is lb (0: none known): wait,
// or lb plus margin when that is longer. check and plan show the same.
func Beyond(wait, lb, margin time.Duration) time.Duration {
	if lb > 0 && wait < lb+margin {
		return lb + margin
	}
	return wait
}

// noteOnce emits an info event the first time key is seen in a run.
func (e *Engine) noteOnce(key, msg string) {
	e.notedMu.Lock()
	seen := e.noted[key]
	if e.noted == nil {
		e.noted = map[string]bool{}
	}
	e.noted[key] = true
	e.notedMu.Unlock()
	if !seen {
		e.emit(Event{Type: EvInfo, Message: msg})
	}
}

// drainWait is how long to wait for a drain: the task's drain_timeout, or
// longer when that is not above the balancer's own draining bound.
func (e *Engine) drainWait(t pipeline.Task) time.Duration {
	wait := bound(t, defaultDrainTimeout)
	db, ok := e.LB.(lb.DrainBounder)
	if !ok {
		return wait
	}
	return e.waitBeyond(wait, &e.drainBound, "draining bound", "drain_timeout", DrainMargin, db.DrainBound)
}

// HealthMargin is how much longer than the balancer's health bound the
// engine waits for a target to be reported healthy.
const HealthMargin = 5 * time.Second

// healthWait is how long to wait for health: the task's bound, or longer
// when the balancer's checks take longer by its own settings.
func (e *Engine) healthWait(t pipeline.Task) time.Duration {
	wait := bound(t, defaultHealthyTimeout)
	hb, ok := e.LB.(lb.HealthBounder)
	if !ok {
		return wait
	}
	return e.waitBeyond(wait, &e.healthBound, "health check bound", "health_timeout", HealthMargin, hb.HealthBound)
}

func (e *Engine) waitDrained(stop context.Context, t pipeline.Task) error {
	h, err := e.hostFor(t)
	if err != nil {
		return err
	}
	lastInFlight := -1
	var cutBefore int64 = -1
	wait := e.drainWait(t)
	return waitFor(stop, wait, fmt.Sprintf("%s (%s) to drain", h.Name, h.Target), "unused",
		func(ctx context.Context) (bool, string, error) {
			tg, err := e.targetState(ctx, h.Target)
			if err != nil {
				return false, "", err
			}
			if cutBefore < 0 {
				cutBefore = tg.Cut
			}
			if tg.State == lb.StateUnused {
				msg := "drained"
				if n := tg.Cut - cutBefore; n > 0 {
					msg = fmt.Sprintf("drained by the load balancer's cut: %d requests were still in flight when its draining bound ran out", n)
				}
				if f, ok := e.LB.(lb.DrainFinisher); ok {
					if err := f.FinishDrain(ctx, h.Target); err != nil {
						return false, "", fmt.Errorf("drained, but not taken out for good: %w", err)
					}
				}
				e.emit(Event{Host: h.Name, Type: EvDrained, Message: msg})
				return true, "", nil
			}
			// A balancer that counts no requests (AWS, nginx) says why it
			// is still draining instead.
			counted := tg.InFlight > 0 || tg.Reason == ""
			if tg.InFlight != lastInFlight {
				lastInFlight = tg.InFlight
				msg := fmt.Sprintf("draining, %d in flight", tg.InFlight)
				if !counted {
					msg = "draining: " + tg.Reason
				}
				e.emit(Event{Host: h.Name, Type: EvDraining, Message: msg, InFlight: tg.InFlight})
			}
			obs := string(tg.State)
			if tg.State == lb.StateDraining && counted {
				obs = fmt.Sprintf("draining with %d requests still in flight", tg.InFlight)
			} else if tg.State == lb.StateDraining {
				obs = "draining (" + tg.Reason + ")"
			} else if tg.State == lb.StateHealthy || tg.State == lb.StateInitial {
				obs = string(tg.State) + " (still attached: was it re-attached by someone else?)"
			}
			return false, obs, nil
		})
}

// progressEvery is how often an unchanged step of a host's activation is
// reported again.
const progressEvery = 5 * time.Second

// progress returns the host's progress reporter: a new step at once, the
// same step again every progressEvery.
func (e *Engine) progress(hostName string) func(string) {
	var mu sync.Mutex
	var lastStep string
	var lastAt time.Time
	return func(msg string) {
		step, _, _ := strings.Cut(msg, " for ")
		mu.Lock()
		due := step != lastStep || time.Since(lastAt) >= progressEvery
		if due {
			lastStep, lastAt = step, time.Now()
		}
		mu.Unlock()
		if due {
			e.emit(Event{Host: hostName, Type: EvProgress, Message: msg})
		}
	}
}

// reporting returns ctx with the host's progress and output reporters: a
// long call on it shows how it is getting on, and what a script printed
// goes to the journal.
func (e *Engine) reporting(ctx context.Context, hostName string) context.Context {
	ctx = host.WithProgress(ctx, e.progress(hostName))
	return host.WithOutput(ctx, func(msg string) {
		e.emit(Event{Host: hostName, Type: EvInfo, Message: msg})
	})
}

// activateMargin is how much longer than a deployer's own bound the engine
// waits for one of its activations: the bound counts from the script's
// start, after the upload.
const activateMargin = 30 * time.Second

// activateBound is how long to wait for h's activation or rollback: wait,
// or longer when its deployer bounds its own calls beyond it.
func activateBound(h Host, wait time.Duration) time.Duration {
	if b, ok := h.Deployer.(host.Bounder); ok {
		return max(wait, b.Bound()+activateMargin)
	}
	return wait
}

func (e *Engine) deploy(stop context.Context, t pipeline.Task) error {
	h, err := e.hostOf(t.Host)
	if err != nil {
		return err
	}
	e.touch(h.Name)
	e.emit(Event{Host: h.Name, Type: EvDeploying, Message: "deploying " + e.Release.Version})
	// An abort ends the wait at once: the agent finishes or puts the old
	// release back on its own, and the rollback waits for it.
	ctx, cancel := context.WithTimeout(stop, activateBound(h, bound(t, defaultActivateBound)))
	defer cancel()
	ctx = e.reporting(ctx, h.Name)
	if err := h.Deployer.Upload(ctx, e.Release); err != nil {
		return fmt.Errorf("upload %s to %s: %w", e.Release.Version, h.Name, err)
	}
	activate := func(ctx context.Context) error { return h.Deployer.Activate(ctx, e.Release.Version) }
	done := "activated " + e.Release.Version
	if t.Slot == pipeline.SlotIdle {
		sw, err := swapperOf(h)
		if err != nil {
			return err
		}
		activate = func(ctx context.Context) error { return sw.ActivateSwap(ctx, e.Release.Version) }
		done += " in the idle slot, beside the running release"
	}
	err = activate(ctx)
	if errors.Is(err, host.ErrBusy) {
		// An activation is still going on on the host: in a resumed run,
		// the one this task started before its executor died. Once it has
		// ended, activating again finds the version running (and changes
		// nothing) or starts it.
		st, serr := h.Deployer.Status(ctx)
		if serr != nil {
			return fmt.Errorf("%w (and its status could not be read: %v)", err, serr)
		}
		if _, err = e.waitActivation(ctx, h, st); err == nil {
			err = activate(ctx)
		}
	}
	if err != nil {
		return err
	}
	e.emit(Event{Host: h.Name, Type: EvActivated, Message: done})
	return nil
}

func (e *Engine) attach(t pipeline.Task) error {
	h, err := e.hostFor(t)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound(t, defaultLBCallTimeout))
	defer cancel()
	e.emit(Event{Host: h.Name, Type: EvAttaching, Message: "attaching " + h.Target})
	if err := e.LB.Attach(ctx, h.Target); err != nil {
		return fmt.Errorf("attach %s (%s): %w", h.Name, h.Target, err)
	}
	return nil
}

func (e *Engine) waitHealthy(stop context.Context, t pipeline.Task) error {
	h, err := e.hostFor(t)
	if err != nil {
		return err
	}
	e.emit(Event{Host: h.Name, Type: EvChecking, Message: "waiting for the load balancer to report it healthy"})
	err = waitFor(stop, e.healthWait(t), fmt.Sprintf("%s (%s) to be healthy", h.Name, h.Target), "healthy",
		e.isHealthy(h.Target))
	if err == nil {
		e.emit(Event{Host: h.Name, Type: EvHealthy, Message: "healthy"})
		e.canaryServing(h.Name)
	}
	return err
}

// isHealthy checks that the balancer reports addr healthy; what it observes
// otherwise carries the balancer's reason, such as a failed health check.
func (e *Engine) isHealthy(addr string) check {
	return func(ctx context.Context) (bool, string, error) {
		tg, err := e.targetState(ctx, addr)
		if err != nil {
			return false, "", err
		}
		obs := string(tg.State)
		if tg.Reason != "" {
			obs += " (" + tg.Reason + ")"
		}
		return tg.State == lb.StateHealthy, obs, nil
	}
}

func sleep(stop context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-stop.Done():
		return ErrAborted
	case <-timer.C:
		return nil
	}
}

func (e *Engine) exec(stop context.Context, t pipeline.Task) error {
	if t.Exec == nil || len(t.Exec.Command) == 0 {
		return errors.New("exec: no command")
	}
	env := []string{"ZERODOWN_VERSION=" + e.Release.Version}
	for k, v := range t.Exec.Env {
		env = append(env, k+"="+v)
	}
	res, err := script.Run(stop, script.Command{Argv: t.Exec.Command, Dir: t.Exec.Dir, Env: env, Timeout: bound(t, config.DefaultExecTimeout)})
	if stop.Err() != nil {
		return ErrAborted
	}
	if output := strings.TrimSpace(res.Output); output != "" {
		e.emit(Event{Type: EvInfo, Message: fmt.Sprintf("exec %s output:\n%s", t.Exec.Command[0], output)})
	}
	if err != nil {
		return fmt.Errorf("exec %s: %w", strings.Join(t.Exec.Command, " "), err)
	}
	return nil
}

func smoke(stop context.Context, t pipeline.Task) error {
	if t.Smoke == nil {
		return errors.New("smoke: no url")
	}
	ctx, cancel := context.WithTimeout(stop, bound(t, config.DefaultSmokeTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Smoke.URL, nil)
	if err != nil {
		return fmt.Errorf("smoke %s: %w", t.Smoke.URL, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if stop.Err() != nil {
			return ErrAborted
		}
		return fmt.Errorf("smoke %s: %w", t.Smoke.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("smoke %s: reading the body: %w", t.Smoke.URL, err)
	}
	want := t.Smoke.Status
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return fmt.Errorf("smoke %s: status %d, want %d", t.Smoke.URL, resp.StatusCode, want)
	}
	if t.Smoke.Body != "" && !bytes.Contains(body, []byte(t.Smoke.Body)) {
		return fmt.Errorf("smoke %s: body does not contain %q", t.Smoke.URL, t.Smoke.Body)
	}
	return nil
}

// ResumeKey is how the journal records `zerodown resume RUN` of the pause
// task k: as an approval under a key no stage name can take, one per task,
// so a resume ends that pause and no other.
func ResumeKey(k TaskKey) string { return fmt.Sprintf("resume:%s/%s/%d", k.Stage, k.Job, k.Index) }

// pause holds the run for the task's time, or until `zerodown resume RUN`;
// an untimed pause waits at most the approval timeout.
func (e *Engine) pause(stop context.Context, k TaskKey, t pipeline.Task) error {
	stage := k.Stage
	p := t.Pause
	if p == nil {
		p = &config.PauseTask{}
	}
	d := time.Duration(p.For)
	if e.Journal == nil {
		if d > 0 {
			return sleep(stop, d)
		}
		return errors.New("pause: this run has no journal to be resumed through")
	}
	msg := "paused until `zerodown resume` of the run"
	wait := bound(t, config.DefaultApproveTimeout)
	if d > 0 {
		msg, wait = fmt.Sprintf("paused for %s (`zerodown resume` of the run goes on at once)", d), d
	}
	if p.Message != "" {
		msg += ": " + p.Message
	}
	e.emit(Event{Type: EvPaused, Message: msg, Stage: stage})
	err := waitFor(stop, wait, "resume of stage "+stage, "resumed",
		func(ctx context.Context) (bool, string, error) {
			by, ok, err := e.Journal.Approved(ctx, ResumeKey(k))
			if ok {
				e.emit(Event{Type: EvInfo, Message: "stage " + stage + " resumed by " + by})
			}
			return ok, "paused", err
		})
	var we *WaitError
	if d > 0 && errors.As(err, &we) {
		return nil // the pause's time is up: on we go
	}
	return err
}

func (e *Engine) approve(stop context.Context, stage string, t pipeline.Task) error {
	if e.Journal == nil {
		return errors.New("approve: this run has no journal to record approvals in")
	}
	msg := "waiting for approval of stage " + stage
	if t.Approve != nil && t.Approve.Message != "" {
		msg += ": " + t.Approve.Message
	}
	e.emit(Event{Type: EvApproval, Message: msg, Stage: stage})
	return waitFor(stop, bound(t, config.DefaultApproveTimeout), "approval of stage "+stage, "approved",
		func(ctx context.Context) (bool, string, error) {
			by, ok, err := e.Journal.Approved(ctx, stage)
			if ok {
				e.emit(Event{Type: EvInfo, Message: "stage " + stage + " approved by " + by})
			}
			return ok, "not approved", err
		})
}
