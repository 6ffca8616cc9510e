package proctest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zerodown/zerodown/internal/freeport"
)

// Postgres is a real PostgreSQL server (Debian's postgresql package) on a
// loopback port, shared by the tests of one test binary: starting a cluster
// takes seconds, a database in it a few milliseconds. Each test gets a
// database of its own (NewDatabase), so tests can run in parallel.
type Postgres struct {
	// Addr is where the server listens: 127.0.0.1 and a free port.
	Addr string
	dir  string // data directory and unix socket; removed by StopPostgres
	cmd  *exec.Cmd
	out  Buffer
	done chan struct{}

	mu    sync.Mutex // serialises CREATE DATABASE on admin
	admin *pgx.Conn
	dbs   atomic.Int64
}

var (
	pgOnce   sync.Once
	pgShared *Postgres
	pgErr    error
)

// StartPostgres returns the test binary's PostgreSQL server, starting it on
// the first call. The package's TestMain must call StopPostgres after
// m.Run, which stops it and removes its files. Without PostgreSQL installed
// the test is skipped (fails in CI, see NeedProgram).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	initdb := NeedProgram(t, "initdb", pgPaths("initdb")...)
	// postgres is initdb's sibling in the package's own directory, which a
	// link on PATH (/usr/local/bin/initdb) may point into.
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	bin := filepath.Dir(initdb)
	pgOnce.Do(func() { pgShared, pgErr = startPostgres(bin) })
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	return pgShared
}

// pgPaths is where Debian installs a PostgreSQL program: off PATH, under
// /usr/lib/postgresql/<major>/bin, newest first.
func pgPaths(name string) []string {
	paths, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	for i, j := 0, len(paths)-1; i < j; i, j = i+1, j-1 {
		paths[i], paths[j] = paths[j], paths[i]
	}
	return paths
}

// StopPostgres stops the server StartPostgres started, if any, and removes
// its files. Call it from TestMain after m.Run.
func StopPostgres() {
	if pgShared != nil {
		pgShared.stop()
	}
}

// NewDatabase creates an empty database for t and returns its connection
// string. The database goes with the server.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", p.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.mu.Lock()
	_, err := p.admin.Exec(ctx, "CREATE DATABASE "+name)
	p.mu.Unlock()
	if err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return p.DSN(name)
}

// DSN is the connection string of a database on the server.
func (p *Postgres) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.Addr, database)
}

// Output is what the server wrote so far.
func (p *Postgres) Output() string { return p.out.String() }

func startPostgres(bin string) (*Postgres, error) {
	// initdb and postgres refuse to run as root: as root (CI, containers)
	// they run as the package's postgres user, in a directory it owns.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, so PostgreSQL must run as the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "zerodown-postgres-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir // the test's directory may be closed to the postgres user
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}

	port := freePort()
	p.Addr = "127.0.0.1:" + strconv.Itoa(port)
	// fsync off: the cluster lives as long as the test binary.
	p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+dir, "-c", "max_connections=300",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	// Its own process group, so that stop reaches the backends too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()

	// Ready when it accepts a connection; it refuses them while it starts up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p.admin, err = pgx.Connect(ctx, p.DSN("postgres"))
		cancel()
		if err == nil {
			break
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("postgres exited: %s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postgres on %s not ready after 30s: %w\n%s", p.Addr, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ok = true
	return p, nil
}

// freePort is FreePort without a test: the server outlives any one test.
func freePort() int {
	port, err := freeport.Port()
	if err != nil {
		return 1 // postgres then fails to start, saying why
	}
	return port
}

// stop shuts the server down at once (SIGQUIT: immediate shutdown, which
// also frees its shared memory), kills what is left after a deadline, and
// removes the cluster's files.
func (p *Postgres) stop() {
	if p.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.admin.Close(ctx)
		cancel()
	}
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if err := os.RemoveAll(p.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "remove PostgreSQL test cluster: %v\n", err)
	}
}
