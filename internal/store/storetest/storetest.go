// Package storetest is the contract of store.Store as tests, for every
// backend to run against itself:
//
//	func TestContract(t *testing.T) {
//		storetest.TestContract(t, func(t *testing.T) storetest.Opener {
//			path := filepath.Join(t.TempDir(), "state.db") // a new, empty database
//			return func(now func() time.Time) store.Store {
//				s, err := sqlite.Open(ctx, path, sqlite.Options{Now: now})
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { s.Close() })
//				return s
//			}
//		})
//	}
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
)

// Opener opens a new handle to one database with now as the store's clock.
// The contract holds several handles to one database at once, as several
// processes would; it closes some itself, the opener closes the rest when
// the test ends. Opener is called from the test's goroutine.
type Opener func(now func() time.Time) store.Store

// TestContract runs the contract against a backend. newDB creates a new,
// empty database for the (sub)test t and returns how to open handles to it.
func TestContract(t *testing.T, newDB func(t *testing.T) Opener) {
	tests := []struct {
		name string
		test func(t *testing.T, db Opener)
	}{
		{"runs", testRuns},
		{"invalid runs", testInvalidRuns},
		{"list runs", testListRuns},
		{"update run", testUpdateRun},
		{"abort from another handle", testAbort},
		{"tasks", testTasks},
		{"task order", testTaskOrder},
		{"events", testEvents},
		{"concurrent appends", testConcurrentAppends},
		{"approvals", testApprovals},
		{"unknown run", testUnknownRun},
		{"lock", testLock},
		{"stale takeover", testStaleTakeover},
		{"lock exclusivity", testLockExclusivity},
		{"holder's lease", testHolderLease},
		{"reopen", testReopen},
		{"held locks", testHeldLocks},
		{"query runs", testQueryRuns},
		{"query runs in pages", testQueryPages},
		{"tokens", testTokens},
		{"invalid tokens", testInvalidTokens},
		{"audit log", testAudit},
		{"reports", testReports},
		{"prune runs", testPruneRuns},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newDB(t))
		})
	}
}

// start is the fake clock's first reading; whole microseconds, as stored.
var start = time.Date(2026, 11, 25, 18, 12, 3, 250_000_000, time.UTC)

// clock is a fake clock shared by the handles of one test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: start} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

var ctx = context.Background()

// mustRun creates a run in env and returns its ID.
func mustRun(t *testing.T, s store.Store, env string) string {
	t.Helper()
	r, err := s.CreateRun(ctx, store.Run{Env: env, Version: "v2", Owner: "alice@ci-1 pid 4242"})
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return r.ID
}

// jsonEqual compares JSON by value: a backend may store it as jsonb.
func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func sameTime(a, b time.Time) bool {
	return a.Equal(b) && (a.IsZero() || a.Location() == time.UTC) && (b.IsZero() || b.Location() == time.UTC)
}

// checkRun reports where got differs from want.
func checkRun(t *testing.T, got, want store.Run) {
	t.Helper()
	if !sameTime(got.StartedAt, want.StartedAt) || !sameTime(got.EndedAt, want.EndedAt) {
		t.Errorf("run %s: started %v, ended %v; want %v, %v (UTC)", want.ID, got.StartedAt, got.EndedAt, want.StartedAt, want.EndedAt)
	}
	if !jsonEqual(got.Plan, want.Plan) {
		t.Errorf("run %s: plan %s, want %s", want.ID, got.Plan, want.Plan)
	}
	if !jsonEqual(got.Spec, want.Spec) {
		t.Errorf("run %s: spec %s, want %s", want.ID, got.Spec, want.Spec)
	}
	got.StartedAt, got.EndedAt, got.Plan, got.Spec = time.Time{}, time.Time{}, nil, nil
	want.StartedAt, want.EndedAt, want.Plan, want.Spec = time.Time{}, time.Time{}, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("run:\n got %+v\nwant %+v", got, want)
	}
}

var runID = regexp.MustCompile(`^r-\d{8}-\d{6}-[0-9a-f]{4}$`)

func testRuns(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)

	// Defaults: ID, status and start time.
	r, err := s.CreateRun(ctx, store.Run{Env: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if !runID.MatchString(r.ID) || r.Status != store.RunRunning || !r.StartedAt.Equal(start) {
		t.Errorf("CreateRun filled in %q, %q, %v; want an ID like r-20261125-181203-ab12, running, %v", r.ID, r.Status, r.StartedAt, start)
	}
	got, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, got, r)

	// Every field round-trips; times are kept to the microsecond, in UTC.
	full := store.Run{
		ID: "r-20261125-181203-0001", Env: "production", Pipeline: "rolling", Version: "v2",
		Artifact: "dist/hello.tar.gz", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Status:    store.RunNeedsAttention,
		StartedAt: time.Date(2026, 11, 25, 19, 0, 0, 123_456_000, time.FixedZone("CET", 3600)),
		EndedAt:   time.Date(2026, 11, 25, 19, 1, 2, 654_321_000, time.UTC),
		Owner:     "alice@ci-1 pid 4242",
		Plan:      []byte(`{"stages": [{"name": "update-staging-1", "jobs": [{"tasks": [{"detach": "staging-1"}]}]}]}`),
		Spec:      []byte(`{"name": "hello", "run": ["./hello"]}`), PromotedFrom: "r-20260101-000000-abcd",
		Error: "attach staging-2: not healthy after 30s",
		Abort: true,
	}
	created, err := s.CreateRun(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	want := full
	want.StartedAt, want.EndedAt = full.StartedAt.UTC(), full.EndedAt.UTC()
	checkRun(t, created, want)
	got, err = s.GetRun(ctx, full.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, got, want)

	if _, err := s.CreateRun(ctx, full); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateRun with an ID in use: %v, want ErrExists", err)
	}
	if _, err := s.GetRun(ctx, "r-nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun of an unknown run: %v, want ErrNotFound", err)
	}

	// Generated IDs do not collide, also within one second.
	seen := map[string]bool{r.ID: true}
	for range 50 {
		r, err := s.CreateRun(ctx, store.Run{Env: "staging"})
		if err != nil {
			t.Fatal(err)
		}
		if seen[r.ID] {
			t.Fatalf("ID %s given twice", r.ID)
		}
		seen[r.ID] = true
	}
}

func testInvalidRuns(t *testing.T, db Opener) {
	s := db(newClock().Now)
	for _, tt := range []struct {
		name string
		run  store.Run
	}{
		{"no environment", store.Run{Version: "v2"}},
		{"unknown status", store.Run{Env: "staging", Status: "done"}},
		{"pending is not a run status", store.Run{Env: "staging", Status: "pending"}},
		{"plan is not JSON", store.Run{Env: "staging", Plan: []byte("stages:\n- a\n")}},
	} {
		if r, err := s.CreateRun(ctx, tt.run); err == nil {
			t.Errorf("%s: CreateRun wrote %s, want an error", tt.name, r.ID)
		}
	}
	if runs, err := s.ListRuns(ctx, "", 0); err != nil || len(runs) != 0 {
		t.Errorf("after invalid runs, ListRuns = %d runs, %v; want none", len(runs), err)
	}
}

func testListRuns(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	var ids []string // in creation order, one second apart
	for _, env := range []string{"staging", "production", "staging", "staging", "production"} {
		ids = append(ids, mustRun(t, s, env))
		clk.Advance(time.Second)
	}
	// A run that started earlier but was written last sorts by its start.
	early, err := s.CreateRun(ctx, store.Run{Env: "staging", StartedAt: start.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		env   string
		limit int
		want  []string
	}{
		{"", 0, []string{ids[4], ids[3], ids[2], ids[1], ids[0], early.ID}},
		{"", 2, []string{ids[4], ids[3]}},
		{"staging", 0, []string{ids[3], ids[2], ids[0], early.ID}},
		{"staging", -1, []string{ids[3], ids[2], ids[0], early.ID}},
		{"staging", 1, []string{ids[3]}},
		{"production", 10, []string{ids[4], ids[1]}},
		{"qa", 0, nil},
	} {
		runs, err := s.ListRuns(ctx, tt.env, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range runs {
			got = append(got, r.ID)
			if tt.env != "" && r.Env != tt.env {
				t.Errorf("ListRuns(%q) returned run %s of %s", tt.env, r.ID, r.Env)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ListRuns(%q, %d) = %v, want %v", tt.env, tt.limit, got, tt.want)
		}
	}
}

func testUpdateRun(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	id := mustRun(t, s, "staging")
	before, err := s.GetRun(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []store.RunUpdate{
		{Status: store.RunFailed, EndedAt: clk.Advance(time.Minute), Error: "detach staging-1: draining did not finish in 30s"},
		{Status: store.RunRunning, Owner: "ci@builder:4242"}, // resumed by another process: no end, no error
		{Status: store.RunRolledBack, EndedAt: clk.Advance(time.Minute), Error: "rolled back after: deploy staging-2 failed"},
	} {
		if err := s.UpdateRun(ctx, id, u); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := before
		want.Status, want.EndedAt, want.Error = u.Status, u.EndedAt, u.Error
		if u.Owner != "" {
			before.Owner = u.Owner // and it stays with the updates after
			want.Owner = u.Owner
		}
		checkRun(t, got, want)
	}
	if err := s.UpdateRun(ctx, id, store.RunUpdate{Status: "done"}); err == nil {
		t.Error("UpdateRun with an unknown status succeeded")
	}
	if got, _ := s.GetRun(ctx, id); got.Status != store.RunRolledBack {
		t.Errorf("after a refused update the status is %q, want it unchanged", got.Status)
	}
}

func testAbort(t *testing.T, db Opener) {
	clk := newClock()
	engine, cli := db(clk.Now), db(clk.Now) // as two processes
	id := mustRun(t, engine, "staging")
	other := mustRun(t, engine, "production")
	if r, err := engine.GetRun(ctx, id); err != nil || r.Abort {
		t.Fatalf("new run: Abort %v, %v; want false", r.Abort, err)
	}
	if err := cli.RequestAbort(ctx, id, "alice@ci"); err != nil {
		t.Fatal(err)
	}
	first := clk.Now()
	if r, err := engine.GetRun(ctx, id); err != nil || !r.Abort || r.AbortBy != "alice@ci" || !r.AbortAt.Equal(first) {
		t.Errorf("after RequestAbort from another handle: Abort %v by %q at %v, %v; want true by alice@ci at %v", r.Abort, r.AbortBy, r.AbortAt, err, first)
	}
	if r, err := engine.GetRun(ctx, other); err != nil || r.Abort {
		t.Errorf("another run: Abort %v, %v; want false", r.Abort, err)
	}
	clk.Advance(time.Minute)
	if err := cli.RequestAbort(ctx, id, "bob@laptop"); err != nil {
		t.Errorf("second RequestAbort: %v", err)
	}
	if r, err := engine.GetRun(ctx, id); err != nil || r.AbortBy != "alice@ci" || !r.AbortAt.Equal(first) {
		t.Errorf("a second request changed who asked first: by %q at %v, %v", r.AbortBy, r.AbortAt, err)
	}
}

func testTasks(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	id := mustRun(t, s, "staging")
	if tasks, err := s.Tasks(ctx, id); err != nil || len(tasks) != 0 {
		t.Fatalf("Tasks of a new run = %v, %v; want none", tasks, err)
	}

	detach := store.TaskRecord{RunID: id, Stage: "update-staging-1", Job: "job-1", Index: 0, Kind: "detach", Host: "staging-1"}
	deploy := store.TaskRecord{RunID: id, Stage: "update-staging-1", Job: "job-1", Index: 1, Kind: "deploy", Host: "staging-1"}
	attach := store.TaskRecord{RunID: id, Stage: "attach-staging-1", Job: "job-1", Index: 0, Kind: "attach", Host: "staging-1"}
	smoke := store.TaskRecord{RunID: id, Stage: "attach-staging-1", Job: "job-1", Index: 1, Kind: "smoke"}

	t0 := clk.Now()
	got, err := s.StartTask(ctx, detach)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.TaskRunning || got.Attempt != 1 || !got.StartedAt.Equal(t0) || !got.EndedAt.IsZero() {
		t.Errorf("StartTask = %+v; want running, attempt 1, started %v", got, t0)
	}
	t1 := clk.Advance(2 * time.Second)
	fin := detach
	fin.Status = store.TaskPassed
	if err := s.FinishTask(ctx, fin); err != nil {
		t.Fatal(err)
	}

	if _, err := s.StartTask(ctx, deploy); err != nil { // t1
		t.Fatal(err)
	}
	t2 := clk.Advance(time.Second)
	fin = deploy
	fin.Status, fin.EndedAt, fin.Error = store.TaskFailed, t2, "upload to staging-1: connection refused"
	if err := s.FinishTask(ctx, fin); err != nil {
		t.Fatal(err)
	}
	// Resumed: the deploy starts again, a second attempt; its outcome is cleared.
	t3 := clk.Advance(time.Second)
	got, err = s.StartTask(ctx, deploy)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempt != 2 || got.Status != store.TaskRunning || !got.StartedAt.Equal(t3) {
		t.Errorf("restarted task: %+v; want attempt 2, running, started %v", got, t3)
	}
	// Not started, skipped; and cancelled before it began, with an explicit time.
	t4 := clk.Advance(time.Second)
	fin = attach
	fin.Status, fin.Error = store.TaskSkipped, "run_if: failed"
	if err := s.FinishTask(ctx, fin); err != nil {
		t.Fatal(err)
	}
	t5 := t4.Add(time.Second)
	fin = smoke
	fin.Status, fin.EndedAt = store.TaskCancelled, t5
	if err := s.FinishTask(ctx, fin); err != nil {
		t.Fatal(err)
	}

	want := []store.TaskRecord{
		withState(detach, store.TaskPassed, t0, t1, "", 1),
		withState(deploy, store.TaskRunning, t3, time.Time{}, "", 2),
		withState(attach, store.TaskSkipped, t4, t4, "run_if: failed", 0),
		withState(smoke, store.TaskCancelled, t5, t5, "", 0),
	}
	checkTasks(t, s, id, want)

	// Refused: a passed or failed task that never started, and outcomes that are not outcomes.
	never := store.TaskRecord{RunID: id, Stage: "update-staging-2", Job: "job-1", Kind: "detach", Host: "staging-2"}
	for _, st := range []store.TaskStatus{store.TaskPassed, store.TaskFailed} {
		never.Status = st
		if err := s.FinishTask(ctx, never); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("FinishTask(%s) of a task never started: %v, want ErrNotFound", st, err)
		}
	}
	for _, st := range []store.TaskStatus{"", store.TaskPending, store.TaskRunning, "ok"} {
		fin := deploy
		fin.Status = st
		if err := s.FinishTask(ctx, fin); err == nil {
			t.Errorf("FinishTask with status %q succeeded", st)
		}
	}
	if _, err := s.StartTask(ctx, store.TaskRecord{RunID: id, Stage: "s", Index: -1, Kind: "exec"}); err == nil {
		t.Error("StartTask with a negative index succeeded")
	}
	checkTasks(t, s, id, want)
}

func withState(t store.TaskRecord, st store.TaskStatus, started, ended time.Time, msg string, attempt int) store.TaskRecord {
	t.Status, t.StartedAt, t.EndedAt, t.Error, t.Attempt = st, started, ended, msg, attempt
	return t
}

func checkTasks(t *testing.T, s store.Store, runID string, want []store.TaskRecord) {
	t.Helper()
	got, err := s.Tasks(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Tasks = %d tasks, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if !sameTime(g.StartedAt, w.StartedAt) || !sameTime(g.EndedAt, w.EndedAt) {
			t.Errorf("task %d: started %v, ended %v; want %v, %v (UTC)", i, g.StartedAt, g.EndedAt, w.StartedAt, w.EndedAt)
		}
		g.StartedAt, g.EndedAt, w.StartedAt, w.EndedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if g != w {
			t.Errorf("task %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

// testTaskOrder: tasks come back in the order they started, ties (parallel
// jobs started in the same instant) in the order they were written.
func testTaskOrder(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	id := mustRun(t, s, "staging")
	var want []string
	start := func(stage, job string, idx int) {
		t.Helper()
		if _, err := s.StartTask(ctx, store.TaskRecord{RunID: id, Stage: stage, Job: job, Index: idx, Kind: "exec"}); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s/%s/%d", stage, job, idx))
	}
	start("b-upload", "staging-2", 0) // stage names do not sort the tasks
	start("b-upload", "staging-1", 0) // same instant: written second
	clk.Advance(time.Millisecond)
	start("a-switch", "j", 0)
	clk.Advance(time.Microsecond)
	start("a-switch", "j", 1)
	got, err := s.Tasks(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range got {
		names = append(names, fmt.Sprintf("%s/%s/%d", tr.Stage, tr.Job, tr.Index))
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Tasks order = %v, want %v", names, want)
	}
}

func testEvents(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	a, b := mustRun(t, s, "staging"), mustRun(t, s, "production")

	at := time.Date(2026, 11, 25, 18, 0, 0, 1000, time.UTC)
	in := []store.Event{
		{RunID: a, Host: "staging-1", Type: "detach", Message: "detaching 127.0.0.1:8101"},
		{RunID: b, Type: "info", Message: "run started"},
		{RunID: a, Host: "staging-1", Type: "wait", Message: "draining", Data: []byte(`{"in_flight": 3, "state": "draining"}`)},
		{RunID: a, Host: "staging-1", Type: "drained", At: at},
		{RunID: b, Type: "failed", Message: "upload failed"},
	}
	var wantA, wantB []store.Event
	for i, e := range in {
		now := clk.Advance(time.Second)
		got, err := s.AppendEvent(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		want := e
		if want.At.IsZero() {
			want.At = now
		}
		if e.RunID == a {
			want.Seq = int64(len(wantA) + 1)
			wantA = append(wantA, want)
		} else {
			want.Seq = int64(len(wantB) + 1)
			wantB = append(wantB, want)
		}
		if got.Seq != want.Seq || !sameTime(got.At, want.At) {
			t.Errorf("event %d: seq %d at %v, want %d at %v", i, got.Seq, got.At, want.Seq, want.At)
		}
	}
	for _, tt := range []struct {
		run   string
		after int64
		want  []store.Event
	}{
		{a, 0, wantA},
		{a, 1, wantA[1:]},
		{a, 2, wantA[2:]},
		{a, 3, nil},
		{a, 99, nil},
		{b, 0, wantB},
		{b, -1, wantB},
	} {
		got, err := s.Events(ctx, tt.run, tt.after)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("Events(%s, %d) = %d events, want %d", tt.run, tt.after, len(got), len(tt.want))
			continue
		}
		for i := range got {
			g, w := got[i], tt.want[i]
			if !sameTime(g.At, w.At) || !jsonEqual(g.Data, w.Data) {
				t.Errorf("Events(%s, %d)[%d]: at %v, data %s; want %v, %s", tt.run, tt.after, i, g.At, g.Data, w.At, w.Data)
			}
			g.At, g.Data, w.At, w.Data = time.Time{}, nil, time.Time{}, nil
			if !reflect.DeepEqual(g, w) {
				t.Errorf("Events(%s, %d)[%d]:\n got %+v\nwant %+v", tt.run, tt.after, i, g, w)
			}
		}
	}
	for _, e := range []store.Event{
		{RunID: a, Message: "no type"},
		{RunID: a, Type: "info", Data: []byte("{in_flight: 3}")},
	} {
		if got, err := s.AppendEvent(ctx, e); err == nil {
			t.Errorf("AppendEvent(%+v) = seq %d, want an error", e, got.Seq)
		}
	}
}

// testConcurrentAppends: two handles, many goroutines; every event gets its
// own Seq and none is lost.
func testConcurrentAppends(t *testing.T, db Opener) {
	clk := newClock()
	handles := []store.Store{db(clk.Now), db(clk.Now)}
	id := mustRun(t, handles[0], "staging")
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		s := handles[w%2]
		wg.Go(func() {
			for i := range each {
				if _, err := s.AppendEvent(ctx, store.Event{RunID: id, Type: "info", Message: fmt.Sprintf("%d/%d", w, i)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	events, err := handles[1].Events(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string]bool{}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, i+1)
		}
		msgs[e.Message] = true
	}
	if len(events) != workers*each || len(msgs) != workers*each {
		t.Errorf("%d events, %d distinct; want %d", len(events), len(msgs), workers*each)
	}
}

func testApprovals(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	id := mustRun(t, s, "production")
	if _, ok, err := s.Approved(ctx, id, "promote"); err != nil || ok {
		t.Fatalf("Approved before any approval = %v, %v; want false", ok, err)
	}
	t0 := clk.Advance(time.Minute)
	a, err := s.Approve(ctx, id, "promote", "bob")
	want := store.Approval{RunID: id, Stage: "promote", By: "bob", At: t0}
	if err != nil || a.RunID != want.RunID || a.Stage != want.Stage || a.By != want.By || !sameTime(a.At, want.At) {
		t.Fatalf("Approve = %+v, %v; want %+v", a, err, want)
	}
	clk.Advance(time.Minute)
	if a, err := s.Approve(ctx, id, "promote", "carol"); err != nil || a.By != "bob" || !sameTime(a.At, t0) {
		t.Errorf("second Approve = %+v, %v; want bob's first approval kept", a, err)
	}
	if a, ok, err := s.Approved(ctx, id, "promote"); err != nil || !ok || a.By != "bob" || !sameTime(a.At, t0) || a.RunID != id || a.Stage != "promote" {
		t.Errorf("Approved = %+v, %v, %v; want %+v", a, ok, err, want)
	}
	if _, ok, err := s.Approved(ctx, id, "canary"); err != nil || ok {
		t.Errorf("Approved of another stage = %v, %v; want false", ok, err)
	}
	other := mustRun(t, s, "production")
	if _, ok, err := s.Approved(ctx, other, "promote"); err != nil || ok {
		t.Errorf("Approved of the stage in another run = %v, %v; want false", ok, err)
	}
	if _, err := s.Approve(ctx, id, "canary", ""); err == nil {
		t.Error("Approve by nobody succeeded")
	}
}

// testUnknownRun: every method about a run says ErrNotFound for one that
// does not exist, and writes nothing.
func testUnknownRun(t *testing.T, db Opener) {
	s := db(newClock().Now)
	const id = "r-20261125-181203-dead"
	task := store.TaskRecord{RunID: id, Stage: "s", Job: "j", Kind: "detach"}
	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"GetRun", func() error { _, err := s.GetRun(ctx, id); return err }},
		{"UpdateRun", func() error { return s.UpdateRun(ctx, id, store.RunUpdate{Status: store.RunFailed}) }},
		{"RequestAbort", func() error { return s.RequestAbort(ctx, id, "me") }},
		{"StartTask", func() error { _, err := s.StartTask(ctx, task); return err }},
		{"FinishTask passed", func() error { task.Status = store.TaskPassed; return s.FinishTask(ctx, task) }},
		{"FinishTask skipped", func() error { task.Status = store.TaskSkipped; return s.FinishTask(ctx, task) }},
		{"Tasks", func() error { _, err := s.Tasks(ctx, id); return err }},
		{"AppendEvent", func() error { _, err := s.AppendEvent(ctx, store.Event{RunID: id, Type: "info"}); return err }},
		{"Events", func() error { _, err := s.Events(ctx, id, 0); return err }},
		{"Approve", func() error { _, err := s.Approve(ctx, id, "promote", "bob"); return err }},
		{"Approved", func() error { _, _, err := s.Approved(ctx, id, "promote"); return err }},
		{"QueryRuns before it", func() error { _, err := s.QueryRuns(ctx, store.RunQuery{Before: id}); return err }},
	} {
		if err := tt.call(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of an unknown run: %v, want ErrNotFound", tt.name, err)
		}
	}
}

const (
	alice = "alice@ci-1 pid 4242"
	bob   = "bob@laptop pid 77"
	carol = "carol@ci-2 pid 9"
)

// holder returns who holds env's lock, by failing to take it as someone else.
func holder(t *testing.T, s store.Store, env string) *store.LockedError {
	t.Helper()
	_, err := s.AcquireLock(ctx, env, "probe@nowhere pid 1", "r-probe", time.Hour)
	var le *store.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("probe of the lock of %s: %v, want it locked", env, err)
	}
	return le
}

func checkLock(t *testing.T, got store.Lock, env, owner, run string, since, heartbeat time.Time) {
	t.Helper()
	if got.Env != env || got.Owner != owner || got.RunID != run || !sameTime(got.Since, since) || !sameTime(got.Heartbeat, heartbeat) {
		t.Errorf("lock = %+v; want %s held by %s for %s since %v, heartbeat %v", got, env, owner, run, since, heartbeat)
	}
}

func testLock(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	const stale = 30 * time.Second
	t0 := clk.Now()

	l, err := s.AcquireLock(ctx, "staging", alice, "r-1", stale)
	if err != nil {
		t.Fatal(err)
	}
	checkLock(t, l, "staging", alice, "r-1", t0, t0)

	// The holder again: heartbeat refreshed, since kept.
	t1 := clk.Advance(time.Second)
	l, err = s.AcquireLock(ctx, "staging", alice, "r-1", stale)
	if err != nil {
		t.Fatalf("AcquireLock by the holder: %v", err)
	}
	checkLock(t, l, "staging", alice, "r-1", t0, t1)

	// Someone else, another run of the same owner, the same run from another
	// process: all refused, with who holds it since when.
	clk.Advance(2 * time.Second)
	for _, who := range []struct{ owner, run string }{{bob, "r-2"}, {alice, "r-2"}, {bob, "r-1"}} {
		_, err = s.AcquireLock(ctx, "staging", who.owner, who.run, stale)
		var le *store.LockedError
		if !errors.As(err, &le) {
			t.Fatalf("AcquireLock by %s for %s of a held lock: %v, want *LockedError", who.owner, who.run, err)
		}
		checkLock(t, le.Lock, "staging", alice, "r-1", t0, t1)
		if le.Age != 2*time.Second || le.Stale {
			t.Errorf("LockedError: age %v, stale %v; want 2s, false", le.Age, le.Stale)
		}
		want := fmt.Sprintf("environment staging is locked by %s (run r-1) since %s (heartbeat 2s ago)", alice, t0.Local().Format("15:04:05"))
		if err.Error() != want {
			t.Errorf("LockedError:\n got %q\nwant %q", err, want)
		}
	}

	// Another environment is another lock.
	if _, err := s.AcquireLock(ctx, "production", bob, "r-2", stale); err != nil {
		t.Errorf("AcquireLock of another environment: %v", err)
	}

	// Heartbeat.
	t3 := clk.Advance(5 * time.Second)
	if err := s.Heartbeat(ctx, "staging", alice, "r-1"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if le := holder(t, s, "staging"); !sameTime(le.Lock.Heartbeat, t3) || le.Age != time.Second {
		t.Errorf("after Heartbeat: heartbeat %v, age %v; want %v, 1s", le.Lock.Heartbeat, le.Age, t3)
	}
	for _, who := range []struct{ owner, run string }{{bob, "r-2"}, {alice, "r-2"}, {bob, "r-1"}} {
		if err := s.Heartbeat(ctx, "staging", who.owner, who.run); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("Heartbeat by %s for %s, not the holder: %v, want ErrLockLost", who.owner, who.run, err)
		}
		if err := s.ReleaseLock(ctx, "staging", who.owner, who.run); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("ReleaseLock by %s for %s, not the holder: %v, want ErrLockLost", who.owner, who.run, err)
		}
	}
	checkLock(t, holder(t, s, "staging").Lock, "staging", alice, "r-1", t0, t3)

	// Release, then someone else takes it at once.
	if err := s.ReleaseLock(ctx, "staging", alice, "r-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLock(ctx, "staging", alice, "r-1"); err != nil {
		t.Errorf("releasing a free lock: %v", err)
	}
	if err := s.Heartbeat(ctx, "staging", alice, "r-1"); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("Heartbeat after release: %v, want ErrLockLost", err)
	}
	t4 := clk.Advance(time.Second)
	if l, err := s.AcquireLock(ctx, "staging", carol, "r-3", stale); err != nil {
		t.Errorf("AcquireLock after release: %v", err)
	} else {
		checkLock(t, l, "staging", carol, "r-3", t4, t4)
	}

	// Bad arguments.
	for _, tt := range []struct {
		env, owner, run string
		stale           time.Duration
	}{
		{"", bob, "r-9", stale},
		{"qa", "", "r-9", stale},
		{"qa", bob, "", stale},
		{"qa", bob, "r-9", 0},
	} {
		if _, err := s.AcquireLock(ctx, tt.env, tt.owner, tt.run, tt.stale); err == nil {
			t.Errorf("AcquireLock(%q, %q, %q, %v) succeeded", tt.env, tt.owner, tt.run, tt.stale)
		}
	}
}

func testStaleTakeover(t *testing.T, db Opener) {
	clk := newClock()
	s, other := db(clk.Now), db(clk.Now) // alice's process and bob's
	const stale = 30 * time.Second
	t0 := clk.Now()
	if _, err := s.AcquireLock(ctx, "staging", alice, "r-1", stale); err != nil {
		t.Fatal(err)
	}

	// Fresh: no takeover.
	clk.Advance(stale)
	_, err := other.TakeOverLock(ctx, "staging", bob, "r-2", stale, stale)
	var le *store.LockedError
	if !errors.As(err, &le) || le.Stale || le.Lock.Owner != alice {
		t.Fatalf("TakeOverLock of a lock %v old: %v, want a *LockedError, not stale", stale, err)
	}

	// Stale: AcquireLock still refuses, and says so; TakeOverLock takes it.
	t1 := clk.Advance(time.Microsecond)
	_, err = other.AcquireLock(ctx, "staging", bob, "r-2", stale)
	if !errors.As(err, &le) || !le.Stale || le.Age != stale+time.Microsecond {
		t.Fatalf("AcquireLock of a stale lock: %v, want a stale *LockedError", err)
	}
	want := fmt.Sprintf("environment staging is locked by %s (run r-1) since %s (heartbeat 30s ago; stale: its owner seems gone, the lock can be taken over)",
		alice, t0.Local().Format("15:04:05"))
	if err.Error() != want {
		t.Errorf("stale LockedError:\n got %q\nwant %q", err, want)
	}
	l, err := other.TakeOverLock(ctx, "staging", bob, "r-2", stale, stale)
	if err != nil {
		t.Fatalf("TakeOverLock of a stale lock: %v", err)
	}
	checkLock(t, l, "staging", bob, "r-2", t1, t1)

	// Alice's process wakes up: it has lost the lock and cannot free bob's.
	if err := s.Heartbeat(ctx, "staging", alice, "r-1"); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("Heartbeat after a takeover: %v, want ErrLockLost", err)
	}
	if err := s.ReleaseLock(ctx, "staging", alice, "r-1"); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("ReleaseLock after a takeover: %v, want ErrLockLost", err)
	}
	if _, err := s.AcquireLock(ctx, "staging", alice, "r-1", stale); !errors.As(err, &le) || le.Lock.Owner != bob {
		t.Errorf("AcquireLock by the old holder after a takeover: %v, want locked by bob", err)
	}
	if _, err := s.TakeOverLock(ctx, "staging", alice, "r-1", stale, stale); !errors.As(err, &le) || le.Lock.Owner != bob {
		t.Errorf("TakeOverLock back of a fresh lock: %v, want locked by bob", err)
	}
	checkLock(t, holder(t, s, "staging").Lock, "staging", bob, "r-2", t1, t1)
	if err := other.Heartbeat(ctx, "staging", bob, "r-2"); err != nil {
		t.Errorf("Heartbeat by the new holder: %v", err)
	}

	// The same run resumed by another process takes over its own stale lock.
	clk.Advance(time.Hour)
	if l, err := s.TakeOverLock(ctx, "staging", carol, "r-2", stale, stale); err != nil || l.Owner != carol || l.RunID != "r-2" {
		t.Errorf("TakeOverLock for the same run by a new process: %+v, %v", l, err)
	}
	if err := other.Heartbeat(ctx, "staging", bob, "r-2"); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("Heartbeat of the old process of a resumed run: %v, want ErrLockLost", err)
	}

	// TakeOverLock of a free lock, or of one's own, just takes it.
	t2 := clk.Now()
	if l, err := s.TakeOverLock(ctx, "production", alice, "r-4", stale, stale); err != nil {
		t.Errorf("TakeOverLock of a free lock: %v", err)
	} else {
		checkLock(t, l, "production", alice, "r-4", t2, t2)
	}
	t3 := clk.Advance(time.Second)
	if l, err := s.TakeOverLock(ctx, "production", alice, "r-4", stale, stale); err != nil {
		t.Errorf("TakeOverLock of one's own lock: %v", err)
	} else {
		checkLock(t, l, "production", alice, "r-4", t2, t3)
	}
}

// testLockExclusivity: many contenders on two handles (as two processes);
// exactly one wins, the others are told who did. Then the same for a
// takeover of the winner's stale lock.
func testLockExclusivity(t *testing.T, db Opener) {
	clk := newClock()
	handles := []store.Store{db(clk.Now), db(clk.Now)}
	const contenders, stale = 16, 30 * time.Second

	race := func(round string, take func(s store.Store, owner, run string) (store.Lock, error)) string {
		t.Helper()
		var (
			wg      sync.WaitGroup
			ready   = make(chan struct{})
			locks   = make([]store.Lock, contenders)
			errs    = make([]error, contenders)
			winners []string
		)
		for i := range contenders {
			wg.Go(func() {
				<-ready
				locks[i], errs[i] = take(handles[i%2], fmt.Sprintf("%s-%d@host pid %d", round, i, i), fmt.Sprintf("r-%s-%d", round, i))
			})
		}
		close(ready)
		wg.Wait()
		for i, err := range errs {
			if err == nil {
				winners = append(winners, locks[i].RunID)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("%s: %d contenders got the lock (%v), want exactly 1", round, len(winners), winners)
		}
		for i, err := range errs {
			var le *store.LockedError
			if err != nil && (!errors.As(err, &le) || le.Lock.RunID != winners[0]) {
				t.Errorf("%s: contender %d: %v; want a *LockedError naming %s", round, i, err, winners[0])
			}
		}
		if le := holder(t, handles[0], "staging"); le.Lock.RunID != winners[0] {
			t.Errorf("%s: lock held by %s, but %s won", round, le.Lock.RunID, winners[0])
		}
		return winners[0]
	}

	race("acquire", func(s store.Store, owner, run string) (store.Lock, error) {
		return s.AcquireLock(ctx, "staging", owner, run, stale)
	})
	clk.Advance(time.Minute)
	race("takeover", func(s store.Store, owner, run string) (store.Lock, error) {
		return s.TakeOverLock(ctx, "staging", owner, run, stale, stale)
	})
}

// testReopen: the journal of a run, and a held lock, survive closing the
// database and opening it again (a deploy killed and resumed).
func testReopen(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	r, err := s.CreateRun(ctx, store.Run{Env: "staging", Version: "v2", Plan: []byte(`{"stages": []}`), Owner: alice})
	if err != nil {
		t.Fatal(err)
	}
	task := store.TaskRecord{RunID: r.ID, Stage: "update-staging-1", Job: "job-1", Kind: "detach", Host: "staging-1"}
	if task, err = s.StartTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	ev, err := s.AppendEvent(ctx, store.Event{RunID: r.ID, Host: "staging-1", Type: "detach"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Approve(ctx, r.ID, "promote", "bob")
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.AcquireLock(ctx, "staging", alice, r.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = db(clk.Now)
	got, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, got, r)
	checkTasks(t, s, r.ID, []store.TaskRecord{task})
	if events, err := s.Events(ctx, r.ID, 0); err != nil || len(events) != 1 || events[0].Seq != ev.Seq || events[0].Type != "detach" {
		t.Errorf("Events after reopen = %+v, %v; want [%+v]", events, err, ev)
	}
	if got, ok, err := s.Approved(ctx, r.ID, "promote"); err != nil || !ok || got.By != a.By {
		t.Errorf("Approved after reopen = %+v, %v, %v; want %+v", got, ok, err, a)
	}
	checkLock(t, holder(t, s, "staging").Lock, "staging", alice, r.ID, l.Since, l.Heartbeat)
	if err := s.Heartbeat(ctx, "staging", alice, r.ID); err != nil {
		t.Errorf("Heartbeat after reopen: %v", err)
	}
	// And the next event continues the sequence.
	if ev, err := s.AppendEvent(ctx, store.Event{RunID: r.ID, Type: "info"}); err != nil || ev.Seq != 2 {
		t.Errorf("AppendEvent after reopen: seq %d, %v; want 2", ev.Seq, err)
	}
}
