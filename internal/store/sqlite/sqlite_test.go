package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
	"github.com/zerodown/zerodown/internal/store/storetest"
)

var ctx = context.Background()

func TestContract(t *testing.T) {
	storetest.TestContract(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "state.db")
		return func(now func() time.Time) store.Store {
			return open(t, path, sqlite.Options{Now: now})
		}
	})
}

func open(t testing.TB, path string, opt sqlite.Options) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(ctx, path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "project", ".zerodown")
	path := filepath.Join(dir, "state.db")
	s := open(t, path, sqlite.Options{})
	if _, err := s.CreateRun(ctx, store.Run{Env: "staging"}); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "windows" {
		return // no Unix modes
	}
	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func TestOpenDefaultPath(t *testing.T) {
	t.Chdir(t.TempDir())
	s := open(t, "", sqlite.Options{})
	if s.Path() != sqlite.DefaultPath {
		t.Errorf("Path() = %q, want %q", s.Path(), sqlite.DefaultPath)
	}
	if _, err := os.Stat(filepath.FromSlash(sqlite.DefaultPath)); err != nil {
		t.Error(err)
	}
}

func TestOpenSettings(t *testing.T) {
	// A path that needs escaping in a file: URI.
	path := filepath.Join(t.TempDir(), "a dir?#%", "state.db")
	open(t, path, sqlite.Options{})
	uri := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	db, err := sql.Open("sqlite", uri.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var version, rows int
	if err := db.QueryRow(`SELECT max(version), count(*) FROM schema_version`).Scan(&version, &rows); err != nil || version != 4 || rows != 1 {
		t.Errorf("schema_version = %d in %d rows, %v; want 4 in 1", version, rows, err)
	}
}

// TestOpenNotAJournal: a file that is not a journal is refused with the path
// and what is wrong, and left as it was.
func TestOpenNotAJournal(t *testing.T) {
	dir := t.TempDir()
	otherApp := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", otherApp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	valid := filepath.Join(dir, "valid.db")
	open(t, valid, sqlite.Options{}).Close()
	head, err := os.ReadFile(valid)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name    string
		content []byte // nil: leave the file as it is
		want    string
	}{
		{"text.db", []byte("environments:\n  staging: {}\n"), "not a zerodown state database, or a corrupt one"},
		{"random.db", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4096), "not a zerodown state database, or a corrupt one"},
		{"truncated.db", head[:16+100], "not a zerodown state database, or a corrupt one"},
		{"other.db", nil, "not a zerodown state database: it has tables (customers) but no schema_version"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(path)
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), "open state database "+path+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open error %q; want it to name %s and say %q", err, path, tt.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("Open changed the file")
			}
		})
	}

	t.Run("directory", func(t *testing.T) {
		_, err := sqlite.Open(ctx, dir, sqlite.Options{})
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("Open of a directory: %v; want an error naming it", err)
		}
	})
}

func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, path, sqlite.Options{}).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, err = sqlite.Open(ctx, path, sqlite.Options{})
	if !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	want := "open state database " + path + ": database schema is newer than this zerodown: it has schema version 99, this zerodown knows up to 4; use a newer zerodown"
	if err.Error() != want {
		t.Errorf("error:\n got %q\nwant %q", err, want)
	}
}

// TestOpenConcurrently: processes opening a new file at once create the
// schema once.
func TestOpenConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			s, err := sqlite.Open(ctx, path, sqlite.Options{})
			if err == nil {
				_, err = s.CreateRun(ctx, store.Run{Env: "staging"})
				err = errors.Join(err, s.Close())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	s := open(t, path, sqlite.Options{})
	if runs, err := s.ListRuns(ctx, "", 0); err != nil || len(runs) != len(errs) {
		t.Errorf("ListRuns = %d runs, %v; want %d", len(runs), err, len(errs))
	}
}

// TestProcesses runs real processes (this test binary, see TestHelperProcess)
// against one file: racing for a free lock exactly one wins, a held lock is
// refused with its holder, and an abort requested by another process is seen.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path, sqlite.Options{})
	run, err := s.CreateRun(ctx, store.Run{Env: "staging"})
	if err != nil {
		t.Fatal(err)
	}

	const n = 4
	outs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			outs[i], errs[i] = helper(path, "lock", "staging", fmt.Sprintf("r-proc-%d", i))
		})
	}
	wg.Wait()
	won := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("process %d: %v: %s", i, errs[i], outs[i])
		}
		switch {
		case outs[i] == "acquired":
			won++
		case !strings.HasPrefix(outs[i], "environment staging is locked by "):
			t.Errorf("process %d: %q", i, outs[i])
		}
	}
	if won != 1 {
		t.Errorf("%d of %d processes acquired the lock, want 1: %q", won, n, outs)
	}

	if _, err := s.AcquireLock(ctx, "production", store.ProcessOwner(), run.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	out, err := helper(path, "lock", "production", "r-other")
	if err != nil || !strings.Contains(out, "locked by "+store.ProcessOwner()+" (run "+run.ID+")") {
		t.Errorf("second process: %q, %v; want it refused naming this process and run", out, err)
	}

	if out, err := helper(path, "abort", run.ID); err != nil || out != "ok" {
		t.Fatalf("abort process: %q, %v", out, err)
	}
	if r, err := s.GetRun(ctx, run.ID); err != nil || !r.Abort {
		t.Errorf("after abort from another process: Abort %v, %v", r.Abort, err)
	}
}

// helper runs TestHelperProcess in a new process and returns what it printed.
func helper(args ...string) (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "--")
	cmd.Args = append(cmd.Args, args...)
	cmd.Env = append(os.Environ(), "ZERODOWN_STORE_HELPER=1")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestHelperProcess is the other process of TestProcesses.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("ZERODOWN_STORE_HELPER") != "1" {
		t.Skip("run by TestProcesses")
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	args = args[1:]
	s, err := sqlite.Open(ctx, args[0], sqlite.Options{})
	if err == nil {
		switch args[1] {
		case "lock":
			_, err = s.AcquireLock(ctx, args[2], store.ProcessOwner(), args[3], time.Minute)
			if err == nil {
				fmt.Print("acquired")
			}
		case "abort":
			if err = s.RequestAbort(ctx, args[2], "helper"); err == nil {
				fmt.Print("ok")
			}
		}
		err = errors.Join(err, s.Close())
	}
	var le *store.LockedError
	if errors.As(err, &le) {
		fmt.Print(le)
		err = nil
	}
	if err != nil {
		fmt.Print(err)
		os.Exit(1)
	}
	os.Exit(0)
}

func BenchmarkAppendEvent(b *testing.B) {
	for _, full := range []bool{false, true} {
		b.Run(fmt.Sprintf("FullSync=%v", full), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "state.db"), sqlite.Options{FullSync: full})
			r, err := s.CreateRun(ctx, store.Run{Env: "staging"})
			if err != nil {
				b.Fatal(err)
			}
			e := store.Event{RunID: r.ID, Host: "staging-1", Type: "wait", Message: "draining", Data: []byte(`{"in_flight":3}`)}
			for b.Loop() {
				if _, err := s.AppendEvent(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStartFinishTask(b *testing.B) {
	for _, full := range []bool{false, true} {
		b.Run(fmt.Sprintf("FullSync=%v", full), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "state.db"), sqlite.Options{FullSync: full})
			r, err := s.CreateRun(ctx, store.Run{Env: "staging"})
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				t := store.TaskRecord{RunID: r.ID, Stage: "update", Job: fmt.Sprintf("host-%d", i), Kind: "deploy", Host: "staging-1"}
				if _, err := s.StartTask(ctx, t); err != nil {
					b.Fatal(err)
				}
				t.Status = store.TaskPassed
				if err := s.FinishTask(ctx, t); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// TestMigrateFromVersion1: a journal written before runs kept their app
// spec, and before locks kept their holder's lease, opens: its runs read
// with no spec, its lock with no lease, judged stale by the reader's.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// The runs table as schema version 1 made it, with one run.
	for _, stmt := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT`,
		`INSERT INTO schema_version VALUES (1)`,
		`CREATE TABLE runs (id TEXT PRIMARY KEY, env TEXT NOT NULL, pipeline TEXT NOT NULL, version TEXT NOT NULL,
			artifact TEXT NOT NULL, sha256 TEXT NOT NULL, status TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER,
			owner TEXT NOT NULL, plan BLOB, error TEXT NOT NULL, abort INTEGER NOT NULL DEFAULT 0) STRICT`,
		`INSERT INTO runs VALUES ('r-1', 'staging', 'p', 'v1', 'a.tar.gz', 'abc', 'succeeded', 1, 2, 'me', NULL, '', 0)`,
		`CREATE TABLE locks (env TEXT PRIMARY KEY, owner TEXT NOT NULL, run_id TEXT NOT NULL, since INTEGER NOT NULL,
			heartbeat INTEGER NOT NULL) STRICT`,
		`INSERT INTO locks VALUES ('staging', 'me', 'r-1', 1, 1)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.GetRun(ctx, "r-1")
	if err != nil || r.Version != "v1" || r.Spec != nil || r.PromotedFrom != "" {
		t.Fatalf("run after the migration: %+v, %v", r, err)
	}
	locks, err := st.Locks(ctx)
	if err != nil || len(locks) != 1 || locks[0].RunID != "r-1" || locks[0].Lease != 0 {
		t.Fatalf("locks after the migration: %+v, %v; want r-1's, with no lease", locks, err)
	}
	_, err = st.AcquireLock(ctx, "staging", "you", "r-2", time.Minute)
	var le *store.LockedError
	if !errors.As(err, &le) || !le.Stale {
		t.Errorf("AcquireLock of the old lock: %v, want it stale by the reader's lease", err)
	}
}
