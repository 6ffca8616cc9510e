package proctest

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestMain checks that StopPostgres leaves nothing behind: no server
// process, no cluster directory.
func TestMain(m *testing.M) {
	code := m.Run()
	p := pgShared
	StopPostgres()
	if p != nil {
		select {
		case <-p.done:
		default:
			fmt.Fprintln(os.Stderr, "postgres still running after StopPostgres")
			code = 1
		}
		if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
			fmt.Fprintf(os.Stderr, "%s left after StopPostgres: %v\n", p.dir, err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestPostgres: one server for all callers, a new empty database each.
func TestPostgres(t *testing.T) {
	pg := StartPostgres(t)
	if again := StartPostgres(t); again != pg {
		t.Fatal("a second StartPostgres started another server")
	}
	a, b := pg.NewDatabase(t), pg.NewDatabase(t)
	if a == b {
		t.Fatalf("two NewDatabase calls gave one database: %s", a)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var tables int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("new database has %d tables, %v; want 0", tables, err)
	}
}
