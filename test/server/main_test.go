// Package server runs `zerodown server` as real processes in front of a
// real loopback fleet (internal/demo: `zerodown lb`, agents, the sample
// app) and checks what its users see: the CLI as its client, and replicas
// on one PostgreSQL database taking over each other's runs.
package server

import (
	"fmt"
	"os"
	"testing"

	"github.com/zerodown/zerodown/internal/proctest"
)

var bin struct {
	zerodown, hello string
}

func TestMain(m *testing.M) {
	b, err := proctest.BuildBinaries("zerodown-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.zerodown, bin.hello = b.Zerodown, b.Hello
	code := m.Run()
	proctest.StopPostgres()
	b.Remove()
	os.Exit(code)
}
