package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/zerodown/zerodown/internal/store"
)

// briefColumns are a run's columns but its plan and spec, which lists
// (QueryRuns with Brief) leave out.
const (
	briefColumns = `id, env, pipeline, version, artifact, sha256, status, started_at, ended_at, owner, error, abort, promoted_from, abort_by, abort_at`
	runColumns   = briefColumns + `, plan, spec`
)

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
	generated := r.ID == ""
	for attempt := 0; ; attempt++ {
		if generated {
			r.ID = store.NewRunID(r.StartedAt)
		}
		_, err := s.db.ExecContext(ctx, `INSERT INTO runs (`+runColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Env, r.Pipeline, r.Version, r.Artifact, r.SHA256, string(r.Status),
			us(r.StartedAt), us(r.EndedAt), r.Owner, r.Error, r.Abort, r.PromotedFrom, r.AbortBy, us(store.Micro(r.AbortAt)),
			blob(r.Plan), blob(r.Spec))
		if code(err) == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
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
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id), false)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Run{}, fmt.Errorf("read run %s: %w", id, err)
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
		err := s.db.QueryRowContext(ctx, `SELECT started_at, id FROM runs WHERE id = ?`, q.Before).Scan(&c.startedAt, &c.id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, q.BeforeNotFound()
		}
		if err != nil {
			return nil, fmt.Errorf("%s before run %s: %w", what, q.Before, err)
		}
		after = &c
	}
	query, args := runQuery(q, after)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer func() { _ = rows.Close() }()
	var runs []store.Run
	for rows.Next() {
		r, err := scanRun(rows, q.Brief)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return runs, nil
}

// cursor is where the previous page of runs ended.
type cursor struct {
	startedAt int64
	id        string
}

// runQuery is the SELECT of q's runs that sort after the cursor (none: from
// the newest). Each filter is an equality, so an index on (filter,
// started_at DESC, id DESC) gives the rows in order, and the cursor is a
// range on it: a page reads about as many rows as it returns, however many
// runs there are.
func runQuery(q store.RunQuery, after *cursor) (string, []any) {
	var (
		where []string
		args  []any
	)
	for _, f := range []struct{ column, value string }{
		{"env", q.Env}, {"status", string(q.Status)}, {"version", q.Version},
	} {
		if f.value != "" {
			where = append(where, f.column+" = ?")
			args = append(args, f.value)
		}
	}
	if after != nil {
		where = append(where, "(started_at, id) < (?, ?)")
		args = append(args, after.startedAt, after.id)
	}
	columns := runColumns
	if q.Brief {
		columns = briefColumns
	}
	query := `SELECT ` + columns + ` FROM runs`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	return query + ` ORDER BY started_at DESC, id DESC LIMIT ?`, append(args, limit)
}

type scanner interface{ Scan(dest ...any) error }

// scanRun reads the runColumns of a run, or its briefColumns.
func scanRun(sc scanner, brief bool) (store.Run, error) {
	var (
		r                       store.Run
		status                  string
		started, ended, abortAt sql.NullInt64
	)
	dest := []any{&r.ID, &r.Env, &r.Pipeline, &r.Version, &r.Artifact, &r.SHA256, &status,
		&started, &ended, &r.Owner, &r.Error, &r.Abort, &r.PromotedFrom, &r.AbortBy, &abortAt}
	if !brief {
		dest = append(dest, &r.Plan, &r.Spec)
	}
	err := sc.Scan(dest...)
	r.Status = store.RunStatus(status)
	r.StartedAt, r.EndedAt, r.AbortAt = fromUs(started), fromUs(ended), fromUs(abortAt)
	return r, err
}

// UpdateRun implements store.Store.
func (s *Store) UpdateRun(ctx context.Context, id string, u store.RunUpdate) error {
	if !u.Status.Valid() {
		return fmt.Errorf("update run %s: unknown status %q", id, u.Status)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET status = ?, ended_at = ?, error = ?,
	owner = CASE WHEN ? = '' THEN owner ELSE ? END WHERE id = ?`,
		string(u.Status), us(u.EndedAt), u.Error, u.Owner, u.Owner, id)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	return nil
}

// RequestAbort implements store.Store. Who asked and when are the first
// request's.
func (s *Store) RequestAbort(ctx context.Context, id, by string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET abort = 1,
	abort_by = CASE WHEN abort = 1 THEN abort_by ELSE ? END,
	abort_at = CASE WHEN abort = 1 THEN abort_at ELSE ? END
WHERE id = ?`, by, us(s.nowOr(time.Time{})), id)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fmt.Errorf("request abort of run %s: %w", id, err)
	}
	return nil
}

// oneRow is store.ErrNotFound when an UPDATE matched no row.
func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
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
	err := s.db.QueryRowContext(ctx, `INSERT INTO tasks (`+taskColumns+`)
VALUES (?, ?, ?, ?, ?, ?, 'running', ?, NULL, '', 1)
ON CONFLICT (run_id, stage, job, idx) DO UPDATE SET
	kind = excluded.kind, host = excluded.host, status = 'running',
	started_at = excluded.started_at, ended_at = NULL, error = '', attempt = tasks.attempt + 1
RETURNING attempt`,
		t.RunID, t.Stage, t.Job, t.Index, t.Kind, t.Host, us(t.StartedAt)).Scan(&t.Attempt)
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
		_, err = s.db.ExecContext(ctx, `INSERT INTO tasks (`+taskColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (run_id, stage, job, idx) DO UPDATE SET
	status = excluded.status, ended_at = excluded.ended_at, error = excluded.error`,
			t.RunID, t.Stage, t.Job, t.Index, t.Kind, t.Host, string(t.Status),
			us(store.Micro(t.StartedAt)), us(t.EndedAt), t.Error)
		err = noRun(err)
	} else {
		var res sql.Result
		res, err = s.db.ExecContext(ctx, `UPDATE tasks SET status = ?, ended_at = ?, error = ?
WHERE run_id = ? AND stage = ? AND job = ? AND idx = ?`,
			string(t.Status), us(t.EndedAt), t.Error, t.RunID, t.Stage, t.Job, t.Index)
		if err == nil {
			if err = oneRow(res); err != nil {
				err = fmt.Errorf("it was never started: %w", err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("finish task %s: %w", t.Name(), err)
	}
	return nil
}

// Tasks implements store.Store.
func (s *Store) Tasks(ctx context.Context, runID string) ([]store.TaskRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE run_id = ?
ORDER BY started_at, id`, runID)
	if err != nil {
		return nil, fmt.Errorf("read tasks of run %s: %w", runID, err)
	}
	defer func() { _ = rows.Close() }()
	var tasks []store.TaskRecord
	for rows.Next() {
		var (
			t              store.TaskRecord
			status         string
			started, ended sql.NullInt64
		)
		if err := rows.Scan(&t.RunID, &t.Stage, &t.Job, &t.Index, &t.Kind, &t.Host, &status,
			&started, &ended, &t.Error, &t.Attempt); err != nil {
			return nil, fmt.Errorf("read tasks of run %s: %w", runID, err)
		}
		t.Status = store.TaskStatus(status)
		t.StartedAt, t.EndedAt = fromUs(started), fromUs(ended)
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tasks of run %s: %w", runID, err)
	}
	if len(tasks) == 0 {
		if err := s.runExists(ctx, runID); err != nil {
			return nil, fmt.Errorf("read tasks of run %s: %w", runID, err)
		}
	}
	return tasks, nil
}

// AppendEvent implements store.Store.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if err := e.Check(); err != nil {
		return store.Event{}, err
	}
	e.At = s.nowOr(e.At)
	// One statement: it holds the write lock from the read of the last
	// sequence number to the insert, so concurrent appends cannot collide.
	err := s.db.QueryRowContext(ctx, `INSERT INTO events (run_id, seq, at, host, type, message, data)
SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6 FROM events WHERE run_id = ?1
RETURNING seq`,
		e.RunID, us(e.At), e.Host, e.Type, e.Message, blob(e.Data)).Scan(&e.Seq)
	if err != nil {
		return store.Event{}, fmt.Errorf("append %s event to run %s: %w", e.Type, e.RunID, noRun(err))
	}
	return e, nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, runID string, afterSeq int64) ([]store.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, seq, at, host, type, message, data
FROM events WHERE run_id = ? AND seq > ? ORDER BY seq`, runID, afterSeq)
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", runID, err)
	}
	defer func() { _ = rows.Close() }()
	var events []store.Event
	for rows.Next() {
		var (
			e  store.Event
			at sql.NullInt64
		)
		if err := rows.Scan(&e.RunID, &e.Seq, &at, &e.Host, &e.Type, &e.Message, &e.Data); err != nil {
			return nil, fmt.Errorf("read events of run %s: %w", runID, err)
		}
		e.At = fromUs(at)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", runID, err)
	}
	if len(events) == 0 {
		if err := s.runExists(ctx, runID); err != nil {
			return nil, fmt.Errorf("read events of run %s: %w", runID, err)
		}
	}
	return events, nil
}

// Approve implements store.Store.
func (s *Store) Approve(ctx context.Context, runID, stage, by string) (store.Approval, error) {
	if by == "" {
		return store.Approval{}, fmt.Errorf("approve stage %s of run %s: no approver", stage, runID)
	}
	a := store.Approval{RunID: runID, Stage: stage}
	var at sql.NullInt64
	// The no-op update makes RETURNING give the first approval's row.
	err := s.db.QueryRowContext(ctx, `INSERT INTO approvals (run_id, stage, approved_by, approved_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (run_id, stage) DO UPDATE SET approved_by = approvals.approved_by
RETURNING approved_by, approved_at`,
		runID, stage, by, us(s.nowOr(time.Time{}))).Scan(&a.By, &at)
	if err != nil {
		return store.Approval{}, fmt.Errorf("approve stage %s of run %s: %w", stage, runID, noRun(err))
	}
	a.At = fromUs(at)
	return a, nil
}

// Approved implements store.Store.
func (s *Store) Approved(ctx context.Context, runID, stage string) (store.Approval, bool, error) {
	a := store.Approval{RunID: runID, Stage: stage}
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT approved_by, approved_at FROM approvals
WHERE run_id = ? AND stage = ?`, runID, stage).Scan(&a.By, &at)
	if errors.Is(err, sql.ErrNoRows) {
		err = s.runExists(ctx, runID)
		if err == nil {
			return store.Approval{}, false, nil
		}
	}
	if err != nil {
		return store.Approval{}, false, fmt.Errorf("read approval of stage %s of run %s: %w", stage, runID, err)
	}
	a.At = fromUs(at)
	return a, true, nil
}

// runExists is nil for a known run, store.ErrNotFound for an unknown one.
func (s *Store) runExists(ctx context.Context, runID string) error {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM runs WHERE id = ?`, runID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// noRun turns the foreign key failure of a write for an unknown run into
// store.ErrNotFound.
func noRun(err error) error {
	if code(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("run %w", store.ErrNotFound)
	}
	return err
}

// blob stores empty JSON as NULL, so that it reads back as nil.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
