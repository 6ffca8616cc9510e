package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zerodown/zerodown/internal/store"
)

// AcquireLock implements store.Store.
func (s *Store) AcquireLock(ctx context.Context, env, owner, runID string, lease time.Duration) (store.Lock, error) {
	return s.lock(ctx, env, owner, runID, lease, 0, false)
}

// TakeOverLock implements store.Store.
func (s *Store) TakeOverLock(ctx context.Context, env, owner, runID string, lease, staleAfter time.Duration) (store.Lock, error) {
	return s.lock(ctx, env, owner, runID, lease, staleAfter, true)
}

func (s *Store) lock(ctx context.Context, env, owner, runID string, lease, staleAfter time.Duration, takeOver bool) (store.Lock, error) {
	if err := store.CheckLock(env, owner, runID, lease, staleAfter, takeOver); err != nil {
		return store.Lock{}, err
	}
	what := store.LockVerb(takeOver)
	// The row can vanish between the insert that found it and the read
	// that locks it (its holder released it): then try again.
	for range 10 {
		l, err := s.lockTx(ctx, env, owner, runID, lease, staleAfter, takeOver)
		if errors.Is(err, errGone) {
			continue
		}
		var locked *store.LockedError
		if err != nil && !errors.As(err, &locked) {
			return store.Lock{}, fmt.Errorf("%s lock of environment %s: %w", what, env, err)
		}
		return l, err // a *LockedError says it all
	}
	return store.Lock{}, fmt.Errorf("%s lock of environment %s: it was released and taken again ten times in a row", what, env)
}

var errGone = errors.New("lock row released meanwhile")

// lockTx takes a free lock with one insert; otherwise it reads the holder's
// row FOR UPDATE, which holds it until the commit, so of any number of
// replicas exactly one finds the lock free (or stale) and takes it.
func (s *Store) lockTx(ctx context.Context, env, owner, runID string, lease, staleAfter time.Duration, takeOver bool) (store.Lock, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return store.Lock{}, err
	}
	defer func() { _ = tx.Rollback(ctx) }()

	now := store.Micro(s.now())
	mine := store.Lock{Env: env, Owner: owner, RunID: runID, Since: now, Heartbeat: now, Lease: lease}
	// A concurrent insert of the same env makes this one wait for its
	// commit, then do nothing.
	tag, err := tx.Exec(ctx, `INSERT INTO locks (env, owner, run_id, since, heartbeat, lease_us) VALUES ($1, $2, $3, $4, $4, $5)
ON CONFLICT (env) DO NOTHING`, env, owner, runID, now, lease.Microseconds())
	if err != nil {
		return store.Lock{}, err
	}
	if tag.RowsAffected() == 0 {
		cur, err := readLock(ctx, tx, env, " FOR UPDATE")
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return store.Lock{}, errGone
		case err != nil:
			return store.Lock{}, err
		}
		refresh, err := store.Held(cur, owner, runID, now, lease, staleAfter, takeOver)
		switch {
		case err != nil:
			return store.Lock{}, err
		case refresh:
			mine.Since = cur.Since
			_, err = tx.Exec(ctx, `UPDATE locks SET heartbeat = $1, lease_us = $2 WHERE env = $3`, now, lease.Microseconds(), env)
		default:
			_, err = tx.Exec(ctx, `UPDATE locks SET owner = $1, run_id = $2, since = $3, heartbeat = $3, lease_us = $4 WHERE env = $5`,
				owner, runID, now, lease.Microseconds(), env)
		}
		if err != nil {
			return store.Lock{}, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return store.Lock{}, err
	}
	return mine, nil
}

// readLock reads env's lock; suffix is "" or " FOR UPDATE".
func readLock(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, env, suffix string) (store.Lock, error) {
	l := store.Lock{Env: env}
	var lease int64
	err := q.QueryRow(ctx, `SELECT owner, run_id, since, heartbeat, lease_us FROM locks WHERE env = $1`+suffix, env).
		Scan(&l.Owner, &l.RunID, &l.Since, &l.Heartbeat, &lease)
	l.Since, l.Heartbeat, l.Lease = l.Since.UTC(), l.Heartbeat.UTC(), time.Duration(lease)*time.Microsecond
	return l, err
}

// Heartbeat implements store.Store.
func (s *Store) Heartbeat(ctx context.Context, env, owner, runID string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE locks SET heartbeat = $1 WHERE env = $2 AND owner = $3 AND run_id = $4`,
		store.Micro(s.now()), env, owner, runID)
	if err == nil && tag.RowsAffected() == 0 {
		err = s.lost(ctx, env)
	}
	if err != nil {
		return fmt.Errorf("heartbeat of the lock of environment %s for run %s: %w", env, runID, err)
	}
	return nil
}

// ReleaseLock implements store.Store.
func (s *Store) ReleaseLock(ctx context.Context, env, owner, runID string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM locks WHERE env = $1 AND owner = $2 AND run_id = $3`, env, owner, runID)
	if err == nil && tag.RowsAffected() == 0 {
		if err = s.lost(ctx, env); errors.Is(err, errFree) {
			err = nil // already released
		}
	}
	if err != nil {
		return fmt.Errorf("release the lock of environment %s for run %s: %w", env, runID, err)
	}
	return nil
}

var errFree = fmt.Errorf("%w: the environment is not locked", store.ErrLockLost)

// lost says who holds the lock that the caller lost.
func (s *Store) lost(ctx context.Context, env string) error {
	cur, err := readLock(ctx, s.pool, env, "")
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return errFree
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: now held by %s (run %s) since %s", store.ErrLockLost,
		cur.Owner, cur.RunID, cur.Since.Local().Format(time.DateTime))
}

// Locks implements store.Store. Environments sort bytewise, as in SQLite,
// whatever the database's collation.
func (s *Store) Locks(ctx context.Context) ([]store.HeldLock, error) {
	now := store.Micro(s.now())
	rows, err := s.pool.Query(ctx, `SELECT env, owner, run_id, since, heartbeat, lease_us FROM locks ORDER BY env COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	locks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.HeldLock, error) {
		var (
			l     store.HeldLock
			lease int64
		)
		err := row.Scan(&l.Env, &l.Owner, &l.RunID, &l.Since, &l.Heartbeat, &lease)
		l.Since, l.Heartbeat, l.Lease = l.Since.UTC(), l.Heartbeat.UTC(), time.Duration(lease)*time.Microsecond
		l.Age = now.Sub(l.Heartbeat)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return locks, nil
}
