package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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

// lock reads and writes the lock in one BEGIN IMMEDIATE transaction: it
// holds the database's write lock from the read on, so of any number of
// processes and goroutines exactly one finds the lock free (or stale) and
// takes it.
func (s *Store) lock(ctx context.Context, env, owner, runID string, lease, staleAfter time.Duration, takeOver bool) (store.Lock, error) {
	if err := store.CheckLock(env, owner, runID, lease, staleAfter, takeOver); err != nil {
		return store.Lock{}, err
	}
	l, err := s.lockTx(ctx, env, owner, runID, lease, staleAfter, takeOver)
	var locked *store.LockedError
	if err != nil && !errors.As(err, &locked) {
		return store.Lock{}, fmt.Errorf("%s lock of environment %s: %w", store.LockVerb(takeOver), env, err)
	}
	return l, err // a *LockedError says it all
}

func (s *Store) lockTx(ctx context.Context, env, owner, runID string, lease, staleAfter time.Duration, takeOver bool) (store.Lock, error) {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dataSource)
	if err != nil {
		return store.Lock{}, err
	}
	defer func() { _ = tx.Rollback() }()

	now := store.Micro(s.now())
	mine := store.Lock{Env: env, Owner: owner, RunID: runID, Since: now, Heartbeat: now, Lease: lease}
	cur, err := readLock(ctx, tx, env)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO locks (env, owner, run_id, since, heartbeat, lease_us) VALUES (?, ?, ?, ?, ?, ?)`,
			env, owner, runID, us(now), us(now), lease.Microseconds())
	case err != nil:
		return store.Lock{}, err
	default:
		var refresh bool
		if refresh, err = store.Held(cur, owner, runID, now, lease, staleAfter, takeOver); err != nil {
			return store.Lock{}, err
		}
		if refresh {
			mine.Since = cur.Since
			_, err = tx.ExecContext(ctx, `UPDATE locks SET heartbeat = ?, lease_us = ? WHERE env = ?`, us(now), lease.Microseconds(), env)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE locks SET owner = ?, run_id = ?, since = ?, heartbeat = ?, lease_us = ? WHERE env = ?`,
				owner, runID, us(now), us(now), lease.Microseconds(), env)
		}
	}
	if err != nil {
		return store.Lock{}, err
	}
	if err := tx.Commit(); err != nil {
		return store.Lock{}, err
	}
	return mine, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readLock(ctx context.Context, q querier, env string) (store.Lock, error) {
	l := store.Lock{Env: env}
	var since, hb sql.NullInt64
	var lease int64
	err := q.QueryRowContext(ctx, `SELECT owner, run_id, since, heartbeat, lease_us FROM locks WHERE env = ?`, env).
		Scan(&l.Owner, &l.RunID, &since, &hb, &lease)
	l.Since, l.Heartbeat, l.Lease = fromUs(since), fromUs(hb), time.Duration(lease)*time.Microsecond
	return l, err
}

// Heartbeat implements store.Store.
func (s *Store) Heartbeat(ctx context.Context, env, owner, runID string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE locks SET heartbeat = ? WHERE env = ? AND owner = ? AND run_id = ?`,
		us(store.Micro(s.now())), env, owner, runID)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = s.lost(ctx, env)
		}
	}
	if err != nil {
		return fmt.Errorf("heartbeat of the lock of environment %s for run %s: %w", env, runID, err)
	}
	return nil
}

// ReleaseLock implements store.Store.
func (s *Store) ReleaseLock(ctx context.Context, env, owner, runID string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM locks WHERE env = ? AND owner = ? AND run_id = ?`, env, owner, runID)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			if err = s.lost(ctx, env); errors.Is(err, errFree) {
				err = nil // already released
			}
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
	cur, err := readLock(ctx, s.db, env)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errFree
	case err != nil:
		return err
	}
	return fmt.Errorf("%w: now held by %s (run %s) since %s", store.ErrLockLost,
		cur.Owner, cur.RunID, cur.Since.Local().Format(time.DateTime))
}

// Locks implements store.Store.
func (s *Store) Locks(ctx context.Context) ([]store.HeldLock, error) {
	now := store.Micro(s.now())
	rows, err := s.db.QueryContext(ctx, `SELECT env, owner, run_id, since, heartbeat, lease_us FROM locks ORDER BY env`)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var locks []store.HeldLock
	for rows.Next() {
		var (
			l         store.HeldLock
			since, hb sql.NullInt64
			lease     int64
		)
		if err := rows.Scan(&l.Env, &l.Owner, &l.RunID, &since, &hb, &lease); err != nil {
			return nil, fmt.Errorf("list locks: %w", err)
		}
		l.Since, l.Heartbeat, l.Lease = fromUs(since), fromUs(hb), time.Duration(lease)*time.Microsecond
		l.Age = now.Sub(l.Heartbeat)
		locks = append(locks, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return locks, nil
}
