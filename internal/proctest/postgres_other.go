//go:build !linux

package proctest

import "testing"

// Postgres is a PostgreSQL server for tests; it is started on Linux only.
type Postgres struct {
	// Addr is where the server listens.
	Addr string
}

// StartPostgres skips the test: the PostgreSQL tests run on Linux.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	t.Skip("the PostgreSQL tests run on Linux")
	return nil
}

// StopPostgres does nothing where StartPostgres starts nothing.
func StopPostgres() {}

// NewDatabase is never reached: StartPostgres skipped the test.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	t.Fatal("no PostgreSQL server")
	return ""
}

// DSN is the connection string of a database on the server.
func (p *Postgres) DSN(database string) string { return "" }
