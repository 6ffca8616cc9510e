package deploy

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// TestLeaseLostFencesTheJournal takes a run's lock from under it, as a
// server replica does when the executor was paused past its lease: the
// run's next task is refused before it acts, the run is stopped with
// engine.ErrTakenOver, nothing more is written to its journal, and the
// lock stays the new holder's.
func TestLeaseLostFencesTheJournal(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"), sqlite.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	run, err := st.CreateRun(ctx, store.Run{Env: "staging", Pipeline: "rolling", Version: "v2", Artifact: "a", SHA256: "s", Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var cause error
	lease, err := holdLock(ctx, st, "staging", run.ID, time.Hour, false, io.Discard, func(err error) { cause = err })
	if err != nil {
		t.Fatal(err)
	}
	defer lease.release()
	j := fencedJournal{Journal: engine.StoreJournal{Store: st, RunID: run.ID}, lease: lease}
	k := engine.TaskKey{Stage: "update-web-1", Job: "web-1", Index: 0}
	task := pipeline.Task{Kind: pipeline.KindDetach, Host: "web-1"}
	if err := j.TaskStarted(ctx, k, task); err != nil {
		t.Fatalf("a task of the lock's holder: %v", err)
	}

	// The holder goes quiet past its lease; another executor takes over.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if _, err := st.TakeOverLock(ctx, "staging", "replica-b", run.ID, time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}

	next := engine.TaskKey{Stage: k.Stage, Job: k.Job, Index: 1}
	if err := j.TaskStarted(ctx, next, pipeline.Task{Kind: pipeline.KindWaitDrained, Host: "web-1"}); !errors.Is(err, engine.ErrTakenOver) {
		t.Fatalf("a task after the lock was taken: %v, want ErrTakenOver", err)
	}
	if !errors.Is(cause, engine.ErrTakenOver) {
		t.Fatalf("the run was stopped with %v, want ErrTakenOver", cause)
	}
	if err := j.TaskFinished(ctx, k, engine.TaskCancelled, cause); err != nil {
		t.Fatal(err)
	}
	if err := j.Event(ctx, engine.Event{Type: engine.EvRollback, Host: "web-1", Message: "rolling back"}); err != nil {
		t.Fatal(err)
	}
	tasks, _ := st.Tasks(ctx, run.ID)
	if len(tasks) != 1 || tasks[0].Status != store.TaskRunning {
		t.Errorf("tasks after the takeover: %+v; want the first, still running (the new holder's to finish)", tasks)
	}
	if evs, _ := st.Events(ctx, run.ID, 0); len(evs) != 0 {
		t.Errorf("events written after the takeover: %+v", evs)
	}
	lease.release()
	locks, err := st.Locks(ctx)
	if err != nil || len(locks) != 1 || locks[0].Owner != "replica-b" {
		t.Fatalf("locks after the old holder let go: %+v %v; want replica-b's", locks, err)
	}
}

// failingStore is a journal the lease can no longer reach.
type failingStore struct {
	store.Store
	fail bool
	mu   sync.Mutex
}

func (f *failingStore) Heartbeat(ctx context.Context, env, owner, runID string) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return errors.New("connection refused")
	}
	return f.Store.Heartbeat(ctx, env, owner, runID)
}

// TestLeaseUnconfirmedStops cuts the lease off from its journal: while the
// outage is shorter than the lease less a beat, a heartbeat failure is a
// warning; past it the run stops as if taken over, since another executor
// may rightly have taken the run by then.
func TestLeaseUnconfirmedStops(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs := &failingStore{Store: st}
	var mu sync.Mutex
	var cause error
	lease, err := holdLock(ctx, fs, "staging", "r-1", 900*time.Millisecond, false, io.Discard, func(err error) {
		mu.Lock()
		cause = err
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lease.release()
	if err := lease.confirm(ctx); err != nil {
		t.Fatalf("a reachable journal: %v", err)
	}
	fs.mu.Lock()
	fs.fail = true
	fs.mu.Unlock()
	if err := lease.confirm(ctx); err == nil || errors.Is(err, engine.ErrTakenOver) || lease.isLost() {
		t.Fatalf("a first failed heartbeat: %v (lost %v); want the error, the lease kept", err, lease.isLost())
	}
	proctest.Eventually(t, 5*time.Second, "the lease to count as lost in an outage longer than itself", lease.isLost)
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(cause, engine.ErrTakenOver) {
		t.Fatalf("the run was stopped with %v, want ErrTakenOver", cause)
	}
	if err := lease.confirm(ctx); !errors.Is(err, engine.ErrTakenOver) {
		t.Fatalf("confirm after the loss: %v", err)
	}
}
