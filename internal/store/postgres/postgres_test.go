package postgres_test

import (
	"context"
	"errors"
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
	if err := c.QueryRow(ctx, `SELECT max(version), count(*) FROM schema_version`).Scan(&version, &rows); err != nil || version != 1 || rows != 1 {
		t.Errorf("schema_version = %d in %d rows, %v; want 1 in 1", version, rows, err)
	}
	var tables string
	if err := c.QueryRow(ctx, `SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if want := "approvals events locks runs schema_version tasks"; tables != want {
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
	if want := ": database schema is newer than this zerodown: it has schema version 99, this zerodown knows up to 1; use a newer zerodown"; !strings.HasSuffix(err.Error(), want) {
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
