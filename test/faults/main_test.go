// Package faults runs real rolling deploys — `zerodown deploy`, three
// `zerodown agent` processes supervising the sample app, `zerodown lb` in
// front — while Toxiproxy, running inside the test, breaks the links
// between them, and while processes are killed. Each fault is one row:
// under it, an external client's GETs and POSTs must not fail or run twice,
// and the run must end in a clean state it reports clearly. The rows make a
// table, docs/faults.md (ZERODOWN_WRITE_FAULTS=1 rewrites it).
package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/zerodown/zerodown/internal/proctest"
)

var bin struct {
	zerodown, hello string
	// missing says why the binaries could not be built, when the Go
	// toolchain is not on PATH.
	missing string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zerodown-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.zerodown = filepath.Join(dir, "zerodown")
	bin.hello = filepath.Join(dir, "hello")
	if _, err := exec.LookPath("go"); err != nil {
		bin.missing = "the go command is not on PATH, so zerodown and the sample app cannot be built: " + err.Error()
	} else if err := build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build builds zerodown with proctest.BuildGo, so with the race detector
// when the tests have it, and the sample app without it, stripped: the app
// is the fixture, not what is tested, and a small artifact keeps every
// upload and start of it short.
func build() error {
	if err := proctest.BuildGo(bin.zerodown, "../../cmd/zerodown"); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin.hello, "../../examples/hello")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build ../../examples/hello: %w", err)
	}
	return nil
}

// needBinaries skips a test that cannot run here, except on CI (CI set),
// where a skip would hide that the suite did not run at all.
func needBinaries(t *testing.T) {
	t.Helper()
	if bin.missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal(bin.missing)
	}
	t.Skip(bin.missing)
}
