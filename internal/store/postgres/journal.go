package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zerodown/zerodown/internal/store"
)

// briefColumns are a run's columns but its plan and spec, which lists
// (QueryRuns with Brief) leave out.
const (
	briefColumns = `id, env, pipeline, version, artifact, sha256, status, started_at, ended_at, owner, error, abort, promoted_from, abort_by, abort_at`
	runColumns   = briefColumns + `, plan, spec`
)

// runsChannel is where the store NOTIFYs the changes of runs (see WatchRuns).
const runsChannel = "zerodown_runs"

// CreateRun implements store.Store.
func (s *Store) CreateRun(ctx context.Context, r store.Run) (store.Run, error) {
	if r.Status == "" {
		r.Status = store.RunRunning
	}
	if err := r.Check(); err != nil {
		return store.Run{}, fmt.Errorf("create run: %w", err)
	}
	r.StartedAt = s.nowOr(r.StartedAt)
	r.EndedAt = store.Micro(r.EndedAt)
	r.AbortAt = store.Micro(r.AbortAt)
	generated := r.ID == ""
	for attempt := 0; ; attempt++ {
		if generated {
			r.ID = store.NewRunID(r.StartedAt)
		}
		_, err := s.pool.Exec(ctx, `WITH created AS (
	INSERT INTO runs (`+runColumns+`)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
	RETURNING id
)
`+notifyChanged("created"),
			r.ID, r.Env, r.Pipeline, r.Version, r.Artifact, r.SHA256, string(r.Status),
			r.StartedAt, ts(r.EndedAt), r.Owner, r.Error, r.Abort, r.PromotedFrom, r.AbortBy, ts(r.AbortAt),
			blob(r.Plan), blob(r.Spec))
		if pgCode(err) == uniqueViolation {
			if generated && attempt < 10 {
				continue // two runs in the same second drew the same suffix
			}
			err = store.ErrExists
		}
		if err != nil {
			return store.Run{}, fmt.Errorf("create run %s: %w", r.ID, err)
		}
		return r, nil
	}
}

// GetRun implements store.Store.
func (s *Store) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE id = $1`, id), false)
	if err != nil {
		return store.Run{}, fmt.Errorf("read run %s: %w", id, notFound(err))
	}
	return r, nil
}

// ListRuns implements store.Store.
func (s *Store) ListRuns(ctx context.Context, env string, limit int) ([]store.Run, error) {
	return s.queryRuns(ctx, "list runs", store.RunQuery{Env: env, Limit: limit})
}

// QueryRuns implements store.Store.
func (s *Store) QueryRuns(ctx context.Context, q store.RunQuery) ([]store.Run, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	return s.queryRuns(ctx, "query runs", q)
}

func (s *Store) queryRuns(ctx context.Context, what string, q store.RunQuery) ([]store.Run, error) {
	var after *cursor
	if q.Before != "" {
		var c cursor
		err := s.pool.QueryRow(ctx, `SELECT started_at, id FROM runs WHERE id = $1`, q.Before).Scan(&c.startedAt, &c.id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, q.BeforeNotFound()
		}
		if err != nil {
			return nil, fmt.Errorf("%s before run %s: %w", what, q.Before, err)
		}
		after = &c
	}
	query, args := runQuery(q, after)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Run, error) { return scanRun(row, q.Brief) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return runs, nil
}

// cursor is where the previous page of runs ended.
type cursor struct {
	startedAt time.Time
	id        string
}

// runQuery is the SELECT of q's runs that sort after the cursor (none: from
// the newest). Each filter is an equality, so an index on (filter,
// started_at DESC, id DESC) gives the rows in order, and the row comparison
// with the cursor is a range on it: a page reads about as many rows as it
// returns, however many runs there are.
func runQuery(q store.RunQuery, after *cursor) (string, []any) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	for _, f := range []struct{ column, value string }{
		{"env", q.Env}, {"status", string(q.Status)}, {"version", q.Version},
	} {
		if f.value != "" {
			where = append(where, f.column+" = "+arg(f.value))
		}
	}
	if after != nil {
		where = append(where, "(started_at, id) < ("+arg(after.startedAt)+", "+arg(after.id)+")")
	}
	columns := runColumns
	if q.Brief {
		columns = briefColumns
	}
	query := `SELECT ` + columns + ` FROM runs`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	var limit any // LIMIT NULL: all
	if q.Limit > 0 {
		limit = q.Limit
	}
	return query + ` ORDER BY started_at DESC, id DESC LIMIT ` + arg(limit), args
}

// scanRun reads the runColumns of a run, or its briefColumns.
func scanRun(row pgx.Row, brief bool) (store.Run, error) {
	var (
		r                       store.Run
		status                  string
		started, ended, abortAt *time.Time
	)
	dest := []any{&r.ID, &r.Env, &r.Pipeline, &r.Version, &r.Artifact, &r.SHA256, &status,
		&started, &ended, &r.Owner, &r.Error, &r.Abort, &r.PromotedFrom, &r.AbortBy, &abortAt}
	if !brief {
		dest = append(dest, &r.Plan, &r.Spec)
	}
	err := row.Scan(dest...)
	r.Status = store.RunStatus(status)
	r.StartedAt, r.EndedAt, r.AbortAt = fromTS(started), fromTS(ended), fromTS(abortAt)
	return r, err
}

// notifyChanged is the end of a statement whose CTE named cte returns the
// id of each run it wrote: it tells WatchRuns that the run changed ("<id>
// 0"). NOTIFY is delivered at commit, so a listener never hears of a
// change it cannot read yet, nor of one rolled back.
func notifyChanged(cte string) string {
	return `SELECT pg_notify('` + runsChannel + `', id || ' 0') FROM ` + cte
}

// UpdateRun implements store.Store.
func (s *Store) UpdateRun(ctx context.Context, id string, u store.RunUpdate) error {
	if !u.Status.Valid() {
		return fmt.Errorf("update run %s: unknown status %q", id, u.Status)
	}
	// The SELECT's tag counts the runs updated.
	tag, err := s.pool.Exec(ctx, `WITH updated AS (
	UPDATE runs SET status = $1, ended_at = $2, error = $3,
	owner = CASE WHEN $4 = '' THEN owner ELSE $4 END WHERE id = $5
	RETURNING id
)
`+notifyChanged("updated"),
		string(u.Status), ts(store.Micro(u.EndedAt)), u.Error, u.Owner, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	return nil
}

// RequestAbort implements store.Store. Who asked and when are the first
// request's.
func (s *Store) RequestAbort(ctx context.Context, id, by string) error {
	tag, err := s.pool.Exec(ctx, `WITH updated AS (
	UPDATE runs SET abort = true,
	abort_by = CASE WHEN abort THEN abort_by ELSE $1 END,
	abort_at = CASE WHEN abort THEN abort_at ELSE $2 END
	WHERE id = $3
	RETURNING id
)
`+notifyChanged("updated"), by, s.nowOr(time.Time{}), id)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("request abort of run %s: %w", id, err)
	}
	return nil
}

const taskColumns = `run_id, stage, job, idx, kind, host, status, started_at, ended_at, error, attempt`

// StartTask implements store.Store.
func (s *Store) StartTask(ctx context.Context, t store.TaskRecord) (store.TaskRecord, error) {
	if err := t.Check(); err != nil {
		return store.TaskRecord{}, fmt.Errorf("start task %s: %w", t.Name(), err)
	}
	t.Status = store.TaskRunning
	t.StartedAt = s.nowOr(t.StartedAt)
	t.EndedAt, t.Error = time.Time{}, ""
	err := s.pool.QueryRow(ctx, `INSERT INTO tasks (`+taskColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, NULL, '', 1)
ON CONFLICT (run_id, stage, job, idx) DO UPDATE SET
	kind = excluded.kind, host = excluded.host, status = 'running',
	started_at = excluded.started_at, ended_at = NULL, error = '', attempt = tasks.attempt + 1
RETURNING attempt`,
		t.RunID, t.Stage, t.Job, t.Index, t.Kind, t.Host, t.StartedAt).Scan(&t.Attempt)
	if err != nil {
		return store.TaskRecord{}, fmt.Errorf("start task %s: %w", t.Name(), noRun(err))
	}
	return t, nil
}

// FinishTask implements store.Store.
func (s *Store) FinishTask(ctx context.Context, t store.TaskRecord) error {
	err := t.Check()
	if err == nil && !t.Status.Finished() {
		err = fmt.Errorf("status %q is not an outcome", t.Status)
	}
	if err != nil {
		return fmt.Errorf("finish task %s: %w", t.Name(), err)
	}
	t.EndedAt = s.nowOr(t.EndedAt)
	if t.Status == store.TaskSkipped || t.Status == store.TaskCancelled {
		// May never have started: insert it with Attempt 0.
		if t.StartedAt.IsZero() {
			t.StartedAt = t.EndedAt
		}
		_, err = s.pool.Exec(ctx, `INSERT INTO tasks (`+taskColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)
ON CONFLICT (run_id, stage, job, idx) DO UPDATE SET
	status = excluded.status, ended_at = excluded.ended_at, error = excluded.error`,
			t.RunID, t.Stage, t.Job, t.Index, t.Kind, t.Host, string(t.Status),
			store.Micro(t.StartedAt), t.EndedAt, t.Error)
		err = noRun(err)
	} else {
		tag, uerr := s.pool.Exec(ctx, `UPDATE tasks SET status = $1, ended_at = $2, error = $3
WHERE run_id = $4 AND stage = $5 AND job = $6 AND idx = $7`,
			string(t.Status), t.EndedAt, t.Error, t.RunID, t.Stage, t.Job, t.Index)
		err = uerr
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("it was never started: %w", store.ErrNotFound)
		}
	}
	if err != nil {
		return fmt.Errorf("finish task %s: %w", t.Name(), err)
	}
	return nil
}

// Tasks implements store.Store.
func (s *Store) Tasks(ctx context.Context, runID string) ([]store.TaskRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE run_id = $1
ORDER BY started_at, id`, runID)
	if err != nil {
		return nil, fmt.Errorf("read tasks of run %s: %w", runID, err)
	}
	tasks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.TaskRecord, error) {
		var (
			t              store.TaskRecord
			status         string
			started, ended *time.Time
		)
		err := row.Scan(&t.RunID, &t.Stage, &t.Job, &t.Index, &t.Kind, &t.Host, &status,
			&started, &ended, &t.Error, &t.Attempt)
		t.Status = store.TaskStatus(status)
		t.StartedAt, t.EndedAt = fromTS(started), fromTS(ended)
		return t, err
	})
	if err == nil && len(tasks) == 0 {
		err = s.runExists(ctx, runID)
	}
	if err != nil {
		return nil, fmt.Errorf("read tasks of run %s: %w", runID, err)
	}
	return tasks, nil
}

// AppendEvent implements store.Store.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if err := e.Check(); err != nil {
		return store.Event{}, err
	}
	e.At = s.nowOr(e.At)
	// One statement, so one transaction: the run's counter row stays locked
	// from the increment to the commit, so concurrent appends (of any
	// replica) take their turn, and a failed insert gives its number back.
	// Its NOTIFY ("<run> <seq>", see WatchRuns) is delivered at the commit,
	// when the event can be read, and not at all if it is rolled back.
	err := s.pool.QueryRow(ctx, `WITH next AS (
	UPDATE runs SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq
), appended AS (
	INSERT INTO events (run_id, seq, at, host, type, message, data)
	SELECT $1, last_seq, $2, $3, $4, $5, $6 FROM next
	RETURNING seq
)
SELECT seq, pg_notify('`+runsChannel+`', $1 || ' ' || seq) FROM appended`,
		e.RunID, e.At, e.Host, e.Type, e.Message, blob(e.Data)).Scan(&e.Seq, nil)
	if errors.Is(err, pgx.ErrNoRows) {
		err = fmt.Errorf("run %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Event{}, fmt.Errorf("append %s event to run %s: %w", e.Type, e.RunID, err)
	}
	return e, nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, runID string, afterSeq int64) ([]store.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT run_id, seq, at, host, type, message, data
FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq`, runID, afterSeq)
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", runID, err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		var (
			e  store.Event
			at time.Time
		)
		err := row.Scan(&e.RunID, &e.Seq, &at, &e.Host, &e.Type, &e.Message, &e.Data)
		e.At = at.UTC()
		return e, err
	})
	if err == nil && len(events) == 0 {
		err = s.runExists(ctx, runID)
	}
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", runID, err)
	}
	return events, nil
}

// Approve implements store.Store.
func (s *Store) Approve(ctx context.Context, runID, stage, by string) (store.Approval, error) {
	if by == "" {
		return store.Approval{}, fmt.Errorf("approve stage %s of run %s: no approver", stage, runID)
	}
	a := store.Approval{RunID: runID, Stage: stage}
	// The no-op update makes RETURNING give the first approval's row.
	err := s.pool.QueryRow(ctx, `INSERT INTO approvals (run_id, stage, approved_by, approved_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (run_id, stage) DO UPDATE SET approved_by = approvals.approved_by
RETURNING approved_by, approved_at`,
		runID, stage, by, s.nowOr(time.Time{})).Scan(&a.By, &a.At)
	if err != nil {
		return store.Approval{}, fmt.Errorf("approve stage %s of run %s: %w", stage, runID, noRun(err))
	}
	a.At = a.At.UTC()
	return a, nil
}

// Approved implements store.Store.
func (s *Store) Approved(ctx context.Context, runID, stage string) (store.Approval, bool, error) {
	a := store.Approval{RunID: runID, Stage: stage}
	err := s.pool.QueryRow(ctx, `SELECT approved_by, approved_at FROM approvals
WHERE run_id = $1 AND stage = $2`, runID, stage).Scan(&a.By, &a.At)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.runExists(ctx, runID)
		if err == nil {
			return store.Approval{}, false, nil
		}
	}
	if err != nil {
		return store.Approval{}, false, fmt.Errorf("read approval of stage %s of run %s: %w", stage, runID, err)
	}
	a.At = a.At.UTC()
	return a, true, nil
}

// runExists is nil for a known run, store.ErrNotFound for an unknown one.
func (s *Store) runExists(ctx context.Context, runID string) error {
	var one int
	return notFound(s.pool.QueryRow(ctx, `SELECT 1 FROM runs WHERE id = $1`, runID).Scan(&one))
}
