// Package postgres is the journal (store.Store) in a PostgreSQL database,
// for `zerodown server`: several replicas share one database, so the lock of
// an environment, the abort flag and the events of a run are the same for
// all of them. The semantics are the SQLite store's (store/sqlite); the
// store.storetest contract holds both to them.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/zerodown/zerodown/internal/store"
)

// ErrSchemaTooNew: the database was migrated by a newer zerodown.
var ErrSchemaTooNew = store.ErrSchemaTooNew

// Options configures OpenWith.
type Options struct {
	// Now is the clock for times the store fills in and for lock staleness;
	// time.Now when nil. Replicas compare heartbeats written by each other's
	// clocks, so their clocks must agree to well within a lock's staleAfter.
	Now func() time.Time
}

// Store is a store.Store in a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string, as libpq takes) and brings its schema up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, dsn string, opt Options) (*Store, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message leaves the DSN out: it may hold a password.
		return nil, fmt.Errorf("open PostgreSQL state database: %w", err)
	}
	name := describe(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL state database %s: %w", name, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open PostgreSQL state database %s: %w", name, err)
	}
	return &Store{pool: pool, now: opt.Now}, nil
}

// describe names a database in errors without its password:
// "zerodown@db1:5432/zerodown".
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Close closes the connections; it waits for calls in progress.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Postgres error codes the store turns into its own errors.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// pgCode is the SQLSTATE of err, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// noRun turns the foreign key failure of a write for an unknown run into
// store.ErrNotFound.
func noRun(err error) error {
	if pgCode(err) == foreignKeyViolation {
		return fmt.Errorf("run %w", store.ErrNotFound)
	}
	return err
}

// ts is t as a parameter: NULL for the zero time.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromTS reads a nullable timestamptz, in UTC.
func fromTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// nowOr is t, or the store's clock when t is zero, as stored.
func (s *Store) nowOr(t time.Time) time.Time {
	if t.IsZero() {
		t = s.now()
	}
	return store.Micro(t)
}

// blob stores empty JSON as NULL, so that it reads back as nil.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// notFound turns "no row" into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
