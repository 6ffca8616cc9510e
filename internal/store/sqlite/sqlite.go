// Package sqlite is the journal (store.Store) in a local SQLite file, the
// default of `zerodown deploy`. Several zerodown processes can use one file at
// once: a second deploy checks the lock, `zerodown abort` sets the abort flag
// from another terminal.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/zerodown/zerodown/internal/store"
)

// DefaultPath is where the journal lives when the caller names no file.
const DefaultPath = ".zerodown/state.db"

// DefaultBusyTimeout is how long a write waits for another connection's.
const DefaultBusyTimeout = 5 * time.Second

// ErrSchemaTooNew: the file was written by a newer zerodown.
var ErrSchemaTooNew = store.ErrSchemaTooNew

// Options configures Open.
type Options struct {
	// Now is the clock for times the store fills in and for lock staleness;
	// time.Now when nil.
	Now func() time.Time
	// BusyTimeout is how long a write waits while another connection or
	// process writes; DefaultBusyTimeout when zero.
	BusyTimeout time.Duration
	// FullSync flushes every commit to disk, so it survives a power cut of
	// this machine, at the cost of one disk flush per write. Without it a
	// commit survives the process being killed (SIGKILL) or crashing, and a
	// power cut may lose the last commits but never corrupts the file.
	FullSync bool
}

// Store is a store.Store in one SQLite file.
type Store struct {
	db   *sql.DB
	path string
	now  func() time.Time
}

var _ store.Store = (*Store)(nil)

// Open opens the journal at path (DefaultPath when empty), creating the file
// (0600) and its directory (0700) if needed, and brings its schema up to date.
func Open(ctx context.Context, path string, opt Options) (*Store, error) {
	if path == "" {
		path = DefaultPath
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.BusyTimeout <= 0 {
		opt.BusyTimeout = DefaultBusyTimeout
	}
	db, err := open(ctx, path, opt)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	return &Store{db: db, path: path, now: opt.Now}, nil
}

func open(ctx context.Context, path string, opt Options) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Create the file ourselves so that it, and the -wal and -shm files that
	// SQLite gives the same mode, are private. SQLite treats it as empty.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, err
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, err
	}
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	dsn, err := dataSource(path, opt)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		return nil, explain(err)
	}
	// WAL, so that readers and one writer go on at once. It is a property of
	// the file, set once it is known to be ours, not some other program's.
	if err := enableWAL(ctx, db, opt.BusyTimeout); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// dataSource is the URI of the file with the settings every pooled
// connection applies: a busy timeout so that writers of other processes wait
// for each other instead of failing, the sync level, foreign keys, and BEGIN
// IMMEDIATE so that a transaction that writes never fails half-way on a lock
// upgrade.
func dataSource(path string, opt Options) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/x on Windows is file:///C:/x
	}
	synchronous := "NORMAL"
	if opt.FullSync {
		synchronous = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(opt.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "synchronous("+synchronous+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String(), nil
}

// enableWAL switches the file to write-ahead logging. On a new file that
// other processes are opening too, the switch can be refused at once with
// SQLITE_BUSY (SQLite does not wait where waiting could deadlock), so it is
// retried until the busy timeout.
func enableWAL(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		switch {
		case err == nil && strings.EqualFold(mode, "wal"):
			return nil
		case err == nil:
			return fmt.Errorf("cannot use write-ahead logging (journal mode stays %q); is the file on a network file system?", mode)
		case code(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline):
			return fmt.Errorf("switch to write-ahead logging: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// explain turns SQLite's words for a file that is not a journal into ours.
func explain(err error) error {
	switch code(err) {
	case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
		return fmt.Errorf("not a zerodown state database, or a corrupt one: %w", err)
	}
	return err
}

// Close closes the database; calling it again does nothing.
func (s *Store) Close() error {
	return s.db.Close()
}

// Path is the file the store was opened on.
func (s *Store) Path() string { return s.path }

// code is the SQLite (extended) result code of err, or 0.
func code(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// us is t in the database's representation: microseconds since the Unix
// epoch, NULL for the zero time.
func us(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// fromUs reads a time written by us.
func fromUs(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// nowOr is t, or the store's clock when t is zero, as stored.
func (s *Store) nowOr(t time.Time) time.Time {
	if t.IsZero() {
		t = s.now()
	}
	return store.Micro(t)
}
