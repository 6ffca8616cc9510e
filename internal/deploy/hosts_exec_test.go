package deploy

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine/enginetest"
	"github.com/zerodown/zerodown/internal/host"
)

// TestExecHostsSkipOnlyWhenAsked: a re-run skips an exec host whose status
// script says it runs the version, never one without a status script,
// though zerodown itself put the version there; the records and the
// artifacts live beside the journal.
func TestExecHostsSkipOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) []string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return []string{p, "${HOST}", "${VERSION}"}
	}
	deploySh := script("deploy.sh", `echo "$2" > "$1.version"`)
	statusSh := script("status.sh", `cat "$1.version" 2>/dev/null || true`)
	cfg := &config.Deploy{State: filepath.Join(dir, "state", "state.db")}
	env := &config.Environment{Name: "staging", Hosts: []config.Host{
		{Name: "web-1", Target: "127.0.0.1:8101", Exec: &config.HostExec{Deploy: deploySh, Status: statusSh, Dir: dir}},
		{Name: "web-2", Target: "127.0.0.1:8102", Exec: &config.HostExec{Deploy: deploySh, Dir: dir}},
	}}
	hosts, closeAll, err := Hosts(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	// An empty artifact, with the sha256 of no bytes.
	rel := host.Release{Version: "v2", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Format: host.FormatTarGz,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }}
	for _, h := range env.Hosts {
		d := hosts[h.Name].Deployer
		if err := d.Upload(context.Background(), rel); err != nil {
			t.Fatal(err)
		}
		if err := d.Activate(context.Background(), "v2"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{
		filepath.Join(dir, "state", "exec-hosts", "staging", "web-1.json"),
		filepath.Join(dir, "state", "artifacts", rel.SHA256, "release.tar.gz"),
	} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("not beside the journal: %v", err)
		}
	}
	f := &fleet{cfg: cfg, env: env, bal: enginetest.NewLB("127.0.0.1:8101", "127.0.0.1:8102"), hosts: hosts}
	skip, err := f.alreadyDone(context.Background(), "v2")
	if err != nil {
		t.Fatal(err)
	}
	if !skip["web-1"] || skip["web-2"] {
		t.Fatalf("skipped %v, want web-1 only", skip)
	}
	if got := Unskippable(env); !slices.Equal(got, []string{"web-2"}) {
		t.Fatalf("Unskippable: %v", got)
	}
}
