package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/zerodown/zerodown/internal/store"
)

// migrations[i] brings the schema from version i to i+1. Append only: a
// released migration is never edited.
//
// Times are INTEGER microseconds since the Unix epoch (UTC); NULL is "not
// yet". Tables are STRICT so that a wrong type is an error, not a surprise.
var migrations = []string{
	// 1: runs, tasks, events, approvals, locks.
	`
CREATE TABLE runs (
	id         TEXT PRIMARY KEY,
	env        TEXT NOT NULL,
	pipeline   TEXT NOT NULL,
	version    TEXT NOT NULL,
	artifact   TEXT NOT NULL,
	sha256     TEXT NOT NULL,
	status     TEXT NOT NULL CHECK (status IN
	           ('running', 'succeeded', 'failed', 'rolled_back', 'needs_attention', 'aborted')),
	started_at INTEGER NOT NULL,
	ended_at   INTEGER,
	owner      TEXT NOT NULL,
	plan       BLOB,
	error      TEXT NOT NULL,
	abort      INTEGER NOT NULL DEFAULT 0 CHECK (abort IN (0, 1))
) STRICT;
CREATE INDEX runs_by_start ON runs (started_at DESC, id DESC);
CREATE INDEX runs_by_env_start ON runs (env, started_at DESC, id DESC);

CREATE TABLE tasks (
	id         INTEGER PRIMARY KEY,
	run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	stage      TEXT NOT NULL,
	job        TEXT NOT NULL,
	idx        INTEGER NOT NULL CHECK (idx >= 0),
	kind       TEXT NOT NULL,
	host       TEXT NOT NULL,
	status     TEXT NOT NULL CHECK (status IN
	           ('running', 'passed', 'failed', 'skipped', 'cancelled')),
	started_at INTEGER NOT NULL,
	ended_at   INTEGER,
	error      TEXT NOT NULL,
	attempt    INTEGER NOT NULL,
	UNIQUE (run_id, stage, job, idx)
) STRICT;

CREATE TABLE events (
	run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	seq     INTEGER NOT NULL CHECK (seq > 0),
	at      INTEGER NOT NULL,
	host    TEXT NOT NULL,
	type    TEXT NOT NULL,
	message TEXT NOT NULL,
	data    BLOB,
	PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE approvals (
	run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	stage       TEXT NOT NULL,
	approved_by TEXT NOT NULL,
	approved_at INTEGER NOT NULL,
	PRIMARY KEY (run_id, stage)
) STRICT;

-- No foreign key to runs: a deploy takes the lock before it writes its run,
-- so that a refused deploy leaves no trace in the history.
CREATE TABLE locks (
	env       TEXT PRIMARY KEY,
	owner     TEXT NOT NULL,
	run_id    TEXT NOT NULL,
	since     INTEGER NOT NULL,
	heartbeat INTEGER NOT NULL
) STRICT;
`,
	// 2: what a run deployed (the app spec, for promotion), the run of
	// the environment it was promoted from, and who asked for an abort.
	`
ALTER TABLE runs ADD COLUMN spec BLOB;
ALTER TABLE runs ADD COLUMN promoted_from TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN abort_by TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN abort_at INTEGER;
`,
	// 3: zerodown server's API tokens and audit log, and indexes for its
	// lists of runs by status or version, newest first, a page at a time.
	`
CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	role       TEXT NOT NULL,
	hash       BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	created_by TEXT NOT NULL,
	revoked_at INTEGER
) STRICT;

-- AUTOINCREMENT: a seq is never given twice, even after the newest entry
-- is gone, so a reader paging by seq is never shown another entry as one
-- it saw.
CREATE TABLE audit (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	at     INTEGER NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	detail TEXT NOT NULL,
	remote TEXT NOT NULL
) STRICT;

CREATE INDEX runs_by_status_start ON runs (status, started_at DESC, id DESC);
CREATE INDEX runs_by_version_start ON runs (version, started_at DESC, id DESC);
`,
	// 4: each lock keeps its holder's lease, so every reader judges its
	// staleness alike (0: a lock taken before; readers use their own); the
	// verifier's reports, so every replica serves them; an index for runs
	// filtered by environment and status, the history's usual question.
	`
ALTER TABLE locks ADD COLUMN lease_us INTEGER NOT NULL DEFAULT 0;

CREATE INDEX runs_by_env_status_start ON runs (env, status, started_at DESC, id DESC);

CREATE TABLE reports (
	run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
	html   BLOB NOT NULL,
	at     INTEGER NOT NULL
) STRICT;
`,
}

// migrate brings the database to the last migration's version in one transaction, so two
// processes opening a new file at once apply each migration once. It refuses
// a newer schema, and a database holding tables but no schema_version (some
// other program's database).
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dataSource)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()

	version := 0
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("not a zerodown state database: schema_version is empty")
	case err != nil:
		if !isNoSuchTable(ctx, tx) {
			return err
		}
		var tables string
		if err := tx.QueryRowContext(ctx,
			`SELECT coalesce(group_concat(name, ', '), '') FROM
			(SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name)`,
		).Scan(&tables); err != nil {
			return err
		}
		if tables != "" {
			return fmt.Errorf("not a zerodown state database: it has tables (%s) but no schema_version", tables)
		}
		if _, err := tx.ExecContext(ctx, `
CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT;
INSERT INTO schema_version (version) VALUES (0);`); err != nil {
			return err
		}
	}
	migrated, err := store.Migrate(version, migrations,
		func(stmt string) error { _, err := tx.ExecContext(ctx, stmt); return err },
		func(v int) error {
			_, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v)
			return err
		})
	if !migrated || err != nil {
		return err // the deferred rollback ends the transaction
	}
	return tx.Commit()
}

// isNoSuchTable reports whether schema_version is missing, as opposed to the
// query failing for another reason (a corrupt file, a locked one).
func isNoSuchTable(ctx context.Context, tx *sql.Tx) bool {
	var n int
	err := tx.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'`).Scan(&n)
	return err == nil && n == 0
}
