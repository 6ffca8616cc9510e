package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/postgres"
	"github.com/zerodown/zerodown/internal/store/storetest"
)

var ctx = context.Background()

// TestMain stops the one PostgreSQL server the tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	proctest.StopPostgres()
	os.Exit(code)
}

func TestContract(t *testing.T) {
	pg := proctest.StartPostgres(t)
	storetest.TestContract(t, func(t *testing.T) storetest.Opener {
		dsn := pg.NewDatabase(t)
		return func(now func() time.Time) store.Store {
			return open(t, dsn, postgres.Options{Now: now})
		}
	})
}

func open(t testing.TB, dsn string, opt postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.OpenWith(ctx, dsn, opt)
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

// exec runs SQL on the database behind the store's back.
func exec(t *testing.T, dsn string, sql string) {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

// TestOpenConcurrently: replicas opening a new database at once all
// succeed, and the schema is made once.
func TestOpenConcurrently(t *testing.T) {
	t.Parallel()
	dsn := proctest.StartPostgres(t).NewDatabase(t)
	const n = 8
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range errs {
		wg.Go(func() {
			<-start
			s, err := postgres.Open(ctx, dsn)
			if err == nil {
				_, err = s.CreateRun(ctx, store.Run{Env: "staging"})
				err = errors.Join(err, s.Close())
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var version, rows int
	if err := c.QueryRow(ctx, `SELECT max(version), count(*) FROM schema_version`).Scan(&version, &rows); err != nil || version != 3 || rows != 1 {
		t.Errorf("schema_version = %d in %d rows, %v; want 3 in 1", version, rows, err)
	}
	var tables string
	if err := c.QueryRow(ctx, `SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if want := "approvals audit events locks reports runs schema_version tasks tokens"; tables != want {
		t.Errorf("tables: %q, want %q", tables, want)
	}
	s := open(t, dsn, postgres.Options{})
	if runs, err := s.ListRuns(ctx, "", 0); err != nil || len(runs) != n {
		t.Errorf("ListRuns = %d runs, %v; want %d", len(runs), err, n)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	t.Parallel()
	pg := proctest.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	open(t, dsn, postgres.Options{}).Close()
	exec(t, dsn, `UPDATE schema_version SET version = 99`)

	_, err := postgres.Open(ctx, dsn)
	if !errors.Is(err, postgres.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	if want := ": database schema is newer than this zerodown: it has schema version 99, this zerodown knows up to 3; use a newer zerodown"; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("error %q\nwant it to end in %q", err, want)
	}
}

// TestOpenNotAJournal: a database holding some other program's tables is
// refused, naming them, and left as it was.
func TestOpenNotAJournal(t *testing.T) {
	t.Parallel()
	dsn := proctest.StartPostgres(t).NewDatabase(t)
	exec(t, dsn, `CREATE TABLE customers (id integer PRIMARY KEY, name text)`)
	_, err := postgres.Open(ctx, dsn)
	if err == nil || !strings.Contains(err.Error(), "not a zerodown state database: it has tables (customers) but no schema_version") {
		t.Fatalf("Open of another program's database: %v", err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d tables after the refused Open (%v), want 1", n, err)
	}
}

// TestOpenErrors: a database that cannot be reached is named in the
// error, without the password of the connection string.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	addr := proctest.FreeAddr(t) // nobody listens there
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://zd:s3cret@"+addr+"/journal?sslmode=disable&connect_timeout=5")
	if err == nil {
		t.Fatal("Open succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "open PostgreSQL state database zd@") || !strings.Contains(err.Error(), "/journal") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q: want it to name zd@%s/journal and not the password", err, addr)
	}

	_, err = postgres.Open(ctx, "postgres://zd:s3cret@%zz/journal")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open of a malformed DSN: %v; want an error without the password", err)
	}
}

// change is one call of WatchRuns's fn.
type change struct {
	run string
	seq int64
}

// watcher is a WatchRuns running in the background.
type watcher struct {
	changes chan change
	stop    context.CancelFunc // cancels its context
	done    chan struct{}      // closed when WatchRuns returned err
	err     error
}

// watch runs s.WatchRuns until stopped or the test ends, and waits until it
// listens.
func watch(t *testing.T, s *postgres.Store) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{changes: make(chan change, 64), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = s.WatchRuns(ctx, func(run string, seq int64) {
			select {
			case w.changes <- change{run, seq}:
			case <-ctx.Done(): // nobody reads any more
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	if c := w.next(t, "the watcher listening"); c != (change{}) {
		t.Fatalf("WatchRuns first told %+v, want the signal that it listens (\"\", 0)", c)
	}
	return w
}

// next waits for the next change told.
func (w *watcher) next(t *testing.T, what string) change {
	t.Helper()
	select {
	case c := <-w.changes:
		return c
	case <-w.done:
		t.Fatalf("WatchRuns returned %v while waiting for %s", w.err, what)
	case <-time.After(10 * time.Second):
		t.Fatalf("not told of %s within 10s", what)
	}
	return change{}
}

// wait waits for WatchRuns to return, and returns its error.
func (w *watcher) wait(t *testing.T, after string) error {
	t.Helper()
	select {
	case <-w.done:
		return w.err
	case <-time.After(10 * time.Second):
		t.Fatalf("WatchRuns did not return within 10s after %s", after)
	}
	return nil
}

// TestWatchRuns: a replica watching hears of the runs and events another
// replica writes, each when it can already read it, and of nothing that was
// not written; it stops when its context ends.
func TestWatchRuns(t *testing.T) {
	t.Parallel()
	dsn := proctest.StartPostgres(t).NewDatabase(t)
	watcher, writer := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	w := watch(t, watcher)

	const id = "r-20261125-181203-0001"
	event := func(seq int64) func() bool {
		return func() bool {
			events, err := watcher.Events(ctx, id, seq-1)
			return err == nil && len(events) == 1 && events[0].Seq == seq
		}
	}
	for _, tt := range []struct {
		name string
		do   func() error
		// want is the change told, or nil for none: the next step's
		// change is then the next one told.
		want *change
		// visible reports whether the watcher reads the change once told.
		visible func() bool
	}{
		{"create run", func() error {
			_, err := writer.CreateRun(ctx, store.Run{ID: id, Env: "staging"})
			return err
		}, &change{id, 0}, func() bool { _, err := watcher.GetRun(ctx, id); return err == nil }},
		{"append event", func() error {
			_, err := writer.AppendEvent(ctx, store.Event{RunID: id, Type: "info", Message: "first"})
			return err
		}, &change{id, 1}, event(1)},
		{"append to an unknown run", func() error {
			_, err := writer.AppendEvent(ctx, store.Event{RunID: "r-nope", Type: "info"})
			return expect(err, store.ErrNotFound)
		}, nil, nil},
		{"someone else's notification", func() error {
			exec(t, dsn, `NOTIFY zerodown_runs, 'not a change'`)
			return nil
		}, nil, nil},
		{"append another event", func() error {
			_, err := writer.AppendEvent(ctx, store.Event{RunID: id, Type: "info", Message: "second"})
			return err
		}, &change{id, 2}, event(2)},
		{"update run", func() error {
			return writer.UpdateRun(ctx, id, store.RunUpdate{Status: store.RunFailed, Error: "boom"})
		}, &change{id, 0}, func() bool { r, err := watcher.GetRun(ctx, id); return err == nil && r.Status == store.RunFailed }},
		{"update an unknown run", func() error {
			return expect(writer.UpdateRun(ctx, "r-nope", store.RunUpdate{Status: store.RunFailed}), store.ErrNotFound)
		}, nil, nil},
		{"request abort", func() error {
			return writer.RequestAbort(ctx, id, "alice")
		}, &change{id, 0}, func() bool { r, err := watcher.GetRun(ctx, id); return err == nil && r.Abort }},
	} {
		if err := tt.do(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if tt.want == nil {
			continue
		}
		if c := w.next(t, tt.name); c != *tt.want {
			t.Fatalf("%s: told %+v, want %+v", tt.name, c, *tt.want)
		}
		if !tt.visible() {
			t.Errorf("%s: told before the watcher can read it", tt.name)
		}
	}

	w.stop()
	if err := w.wait(t, "its context was cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("WatchRuns after its context was cancelled: %v, want context.Canceled", err)
	}
}

// expect is nil when err is target, else an error saying what err is.
func expect(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return fmt.Errorf("got %v, want %v", err, target)
}

// TestWatchRunsConnectionLost: WatchRuns returns the error when its
// connection is lost, and a new call listens again.
func TestWatchRunsConnectionLost(t *testing.T) {
	t.Parallel()
	dsn := proctest.StartPostgres(t).NewDatabase(t)
	s := open(t, dsn, postgres.Options{})
	w := watch(t, s)

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var killed int
	if err := c.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND query = 'LISTEN zerodown_runs'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listening sessions, %v; want 1", killed, err)
	}
	err = w.wait(t, "its connection was terminated")
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("WatchRuns after its connection was terminated: %v, want the connection's error", err)
	}
	t.Log(err)

	w = watch(t, s)
	r, err := s.CreateRun(ctx, store.Run{Env: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if c := w.next(t, "the run created"); c != (change{r.ID, 0}) {
		t.Errorf("watching again: told %+v, want %+v", c, change{r.ID, 0})
	}
}
