package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/zerodown/zerodown/internal/store"
)

// migrations[i] brings the schema from version i to i+1. Append only: a
// released migration is never edited. The versions are this store's own,
// not the SQLite store's.
//
// Times are timestamptz (microseconds); NULL is "not yet". JSON (plan,
// spec, event data) is bytea, opaque to the store, as in SQLite: jsonb
// would refuse some valid JSON (\u0000) and reorder keys.
var migrations = []string{
	// 1: runs, tasks, events, approvals, locks.
	`
CREATE TABLE runs (
	id            text PRIMARY KEY,
	env           text NOT NULL,
	pipeline      text NOT NULL,
	version       text NOT NULL,
	artifact      text NOT NULL,
	sha256        text NOT NULL,
	status        text NOT NULL CHECK (status IN
	              ('running', 'succeeded', 'failed', 'rolled_back', 'needs_attention', 'aborted')),
	started_at    timestamptz NOT NULL,
	ended_at      timestamptz,
	owner         text NOT NULL,
	plan          bytea,
	error         text NOT NULL,
	abort         boolean NOT NULL DEFAULT false,
	abort_by      text NOT NULL DEFAULT '',
	abort_at      timestamptz,
	spec          bytea,
	promoted_from text NOT NULL DEFAULT '',
	-- The Seq of the run's last event: AppendEvent increments it, and the
	-- row lock that takes makes concurrent appends of a run wait in turn.
	last_seq      bigint NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_start ON runs (started_at DESC, id DESC);
CREATE INDEX runs_by_env_start ON runs (env, started_at DESC, id DESC);

CREATE TABLE tasks (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id     text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	stage      text NOT NULL,
	job        text NOT NULL,
	idx        integer NOT NULL CHECK (idx >= 0),
	kind       text NOT NULL,
	host       text NOT NULL,
	status     text NOT NULL CHECK (status IN
	           ('running', 'passed', 'failed', 'skipped', 'cancelled')),
	started_at timestamptz NOT NULL,
	ended_at   timestamptz,
	error      text NOT NULL,
	attempt    integer NOT NULL,
	UNIQUE (run_id, stage, job, idx)
);

CREATE TABLE events (
	run_id  text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	seq     bigint NOT NULL CHECK (seq > 0),
	at      timestamptz NOT NULL,
	host    text NOT NULL,
	type    text NOT NULL,
	message text NOT NULL,
	data    bytea,
	PRIMARY KEY (run_id, seq)
);

CREATE TABLE approvals (
	run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	stage       text NOT NULL,
	approved_by text NOT NULL,
	approved_at timestamptz NOT NULL,
	PRIMARY KEY (run_id, stage)
);

-- No foreign key to runs: a deploy takes the lock before it writes its run,
-- so that a refused deploy leaves no trace in the history.
CREATE TABLE locks (
	env       text PRIMARY KEY,
	owner     text NOT NULL,
	run_id    text NOT NULL,
	since     timestamptz NOT NULL,
	heartbeat timestamptz NOT NULL
);
`,
	// 2: zerodown server's API tokens and audit log, and indexes for its
	// lists of runs by status or version, newest first, a page at a time.
	`
CREATE TABLE tokens (
	id         text PRIMARY KEY,
	name       text NOT NULL UNIQUE,
	role       text NOT NULL,
	hash       bytea NOT NULL,
	created_at timestamptz NOT NULL,
	created_by text NOT NULL,
	revoked_at timestamptz
);

-- An identity may skip numbers (an insert rolled back), never repeat one.
CREATE TABLE audit (
	seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at     timestamptz NOT NULL,
	actor  text NOT NULL,
	action text NOT NULL,
	target text NOT NULL,
	detail text NOT NULL,
	remote text NOT NULL
);

CREATE INDEX runs_by_status_start ON runs (status, started_at DESC, id DESC);
CREATE INDEX runs_by_version_start ON runs (version, started_at DESC, id DESC);
`,
	// 3: each lock keeps its holder's lease, so every replica judges its
	// staleness alike (0: a lock taken before; readers use their own); the
	// verifier's reports, so every replica serves them; an index for runs
	// filtered by environment and status, the history's usual question.
	`
ALTER TABLE locks ADD COLUMN lease_us bigint NOT NULL DEFAULT 0;

CREATE INDEX runs_by_env_status_start ON runs (env, status, started_at DESC, id DESC);

CREATE TABLE reports (
	run_id text PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
	html   bytea NOT NULL,
	at     timestamptz NOT NULL
);
`,
}

// migrationLock is the key of the advisory lock that replicas starting at
// once take around the migration: "zerodown" in ASCII. Advisory locks are
// per database, so one database's migration waits for no other's.
const migrationLock int64 = 0x7a65726f646f776e

// migrate brings the database to the last migration's version in one transaction that holds
// migrationLock, so replicas opening a new database at once apply each
// migration once: the others wait, then find it done. It refuses a newer
// schema, and a schema holding tables but no schema_version (some other
// program's).
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}

	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return err
	}
	version := 0
	if exists {
		err = tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("not a zerodown state database: schema_version is empty")
		}
		if err != nil {
			return err
		}
	} else {
		var tables string
		if err := tx.QueryRow(ctx, `SELECT coalesce(string_agg(tablename, ', ' ORDER BY tablename), '')
FROM pg_tables WHERE schemaname = current_schema()`).Scan(&tables); err != nil {
			return err
		}
		if tables != "" {
			return fmt.Errorf("not a zerodown state database: it has tables (%s) but no schema_version; give zerodown a database or schema (search_path) of its own", tables)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE schema_version (version integer NOT NULL);
INSERT INTO schema_version (version) VALUES (0);`); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
	}
	migrated, err := store.Migrate(version, migrations,
		func(stmt string) error { _, err := tx.Exec(ctx, stmt); return err },
		func(v int) error { _, err := tx.Exec(ctx, `UPDATE schema_version SET version = $1`, v); return err })
	if !migrated || err != nil {
		return err // the deferred rollback ends the transaction
	}
	return tx.Commit(ctx)
}
