// Package server runs `zerodown server` as real processes in front of a
// real loopback fleet (internal/demo: `zerodown lb`, agents, the sample
// app) and checks what its users see: the CLI as its client, and replicas
// on one PostgreSQL database taking over each other's runs.
package server

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/zerodown/zerodown/internal/proctest"
)

var bin struct {
	zerodown, hello string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zerodown-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.zerodown = filepath.Join(dir, "zerodown")
	bin.hello = filepath.Join(dir, "hello")
	for out, pkg := range map[string]string{bin.zerodown: "../../cmd/zerodown", bin.hello: "../../examples/hello"} {
		if err := proctest.BuildGo(out, pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	proctest.StopPostgres()
	os.RemoveAll(dir)
	os.Exit(code)
}
