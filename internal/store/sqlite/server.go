package sqlite

// What zerodown server keeps besides runs: its API tokens and the audit log.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/zerodown/zerodown/internal/store"
)

const tokenColumns = `id, name, role, hash, created_at, created_by, revoked_at`

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	if err := t.Check(); err != nil {
		return store.Token{}, err
	}
	t.CreatedAt = s.nowOr(t.CreatedAt)
	t.RevokedAt = store.Micro(t.RevokedAt)
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Role, t.Hash, us(t.CreatedAt), t.CreatedBy, us(t.RevokedAt))
	switch code(err) {
	case 0:
		return t, nil
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return store.Token{}, t.IDInUse()
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		err = store.ErrExists // the name
	}
	return store.Token{}, fmt.Errorf("create token %s: %w", t.Name, err)
}

// GetToken implements store.Store.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("read token %s: %w", id, err)
	}
	return t, nil
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var tokens []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		tokens = append(tokens, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return tokens, nil
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string) (store.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, ?)
WHERE id = ? RETURNING `+tokenColumns, us(s.nowOr(time.Time{})), id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return t, nil
}

func scanToken(sc scanner) (store.Token, error) {
	var (
		t                store.Token
		created, revoked sql.NullInt64
	)
	err := sc.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, &created, &t.CreatedBy, &revoked)
	t.CreatedAt, t.RevokedAt = fromUs(created), fromUs(revoked)
	return t, err
}

const auditColumns = `seq, at, actor, action, target, detail, remote`

// AppendAudit implements store.Store.
func (s *Store) AppendAudit(ctx context.Context, a store.AuditEntry) (store.AuditEntry, error) {
	if err := a.Check(); err != nil {
		return store.AuditEntry{}, err
	}
	a.At = s.nowOr(a.At)
	err := s.db.QueryRowContext(ctx, `INSERT INTO audit (at, actor, action, target, detail, remote)
VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`,
		us(a.At), a.Actor, a.Action, a.Target, a.Detail, a.Remote).Scan(&a.Seq)
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("append audit entry %s by %s: %w", a.Action, a.Actor, err)
	}
	return a, nil
}

// Audit implements store.Store.
func (s *Store) Audit(ctx context.Context, beforeSeq int64, limit int) ([]store.AuditEntry, error) {
	if beforeSeq <= 0 {
		beforeSeq = math.MaxInt64
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit WHERE seq < ?
ORDER BY seq DESC LIMIT ?`, beforeSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var entries []store.AuditEntry
	for rows.Next() {
		var (
			a  store.AuditEntry
			at sql.NullInt64
		)
		if err := rows.Scan(&a.Seq, &at, &a.Actor, &a.Action, &a.Target, &a.Detail, &a.Remote); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		a.At = fromUs(at)
		entries = append(entries, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return entries, nil
}

// PutReport implements store.Store.
func (s *Store) PutReport(ctx context.Context, runID string, html []byte) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO reports (run_id, html, at) SELECT id, ?, ? FROM runs WHERE id = ?
ON CONFLICT (run_id) DO UPDATE SET html = excluded.html, at = excluded.at`, html, us(store.Micro(s.now())), runID)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = store.ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("keep the report of run %s: %w", runID, err)
	}
	return nil
}

// Report implements store.Store.
func (s *Store) Report(ctx context.Context, runID string) (store.Report, error) {
	r := store.Report{RunID: runID}
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT html, at FROM reports WHERE run_id = ?`, runID).Scan(&r.HTML, &at)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Report{}, fmt.Errorf("read the report of run %s: %w", runID, err)
	}
	r.At = fromUs(at)
	return r, nil
}

// HasReport implements store.Store.
func (s *Store) HasReport(ctx context.Context, runID string) (bool, error) {
	var has bool
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM reports WHERE run_id = ?)`, runID).Scan(&has); err != nil {
		return false, fmt.Errorf("look for the report of run %s: %w", runID, err)
	}
	return has, nil
}

// PruneRuns implements store.Store. The runs' tasks, events, approvals and
// reports go with them (ON DELETE CASCADE). Every column of the ranking is
// qualified: one the subquery did not select would silently name the
// outer DELETE's row.
func (s *Store) PruneRuns(ctx context.Context, before time.Time, keep, limit int) ([]string, error) {
	if err := store.CheckPrune(before, keep, limit); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `DELETE FROM runs WHERE id IN (
	SELECT id FROM (SELECT id, status, started_at, ended_at,
		row_number() OVER (PARTITION BY env ORDER BY started_at DESC, id DESC) AS newest
		FROM runs) AS ranked
	WHERE ranked.newest > ? AND ranked.ended_at < ? AND ranked.status NOT IN (?, ?)
	ORDER BY ranked.started_at, ranked.id LIMIT ?
) RETURNING id`, keep, us(store.Micro(before)), store.RunRunning, store.RunNeedsAttention, limit)
	if err != nil {
		return nil, fmt.Errorf("prune runs: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("prune runs: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("prune runs: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}
