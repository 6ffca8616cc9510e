package postgres

// What zerodown server keeps besides runs: its API tokens and the audit log.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zerodown/zerodown/internal/store"
)

const tokenColumns = `id, name, role, hash, created_at, created_by, revoked_at`

// tokenIDKey is the constraint behind a token ID in use (the primary key);
// the other unique one is the name.
const tokenIDKey = "tokens_pkey"

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	if err := t.Check(); err != nil {
		return store.Token{}, err
	}
	t.CreatedAt = s.nowOr(t.CreatedAt)
	t.RevokedAt = store.Micro(t.RevokedAt)
	_, err := s.pool.Exec(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		t.ID, t.Name, t.Role, t.Hash, t.CreatedAt, t.CreatedBy, ts(t.RevokedAt))
	if err == nil {
		return t, nil
	}
	if pgCode(err) == uniqueViolation {
		var e *pgconn.PgError
		if errors.As(err, &e) && e.ConstraintName == tokenIDKey {
			return store.Token{}, t.IDInUse()
		}
		err = store.ErrExists // the name
	}
	return store.Token{}, fmt.Errorf("create token %s: %w", t.Name, err)
}

// GetToken implements store.Store.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if err != nil {
		return store.Token{}, fmt.Errorf("read token %s: %w", id, notFound(err))
	}
	return t, nil
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	tokens, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Token, error) { return scanToken(row) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return tokens, nil
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string) (store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, $1)
WHERE id = $2 RETURNING `+tokenColumns, s.nowOr(time.Time{}), id))
	if err != nil {
		return store.Token{}, fmt.Errorf("revoke token %s: %w", id, notFound(err))
	}
	return t, nil
}

func scanToken(row pgx.Row) (store.Token, error) {
	var (
		t       store.Token
		revoked *time.Time
	)
	err := row.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, &t.CreatedAt, &t.CreatedBy, &revoked)
	t.CreatedAt, t.RevokedAt = t.CreatedAt.UTC(), fromTS(revoked)
	return t, err
}

// AppendAudit implements store.Store.
func (s *Store) AppendAudit(ctx context.Context, a store.AuditEntry) (store.AuditEntry, error) {
	if err := a.Check(); err != nil {
		return store.AuditEntry{}, err
	}
	a.At = s.nowOr(a.At)
	err := s.pool.QueryRow(ctx, `INSERT INTO audit (at, actor, action, target, detail, remote)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq`,
		a.At, a.Actor, a.Action, a.Target, a.Detail, a.Remote).Scan(&a.Seq)
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
	var lim any // LIMIT NULL: all
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, action, target, detail, remote FROM audit
WHERE seq < $1 ORDER BY seq DESC LIMIT $2`, beforeSeq, lim)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditEntry, error) {
		var a store.AuditEntry
		err := row.Scan(&a.Seq, &a.At, &a.Actor, &a.Action, &a.Target, &a.Detail, &a.Remote)
		a.At = a.At.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return entries, nil
}

// PutReport implements store.Store.
func (s *Store) PutReport(ctx context.Context, runID string, html []byte) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO reports (run_id, html, at) SELECT id, $1, $2 FROM runs WHERE id = $3
ON CONFLICT (run_id) DO UPDATE SET html = excluded.html, at = excluded.at`, html, store.Micro(s.now()), runID)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("keep the report of run %s: %w", runID, err)
	}
	return nil
}

// Report implements store.Store.
func (s *Store) Report(ctx context.Context, runID string) (store.Report, error) {
	r := store.Report{RunID: runID}
	err := s.pool.QueryRow(ctx, `SELECT html, at FROM reports WHERE run_id = $1`, runID).Scan(&r.HTML, &r.At)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Report{}, fmt.Errorf("read the report of run %s: %w", runID, err)
	}
	r.At = r.At.UTC()
	return r, nil
}

// HasReport implements store.Store.
func (s *Store) HasReport(ctx context.Context, runID string) (bool, error) {
	var has bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM reports WHERE run_id = $1)`, runID).Scan(&has); err != nil {
		return false, fmt.Errorf("look for the report of run %s: %w", runID, err)
	}
	return has, nil
}

// PruneRuns implements store.Store. The runs' tasks, events, approvals and
// reports go with them (ON DELETE CASCADE).
func (s *Store) PruneRuns(ctx context.Context, before time.Time, keep, limit int) ([]string, error) {
	if err := store.CheckPrune(before, keep, limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `DELETE FROM runs WHERE id IN (
	SELECT id FROM (SELECT id, status, started_at, ended_at,
		row_number() OVER (PARTITION BY env ORDER BY started_at DESC, id DESC) AS newest
		FROM runs) AS ranked
	WHERE ranked.newest > $1 AND ranked.ended_at < $2 AND ranked.status NOT IN ($3, $4)
	ORDER BY ranked.started_at, ranked.id LIMIT $5
) RETURNING id`, keep, store.Micro(before), store.RunRunning, store.RunNeedsAttention, limit)
	if err != nil {
		return nil, fmt.Errorf("prune runs: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("prune runs: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}
