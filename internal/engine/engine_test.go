package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/engine/enginetest"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/proctest"
)

type fleet struct {
	lb      *enginetest.LB
	hosts   map[string]*enginetest.Host
	journal *enginetest.Journal
	env     *config.Environment
	eng     *engine.Engine
}

// newFleet is n hosts on v1 behind an in-memory balancer with short,
// realistic delays.
func newFleet(t *testing.T, n int, minHealthy int) *fleet {
	t.Helper()
	f := &fleet{hosts: map[string]*enginetest.Host{}, journal: enginetest.NewJournal()}
	f.env = &config.Environment{Name: "staging", Strategy: config.Strategy{Rolling: &config.Rolling{
		DrainTimeout: config.Duration(2 * time.Second), HealthTimeout: config.Duration(2 * time.Second),
	}}}
	var addrs []string
	hosts := map[string]engine.Host{}
	for i := 1; i <= n; i++ {
		name, addr := fmt.Sprintf("staging-%d", i), fmt.Sprintf("127.0.0.1:81%02d", i)
		addrs = append(addrs, addr)
		f.env.Hosts = append(f.env.Hosts, config.Host{Name: name, Target: addr})
		f.hosts[name] = enginetest.NewHost("v1")
		hosts[name] = engine.Host{Name: name, Target: addr, Deployer: f.hosts[name]}
	}
	f.lb = enginetest.NewLB(addrs...)
	f.lb.DrainDelay, f.lb.HealthDelay, f.lb.InFlight = 30*time.Millisecond, 30*time.Millisecond, 3
	f.eng = &engine.Engine{
		LB: f.lb, Hosts: hosts, Journal: f.journal, MinHealthy: minHealthy,
		Release:       host.Release{Version: "v2"},
		Rollback:      config.RollbackAuto,
		HealthTimeout: 2 * time.Second,
	}
	return f
}

func (f *fleet) rolling(t *testing.T) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Rolling(f.env, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fleet) allOn(t *testing.T, version string) {
	t.Helper()
	for name, h := range f.hosts {
		if v := h.Version(); v != version {
			t.Errorf("%s runs %s, want %s", name, v, version)
		}
	}
	for _, h := range f.env.Hosts {
		if st := f.lb.State(h.Target); st != lb.StateHealthy {
			t.Errorf("%s is %s in the load balancer, want healthy", h.Name, st)
		}
	}
}

func TestRollingSucceeds(t *testing.T) {
	f := newFleet(t, 3, 1)
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusSucceeded || res.Err != nil {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
	f.allOn(t, "v2")
	// One host at a time: each detach comes after the previous attach.
	want := []string{
		"detach 127.0.0.1:8101", "attach 127.0.0.1:8101",
		"detach 127.0.0.1:8102", "attach 127.0.0.1:8102",
		"detach 127.0.0.1:8103", "attach 127.0.0.1:8103",
	}
	if got := strings.Join(f.lb.Calls, ","); got != strings.Join(want, ",") {
		t.Fatalf("balancer calls %s", got)
	}
	// The artifact went to every host before the first detach.
	for name, h := range f.hosts {
		if h.Uploads < 1 {
			t.Errorf("%s got no upload", name)
		}
	}
	if !f.journal.HasEvent("staging-2", engine.EvDraining) || !f.journal.HasEvent("staging-2", engine.EvDrained) {
		t.Errorf("no draining events: %v", f.journal.EventTypes())
	}
	for k, st := range f.journal.Finished {
		if st != engine.TaskPassed {
			t.Errorf("task %s ended %s", k, st)
		}
	}
}

func TestMinHealthyRefusesBatch(t *testing.T) {
	f := newFleet(t, 2, 2)
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusFailed {
		t.Fatalf("status %s, want failed (nothing changed)", res.Status)
	}
	want := "detach staging-1 (127.0.0.1:8101) refused: it would leave 1 healthy target(s) (staging-2), min_healthy is 2"
	if res.Err == nil || !strings.Contains(res.Err.Error(), want) {
		t.Fatalf("error %v, want it to contain %q", res.Err, want)
	}
	if len(f.lb.Calls) != 0 {
		t.Fatalf("balancer was changed: %v", f.lb.Calls)
	}
	f.allOn(t, "v1")
}

// TestFailureRollsBackEveryChangedHost: v2 fails on the second host; the
// first, already on v2, goes back to v1 and both end attached and healthy.
func TestFailureRollsBackEveryChangedHost(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.hosts["staging-2"].Bad["v2"] = true
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, err %v, stranded %v", res.Status, res.Err, res.Stranded)
	}
	if !errors.Is(res.Err, enginetest.ErrUnhealthy) {
		t.Fatalf("error %v does not say why", res.Err)
	}
	if got := strings.Join(res.Changed, ","); got != "staging-1,staging-2" {
		t.Fatalf("changed %s", got)
	}
	f.allOn(t, "v1")
	if !f.journal.HasEvent("staging-1", engine.EvRolledBack) || !f.journal.HasEvent("staging-2", engine.EvRolledBack) {
		t.Fatalf("rollback events missing: %v", f.journal.EventTypes())
	}
	if f.hosts["staging-3"].Version() != "v1" || strings.Contains(strings.Join(f.lb.Calls, ","), "detach 127.0.0.1:8103") {
		t.Fatal("staging-3 was touched after the failure")
	}
}

func TestDrainTimeoutSaysWhatItSaw(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.lb.DrainDelay = time.Hour
	f.env.Strategy.Rolling.DrainTimeout = config.Duration(300 * time.Millisecond)
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
	var we *engine.WaitError
	if !errors.As(res.Err, &we) {
		t.Fatalf("error %v is not a wait error", res.Err)
	}
	for _, want := range []string{"staging-1 (127.0.0.1:8101) to drain", "expected unused", "draining with 3 requests still in flight"} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("error %q lacks %q", res.Err, want)
		}
	}
	f.allOn(t, "v1")
}

func TestAbortStopsAndRollsBack(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.lb.DrainDelay = time.Hour
	f.env.Strategy.Rolling.DrainTimeout = config.Duration(time.Minute)
	done := make(chan engine.Result, 1)
	go func() { done <- f.eng.Run(context.Background(), f.rolling(t), nil) }()
	deadline := time.After(5 * time.Second)
	for !f.journal.HasEvent("staging-1", engine.EvDraining) {
		select {
		case <-deadline:
			t.Fatal("run never started draining")
		case <-time.After(5 * time.Millisecond):
		}
	}
	f.journal.Abort()
	var res engine.Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("abort did not stop the run")
	}
	if !res.Aborted || res.Status != engine.StatusRolledBack {
		t.Fatalf("aborted %v status %s err %v", res.Aborted, res.Status, res.Err)
	}
	f.allOn(t, "v1")
}

// TestTakenOverStopsWithoutRollingBack stops a run because another
// executor took it over, after a host was changed: the run stops at once
// and leaves that host as it is, since the new executor carries the run
// on from there.
func TestTakenOverStopsWithoutRollingBack(t *testing.T) {
	f := newFleet(t, 2, 1)
	ctx, lost := context.WithCancelCause(context.Background())
	defer lost(nil)
	f.eng.OnEvent = func(e engine.Event) {
		if e.Host == "staging-1" && e.Type == engine.EvHealthy {
			lost(fmt.Errorf("%w: the test's other executor", engine.ErrTakenOver))
		}
	}
	res := f.eng.Run(ctx, f.rolling(t), nil)
	if res.Status != engine.StatusTakenOver || !errors.Is(res.Err, engine.ErrTakenOver) || !res.Aborted {
		t.Fatalf("status %s aborted %v err %v", res.Status, res.Aborted, res.Err)
	}
	if v := f.hosts["staging-1"].Version(); v != "v2" {
		t.Errorf("staging-1 runs %s: the run undid it, though it is the new executor's", v)
	}
	if v := f.hosts["staging-2"].Version(); v != "v1" {
		t.Errorf("staging-2 runs %s: the run went on after it was taken over", v)
	}
	for _, typ := range f.journal.EventTypes() {
		if strings.HasSuffix(typ, ":"+engine.EvRollback) {
			t.Fatalf("the run rolled back: %v", f.journal.EventTypes())
		}
	}
}

// TestFenceStopsTheRollback fails a run on its second host while its
// fence says another executor has the run (this one was paused past its
// lease and has not heard yet): the run rolls nothing back.
func TestFenceStopsTheRollback(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.hosts["staging-2"].Bad["v2"] = true
	fenced := false
	f.eng.Fence = func(context.Context) error {
		if !fenced {
			return nil
		}
		return fmt.Errorf("%w: the test's other executor", engine.ErrTakenOver)
	}
	f.eng.OnEvent = func(e engine.Event) {
		if e.Host == "staging-2" && e.Type == engine.EvDeploying {
			fenced = true
		}
	}
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusTakenOver || !errors.Is(res.Err, engine.ErrTakenOver) {
		t.Fatalf("status %s err %v, want taken over", res.Status, res.Err)
	}
	if v := f.hosts["staging-1"].Version(); v != "v2" {
		t.Errorf("staging-1 runs %s: the fenced run rolled it back", v)
	}
	for _, typ := range f.journal.EventTypes() {
		if strings.HasSuffix(typ, ":"+engine.EvRollback) {
			t.Fatalf("the fenced run rolled back: %v", f.journal.EventTypes())
		}
	}
}

func TestManualRollbackLeavesItToAPerson(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.hosts["staging-1"].Bad["v2"] = true
	f.eng.Rollback = config.RollbackManual
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusNeedsAttention || !strings.Contains(res.Summary(), "staging-1: rollback: manual") {
		t.Fatalf("status %s, summary %q", res.Status, res.Summary())
	}
	if st := f.lb.State("127.0.0.1:8101"); st != lb.StateUnused {
		t.Fatalf("staging-1 is %s; manual rollback should not attach it", st)
	}
}

// TestRunIfAndOnCancel checks GoCD's semantics: a run_if: failed task runs
// only after a failure, on_cancel runs when a task is cancelled.
func TestRunIfAndOnCancel(t *testing.T) {
	f := newFleet(t, 1, 0)
	p := &pipeline.Pipeline{Name: "p", Environment: "staging", Stages: []pipeline.Stage{{Name: "s", Jobs: []pipeline.Job{{Name: "j", Tasks: []pipeline.Task{
		{Kind: pipeline.KindExec, Exec: &config.ExecTask{Command: []string{"false"}}},
		{Kind: pipeline.KindExec, Exec: &config.ExecTask{Command: []string{"true"}}},
		{Kind: pipeline.KindSleep, Sleep: time.Millisecond, RunIf: config.RunIfFailed},
		{Kind: pipeline.KindSleep, Sleep: time.Millisecond, RunIf: config.RunIfAny},
	}}}}}}
	res := f.eng.Run(context.Background(), p, nil)
	if res.Status != engine.StatusFailed {
		t.Fatalf("status %s", res.Status)
	}
	want := map[string]engine.TaskStatus{"s/j/0": engine.TaskFailed, "s/j/1": engine.TaskSkipped, "s/j/2": engine.TaskPassed, "s/j/3": engine.TaskPassed}
	for k, st := range want {
		if f.journal.Finished[k] != st {
			t.Errorf("task %s ended %s, want %s", k, f.journal.Finished[k], st)
		}
	}

	f = newFleet(t, 1, 0)
	marker := t.TempDir() + "/cancelled"
	p = &pipeline.Pipeline{Name: "p", Environment: "staging", Stages: []pipeline.Stage{{Name: "s", Jobs: []pipeline.Job{{Name: "j", Tasks: []pipeline.Task{
		{Kind: pipeline.KindSleep, Sleep: time.Hour, OnCancel: &pipeline.Task{Kind: pipeline.KindExec, Exec: &config.ExecTask{Command: []string{"touch", marker}}}},
	}}}}}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the sleep task has started (its start event is out).
		deadline := time.Now().Add(5 * time.Second)
		for len(f.journal.EventTypes()) < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	res = f.eng.Run(ctx, p, nil)
	if !res.Aborted || f.journal.Finished["s/j/0"] != engine.TaskCancelled {
		t.Fatalf("aborted %v, task %s", res.Aborted, f.journal.Finished["s/j/0"])
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("on_cancel did not run: %v", err)
	}
}

// TestResumeSkipsPassedTasks: tasks that passed in an earlier attempt are
// not run again.
func TestResumeSkipsPassedTasks(t *testing.T) {
	f := newFleet(t, 2, 1)
	p := f.rolling(t)
	skip := map[engine.TaskKey]bool{}
	for i := range p.Stages[1].Jobs[0].Tasks {
		skip[engine.TaskKey{Stage: p.Stages[1].Name, Job: p.Stages[1].Jobs[0].Name, Index: i}] = true
	}
	// Pretend staging-1 was done before the crash.
	f.hosts["staging-1"].Activate(context.Background(), "v2")
	res := f.eng.Run(context.Background(), p, skip)
	if res.Status != engine.StatusSucceeded {
		t.Fatalf("status %s err %v", res.Status, res.Err)
	}
	if got := strings.Join(f.lb.Calls, ","); got != "detach 127.0.0.1:8102,attach 127.0.0.1:8102" {
		t.Fatalf("balancer calls %s", got)
	}
	f.allOn(t, "v2")
}

// TestResumeWaitsForTheDeadExecutorsActivation resumes a run whose
// executor died while a host was activating the release: the host still
// is, and refuses another activation as busy. The resumed deploy task
// waits for that activation to end and goes on; it is not a failure.
func TestResumeWaitsForTheDeadExecutorsActivation(t *testing.T) {
	f := newFleet(t, 2, 1)
	p := f.rolling(t)
	st := p.Stages[1]
	skip := map[engine.TaskKey]bool{}
	for i, task := range st.Jobs[0].Tasks {
		if task.Kind == pipeline.KindDeploy {
			break
		}
		skip[engine.TaskKey{Stage: st.Name, Job: st.Jobs[0].Name, Index: i}] = true
	}
	// Before the crash: the upload stage passed, staging-1 was detached and
	// its activation of v2 began.
	for i := range p.Stages[0].Jobs {
		skip[engine.TaskKey{Stage: p.Stages[0].Name, Job: p.Stages[0].Jobs[i].Name, Index: 0}] = true
	}
	if err := f.lb.Detach(context.Background(), "127.0.0.1:8101"); err != nil {
		t.Fatal(err)
	}
	f.hosts["staging-1"].BusyWith("v2", 300*time.Millisecond)
	res := f.eng.Run(context.Background(), p, skip)
	if res.Status != engine.StatusSucceeded {
		t.Fatalf("status %s err %v; events %v", res.Status, res.Err, f.journal.EventTypes())
	}
	if !f.journal.HasEvent("staging-1", engine.EvWaiting) {
		t.Errorf("no waiting event for staging-1's activation in progress: %v", f.journal.EventTypes())
	}
	f.allOn(t, "v2")
}

func TestApprove(t *testing.T) {
	f := newFleet(t, 1, 0)
	p := &pipeline.Pipeline{Name: "p", Environment: "staging", Stages: []pipeline.Stage{{Name: "gate", Jobs: []pipeline.Job{{Name: "j", Tasks: []pipeline.Task{
		{Kind: pipeline.KindApprove, Approve: &config.ApproveTask{Message: "ship it?"}},
	}}}}}}
	done := make(chan engine.Result, 1)
	go func() { done <- f.eng.Run(context.Background(), p, nil) }()
	deadline := time.After(5 * time.Second)
	for !f.journal.HasEvent("", engine.EvApproval) {
		select {
		case <-deadline:
			t.Fatal("never waited for approval")
		case <-time.After(5 * time.Millisecond):
		}
	}
	f.journal.Approve("gate")
	select {
	case res := <-done:
		if res.Status != engine.StatusSucceeded {
			t.Fatalf("status %s err %v", res.Status, res.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("approval did not let the run go on")
	}
}

// TestPause: an untimed pause holds the run until it is resumed; a timed
// one ends by itself, or earlier when resumed.
func TestPause(t *testing.T) {
	gate := func(p *config.PauseTask) *pipeline.Pipeline {
		return &pipeline.Pipeline{Name: "p", Environment: "staging", Stages: []pipeline.Stage{{Name: "gate", Jobs: []pipeline.Job{{Name: "j", Tasks: []pipeline.Task{
			{Kind: pipeline.KindPause, Pause: p},
		}}}}}}
	}
	run := func(f *fleet, p *pipeline.Pipeline) chan engine.Result {
		done := make(chan engine.Result, 1)
		go func() { done <- f.eng.Run(context.Background(), p, nil) }()
		return done
	}
	ended := func(t *testing.T, done chan engine.Result, within time.Duration, what string) {
		t.Helper()
		select {
		case res := <-done:
			if res.Status != engine.StatusSucceeded {
				t.Fatalf("%s: status %s err %v", what, res.Status, res.Err)
			}
		case <-time.After(within):
			t.Fatalf("%s: the run did not go on within %s", what, within)
		}
	}
	t.Run("until resumed", func(t *testing.T) {
		f := newFleet(t, 1, 0)
		done := run(f, gate(&config.PauseTask{Message: "check the dashboards"}))
		waitEvent(t, f, engine.EvPaused)
		select {
		case res := <-done:
			t.Fatalf("an untimed pause ended by itself: %+v", res)
		default:
		}
		f.journal.Approve(engine.ResumeKey(engine.TaskKey{Stage: "gate", Job: "j", Index: 0}))
		ended(t, done, 5*time.Second, "resumed")
	})
	t.Run("timed", func(t *testing.T) {
		f := newFleet(t, 1, 0)
		start := time.Now()
		done := run(f, gate(&config.PauseTask{For: config.Duration(200 * time.Millisecond)}))
		ended(t, done, 5*time.Second, "timed")
		if took := time.Since(start); took < 200*time.Millisecond {
			t.Fatalf("a 200ms pause ended after %s", took)
		}
	})
	t.Run("timed, resumed early", func(t *testing.T) {
		f := newFleet(t, 1, 0)
		done := run(f, gate(&config.PauseTask{For: config.Duration(time.Hour)}))
		waitEvent(t, f, engine.EvPaused)
		f.journal.Approve(engine.ResumeKey(engine.TaskKey{Stage: "gate", Job: "j", Index: 0}))
		ended(t, done, 5*time.Second, "resumed early")
	})
}

// waitEvent waits until the run journaled an event of type typ.
func waitEvent(t *testing.T, f *fleet, typ string) {
	t.Helper()
	proctest.Eventually(t, 5*time.Second, "a "+typ+" event", func() bool { return f.journal.HasEvent("", typ) })
}

// TestFirstDeployOntoUnhealthyFleet: hosts that serve nothing yet can be
// detached whatever min_healthy says, so a first deploy is possible.
func TestFirstDeployOntoUnhealthyFleet(t *testing.T) {
	f := newFleet(t, 2, 1)
	// A host serves, and so passes its checks, once it runs v2.
	byTarget := map[string]*enginetest.Host{}
	for _, h := range f.env.Hosts {
		byTarget[h.Target] = f.hosts[h.Name]
	}
	f.lb.Healthy = func(addr string) bool { return byTarget[addr].Version() == "v2" }
	for _, h := range f.env.Hosts {
		eventuallyState(t, f.lb, h.Target, lb.StateUnhealthy)
	}
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusSucceeded {
		t.Fatalf("status %s: %v", res.Status, res.Err)
	}
	f.allOn(t, "v2")
}

func eventuallyState(t *testing.T, l *enginetest.LB, addr string, want lb.State) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.State(addr) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %s", addr, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestResumedRunRollsBackEarlierHosts: a host done before the crash is
// rolled back too when the resumed run fails.
func TestResumedRunRollsBackEarlierHosts(t *testing.T) {
	f := newFleet(t, 2, 1)
	p := f.rolling(t)
	skip := map[engine.TaskKey]bool{}
	for i := range p.Stages[1].Jobs[0].Tasks {
		skip[engine.TaskKey{Stage: p.Stages[1].Name, Job: p.Stages[1].Jobs[0].Name, Index: i}] = true
	}
	f.hosts["staging-1"].Activate(context.Background(), "v2")
	f.hosts["staging-2"].Bad["v2"] = true
	res := f.eng.Run(context.Background(), p, skip)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s: %v", res.Status, res.Err)
	}
	if got := strings.Join(res.Changed, ","); got != "staging-1,staging-2" {
		t.Fatalf("changed %s", got)
	}
	f.allOn(t, "v1")
}

// hostEvents returns the types of host's events from the first of type
// from on, keeping only those in keep.
func hostEvents(j *enginetest.Journal, host, from string, keep ...string) []string {
	var out []string
	seen := false
	for _, e := range j.Events {
		if e.Host != host {
			continue
		}
		if e.Type == from {
			seen = true
		}
		if seen && slices.Contains(keep, e.Type) {
			out = append(out, e.Type)
		}
	}
	return out
}

// TestRollbackGoesThroughTheBalancer: a host already on the new version is
// rolled back the way it was deployed — detached, drained, switched back,
// attached, healthy — never switched while it serves.
func TestRollbackGoesThroughTheBalancer(t *testing.T) {
	f := newFleet(t, 3, 1)
	f.hosts["staging-2"].Bad["v2"] = true
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s, err %v, stranded %v", res.Status, res.Err, res.Stranded)
	}
	got := hostEvents(f.journal, "staging-1", engine.EvRollback,
		engine.EvDetaching, engine.EvDrained, engine.EvActivated, engine.EvAttaching, engine.EvHealthy, engine.EvRolledBack)
	want := []string{engine.EvDetaching, engine.EvDrained, engine.EvActivated, engine.EvAttaching, engine.EvHealthy, engine.EvRolledBack}
	if !slices.Equal(got, want) {
		t.Fatalf("rollback of staging-1: %v, want %v", got, want)
	}
	// The balancer saw staging-1 go out a second time, for the rollback.
	if n := strings.Count(strings.Join(f.lb.Calls, ","), "detach 127.0.0.1:8101"); n != 2 {
		t.Fatalf("staging-1 detached %d times: %v", n, f.lb.Calls)
	}
	f.allOn(t, "v1")
}

// TestFailedJobStopsItsSiblings: with two hosts a batch, when one host's
// new version fails, the other — still draining — stops at its next safe
// point and the rollback starts, instead of waiting out its drain.
func TestFailedJobStopsItsSiblings(t *testing.T) {
	f := newFleet(t, 4, 0)
	f.env.Strategy.Rolling.Batch = config.BatchSpec{{N: 2}}
	f.env.Strategy.Rolling.DrainTimeout = config.Duration(20 * time.Second)
	f.lb.DrainDelays = map[string]time.Duration{"127.0.0.1:8102": 10 * time.Second}
	f.hosts["staging-1"].Bad["v2"] = true
	start := time.Now()
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	took := time.Since(start)
	if res.Status != engine.StatusRolledBack || !errors.Is(res.Err, enginetest.ErrUnhealthy) {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
	var failedAt time.Time
	for _, e := range f.journal.Events {
		if e.Host == "staging-1" && e.Type == engine.EvFailed {
			failedAt = e.At
			break
		}
	}
	var drainKey string
	for _, s := range f.journal.Started {
		if strings.Contains(s, "wait-drained staging-2") {
			drainKey = strings.Fields(s)[0]
		}
	}
	if failedAt.IsZero() || drainKey == "" {
		t.Fatalf("no failure of staging-1 or no drain of staging-2 in the journal: %v %v", f.journal.EventTypes(), f.journal.Started)
	}
	if st := f.journal.Finished[drainKey]; st != engine.TaskCancelled {
		t.Fatalf("staging-2's drain ended %s, want cancelled", st)
	}
	if gap := f.journal.FinishedAt[drainKey].Sub(failedAt); gap > time.Second {
		t.Fatalf("staging-2 went on draining %s after staging-1 failed", gap)
	}
	if took > 5*time.Second {
		t.Fatalf("the run took %s: the sibling waited out its drain", took)
	}
	f.allOn(t, "v1")
}

// TestRequestsFailingTakesSuspectsOutFirst: when the run stops because
// requests fail, every host serving the new version leaves the balancer at
// once, before the one-by-one rollback starts; a host still on the old
// version keeps serving.
func TestRequestsFailingTakesSuspectsOutFirst(t *testing.T) {
	f := newFleet(t, 3, 1)
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	f.eng.OnEvent = func(e engine.Event) {
		if e.Host == "staging-2" && e.Type == engine.EvHealthy {
			stop(engine.ErrRequestsFailing)
		}
	}
	res := f.eng.Run(ctx, f.rolling(t), nil)
	if res.Status != engine.StatusRolledBack || !errors.Is(res.Err, engine.ErrRequestsFailing) {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
	firstRollback := -1
	var suspects []string
	for i, e := range f.journal.Events {
		if e.Type == engine.EvRollback && firstRollback < 0 {
			firstRollback = i
		}
		if e.Type == engine.EvDetaching && strings.Contains(e.Message, "while requests fail") {
			if firstRollback >= 0 {
				t.Fatalf("suspect %s taken out after the rollback began", e.Host)
			}
			suspects = append(suspects, e.Host)
		}
	}
	slices.Sort(suspects)
	if !slices.Equal(suspects, []string{"staging-1", "staging-2"}) {
		t.Fatalf("suspects taken out first: %v (events %v)", suspects, f.journal.EventTypes())
	}
	if f.hosts["staging-3"].Version() != "v1" {
		t.Fatal("staging-3 was changed")
	}
	f.allOn(t, "v1")
}

// A drain_timeout that is not above the balancer's own draining bound must
// not give up a moment before the balancer ends the drain: the engine
// waits for the balancer's bound and reports a drain ended by its cut.
func TestDrainWaitsForTheBalancersBound(t *testing.T) {
	f := newFleet(t, 2, 1)
	f.env.Strategy.Rolling.DrainTimeout = config.Duration(100 * time.Millisecond)
	f.lb.DrainDelay, f.lb.Bound = 10*time.Second, 400*time.Millisecond
	var mu sync.Mutex
	var events []engine.Event
	f.eng.OnEvent = func(e engine.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	res := f.eng.Run(context.Background(), f.rolling(t), nil)
	if res.Err != nil {
		t.Fatalf("run gave up on drains the balancer ends at its bound: %v", res.Err)
	}
	mu.Lock()
	defer mu.Unlock()
	f.allOn(t, "v2")
	var warned, cut int
	for _, e := range events {
		if e.Type == engine.EvInfo && strings.Contains(e.Message, "not above the load balancer's draining bound 400ms") {
			warned++
		}
		if e.Type == engine.EvDrained && strings.Contains(e.Message, "3 requests were still in flight") {
			cut++
		}
	}
	if warned != 1 || cut != 2 {
		t.Fatalf("%d warnings (want 1) and %d drains reported as cut (want 2); events: %+v", warned, cut, events)
	}
}
