package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// launched is what launch learns before it answers: the run that started,
// or that there was nothing to do.
type launched struct {
	run         store.Run
	nothingToDo bool
}

// launch executes a run on this replica in the background: a deploy, a
// resume or a rollback, through internal/deploy. It returns once the run
// exists in the journal (or was refused, or had nothing to do); the run
// goes on after the request that asked for it.
//
// runID, when known (a resume, a rollback), is claimed here first: one
// replica never executes a run twice at once.
func (s *Server) launch(ctx context.Context, what, runID string, do func(ctx context.Context, o deploy.Options) (*deploy.Outcome, error)) (launched, error) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return launched{}, errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "the server is shutting down: start the run on another replica")
	}
	if runID != "" {
		if s.local[runID] {
			s.mu.Unlock()
			return launched{}, errorf(http.StatusConflict, api.CodeConflict, "run %s is being executed by this server already", runID)
		}
		s.local[runID] = true
	}
	s.runs.Add(1)
	s.mu.Unlock()
	started := make(chan string, 1)
	type result struct {
		out *deploy.Outcome
		err error
	}
	done := make(chan result, 1)
	o := deploy.Options{Config: s.deploy, Store: s.st, Lease: time.Duration(s.cfg.Lease),
		Warn: &logWriter{log: s.log, what: what}}
	begun := "" // the run that began; set and read on the run's goroutine
	o.OnStart = func(st deploy.Start) {
		if begun == "" {
			s.metrics.running.Inc()
		}
		begun = st.RunID
		s.mu.Lock()
		s.local[st.RunID] = true
		s.mu.Unlock()
		select {
		case started <- st.RunID:
		default: // said once already
		}
	}
	go func() {
		defer s.runs.Done()
		began := time.Now()
		out, err := do(s.runCtx, o)
		// A run that began and was taken over ends with no outcome: its ID
		// is the one it began with.
		id := runID
		if begun != "" {
			id = begun
		}
		if out != nil && out.Run.ID != "" {
			id = out.Run.ID
		}
		s.mu.Lock()
		delete(s.local, id)
		s.mu.Unlock()
		s.metrics.forgetRun(id)
		if begun != "" {
			s.metrics.running.Dec()
		}
		if out != nil && out.Run.ID != "" {
			s.metrics.runEnded(out, time.Since(began))
			s.log.Info("run ended", "run", out.Run.ID, "env", out.Run.Env, "status", out.Run.Status, "what", what)
		}
		switch {
		case errors.Is(err, engine.ErrTakenOver):
			s.log.Warn("another replica took the run over: stopped it here, undoing nothing", "run", id, "what", what, "err", err)
		case err != nil:
			s.log.Warn("run not started", "what", what, "err", err)
		}
		done <- result{out, err}
	}()
	// The wait outlives the request that asked: a client gone before the
	// run began must not leave a run nobody audited. deploy bounds how long
	// a run takes to begin (its setup and looks have deadlines).
	ctx = context.WithoutCancel(ctx)
	select {
	case id := <-started:
		r, err := s.st.GetRun(ctx, id)
		return launched{run: r}, err
	case res := <-done:
		switch {
		case res.err != nil:
			return launched{}, res.err
		case res.out.NothingToDo:
			return launched{nothingToDo: true}, nil
		}
		return launched{run: res.out.Run}, nil // it ended before it began: the verifier could not start
	}
}

// logWriter turns internal/deploy's warnings into log lines.
type logWriter struct {
	log  interface{ Warn(string, ...any) }
	what string
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.log.Warn(strings.TrimSpace(string(p)), "what", l.what)
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// isLocal reports whether this replica executes the run.
func (s *Server) isLocal(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local[id]
}

// takeOverLoop looks, a few times per lease, for runs whose executor
// stopped beating its lease (a replica that died, a CLI killed) and
// resumes them here from the journal, as `zerodown resume` would. Of
// several replicas that try at once, the store lets exactly one take the
// lock; the others are refused and leave the run alone.
func (s *Server) takeOverLoop(ctx context.Context) {
	lease := time.Duration(s.cfg.Lease)
	tick := time.NewTicker(max(lease/5, 200*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.takeOverStale(ctx, lease)
	}
}

func (s *Server) takeOverStale(ctx context.Context, lease time.Duration) {
	locks, err := s.st.Locks(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("read the locks", "err", err)
		}
		return
	}
	running, err := s.st.QueryRuns(ctx, store.RunQuery{Status: store.RunRunning, Brief: true})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("read the running runs", "err", err)
		}
		return
	}
	for _, c := range orphans(locks, running, lease) {
		if s.isLocal(c.runID) || !s.retryDue(c.runID) {
			continue
		}
		run, err := s.st.GetRun(ctx, c.runID)
		if err != nil || run.Status != store.RunRunning {
			continue
		}
		if _, ok := s.deploy.Environments[run.Env]; !ok {
			continue // another config's environment
		}
		why := fmt.Sprintf("from %s, whose heartbeat was %s old", c.owner, c.age.Round(time.Millisecond))
		if c.age < 0 {
			why = fmt.Sprintf("from %s, which let go of its lock without ending it", c.owner)
		}
		s.log.Warn("taking over a run whose executor is gone", "run", run.ID, "env", run.Env, "why", why)
		lr, err := s.launch(ctx, "take over "+run.ID, run.ID, func(ctx context.Context, o deploy.Options) (*deploy.Outcome, error) {
			return deploy.Resume(ctx, o, run.ID)
		})
		var refused *deploy.RefusedError
		switch {
		case errors.As(err, &refused), errors.As(err, new(*httpError)):
			// Another replica was quicker, or this one has it already.
		case err != nil:
			next := s.retryLater(run.ID, lease)
			s.log.Error("take over", "run", run.ID, "err", err, "again in", next)
		default:
			s.retryDone(run.ID)
			s.metrics.takeovers.Inc()
			s.audit(ctx, nil, "server", "run.takeover", lr.run.ID, why)
		}
	}
}

// orphan is a run whose executor is gone.
type orphan struct {
	runID, owner string
	age          time.Duration // -1: the run holds no lock at all
}

// orphans are the runs to take over: those whose lock's heartbeat is older
// than its holder's lease (lease, for a lock that stored none), and those
// still running whose environment no lock holds.
func orphans(locks []store.HeldLock, running []store.Run, lease time.Duration) []orphan {
	var out []orphan
	held := map[string]bool{}
	for _, l := range locks {
		held[l.Env] = true
		if l.Expired(l.Age, lease) {
			out = append(out, orphan{l.RunID, l.Owner, l.Age})
		}
	}
	// A run still marked running whose environment no lock holds was left
	// by an executor that let go of the lock without ending it (its resume
	// failed half-way): nobody's lease will run out, so it is taken here.
	for _, r := range running {
		if !held[r.Env] {
			out = append(out, orphan{r.ID, r.Owner, -1})
		}
	}
	return out
}

// A takeover that fails (an agent down, the artifact missing here) is
// tried again later, backing off from a lease to ten, not every look.
func (s *Server) retryDue(runID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.retries[runID]
	return !ok || !time.Now().Before(r.next)
}

func (s *Server) retryLater(runID string, lease time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.retries[runID]
	if r == nil {
		r = &retry{wait: lease}
		s.retries[runID] = r
	} else {
		r.wait = min(2*r.wait, 10*lease)
	}
	r.next = time.Now().Add(r.wait)
	return r.wait
}

func (s *Server) retryDone(runID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.retries, runID)
}

// retry is when a failed takeover is tried again.
type retry struct {
	next time.Time
	wait time.Duration
}

// exitCode is what `zerodown deploy` exits with for a run that ended this
// way (docs/deploy.md): the CLI against a server exits the same.
func exitCode(st store.RunStatus) *int {
	code := 1
	switch st {
	case store.RunRunning:
		return nil
	case store.RunSucceeded:
		code = 0
	case store.RunNeedsAttention:
		code = 3
	}
	return &code
}

func runJSON(r store.Run) api.Run {
	out := api.Run{ID: r.ID, Env: r.Env, Pipeline: r.Pipeline, Version: r.Version, SHA256: r.SHA256, Status: string(r.Status),
		StartedAt: r.StartedAt, Owner: r.Owner, Error: r.Error, Abort: r.Abort, AbortBy: r.AbortBy, PromotedFrom: r.PromotedFrom,
		ExitCode: exitCode(r.Status)}
	if !r.EndedAt.IsZero() {
		e := r.EndedAt
		out.EndedAt = &e
	}
	return out
}

func taskJSON(t store.TaskRecord) api.Task {
	out := api.Task{Stage: t.Stage, Job: t.Job, Index: t.Index, Kind: t.Kind, Host: t.Host, Status: string(t.Status), Error: t.Error, Attempt: t.Attempt}
	if !t.StartedAt.IsZero() {
		v := t.StartedAt
		out.StartedAt = &v
	}
	if !t.EndedAt.IsZero() {
		v := t.EndedAt
		out.EndedAt = &v
	}
	return out
}

// notFoundRun turns a store's ErrNotFound into the API's.
func notFoundRun(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no run %s", id)
	}
	return err
}
