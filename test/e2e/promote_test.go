package e2e

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPromote: production gets exactly the build and app spec that passed
// staging; a build that failed staging, or whose file changed since, is
// refused; history --path shows each build's way.
func TestPromote(t *testing.T) {
	t.Parallel()
	staging, production := startDriverAgents(t, 2), startDriverAgents(t, 2)
	startBuiltinFor(t, staging)
	startBuiltinFor(t, production)
	dir := t.TempDir()
	write := func(name string, extraArgs ...string) string {
		t.Helper()
		cfg := fmt.Sprintf(appYAML, appArgs(extraArgs...), filepath.Join(dir, "state.db")) +
			"environments:\n" + staging.envYAML("staging") + production.envYAML("production")
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("zerodown.yaml")
	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := staging.command(args...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	// Builds of their own: v1's file is changed at the end, and each
	// build has its own sha256.
	artifact, v2 := build(t, dir, "v1"), build(t, dir, "v2")

	if out, code := run("promote", "staging", "production", "-c", good); code != 2 || !strings.Contains(out, "staging has no run yet") {
		t.Fatalf("promote before any staging run: exit %d\n%s", code, out)
	}
	if out, code := run("deploy", "staging", "--version", "v1", "--artifact", artifact, "-c", good, "-o", "log"); code != 0 {
		t.Fatalf("deploy v1 to staging: exit %d\n%s", code, out)
	}
	staging.onVersion("v1")
	// The app spec of zerodown.yaml changed since staging's run: the
	// promotion deploys the spec that passed, not this one.
	changed := write("zerodown-changed.yaml", "--fail-health")
	if out, code := run("promote", "staging", "production", "-c", changed, "-o", "log"); code != 0 || !strings.Contains(out, "promoting v1") {
		t.Fatalf("promote v1: exit %d\n%s", code, out)
	}
	production.onVersion("v1")

	// v2 fails its health check on staging and is rolled back there: it
	// is not promoted, by default or by name.
	marker := filepath.Join(staging.agents[1].root, "fail")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := write("zerodown-bad.yaml", "--unhealthy-file", "../../fail")
	if out, code := run("deploy", "staging", "--version", "v2", "--artifact", v2, "-c", bad, "-o", "log"); code != 1 {
		t.Fatalf("deploy of a failing v2 to staging: exit %d, want 1\n%s", code, out)
	}
	os.Remove(marker)
	for _, args := range [][]string{{}, {"--version", "v2"}} {
		out, code := run(append([]string{"promote", "staging", "production", "-c", good}, args...)...)
		if code != 2 || !strings.Contains(out, "did not succeed (rolled_back)") || !strings.Contains(out, "v2 did not pass staging") {
			t.Fatalf("promote %v of a build that failed staging: exit %d, want 2\n%s", args, code, out)
		}
	}
	production.onVersion("v1")
	if out, code := run("promote", "staging", "production", "--version", "v7", "-c", good); code != 2 || !strings.Contains(out, "staging never ran version v7") {
		t.Fatalf("promote of a version staging never ran: exit %d\n%s", code, out)
	}

	// v1 passed staging, but its file changed since: refused.
	data, err := os.ReadFile(artifact)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(artifact, append(data, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := run("promote", "staging", "production", "--version", "v1", "-c", good); code != 2 || !strings.Contains(out, "changed since it passed staging") {
		t.Fatalf("promote of a changed artifact: exit %d\n%s", code, out)
	}

	out, code := run("history", "--path", "-c", good)
	if code != 0 || !strings.Contains(out, "BUILD") || !strings.Contains(out, "STAGING") || !strings.Contains(out, "PRODUCTION") ||
		!strings.Contains(out, "(promoted from r-") || !strings.Contains(out, "rolled_back") {
		t.Fatalf("history --path: exit %d\n%s", code, out)
	}
	t.Logf("history --path:\n%s", out)
}

// build writes the sample app's release as a build of its own: the same
// files, gzipped with tag as the gzip header's comment, so its sha256 is
// its own.
func build(t *testing.T, dir, tag string) string {
	t.Helper()
	f, err := os.Open(helloTarGz(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Comment = tag
	if _, err := io.Copy(zw, zr); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "hello-"+tag+".tar.gz")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
