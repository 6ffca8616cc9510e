package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// execFleetConfig is checkFleet's environment with exec hosts: web-1 with
// a status script (its body statusBody), web-2 without one.
func (f *checkFleet) execConfig(t *testing.T, statusBody string) string {
	t.Helper()
	for name, body := range map[string]string{"deploy.sh": "exit 0", "status.sh": statusBody} {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return writeDeployConfig(t, f.dir, fmt.Sprintf(`app: {run: [./hello]}
environments:
  web:
    lb: {admin: %q, pool: hello, token_file: secrets/lb.token}
    hosts:
      - {name: web-1, target: %q, exec: {deploy: [./deploy.sh, "${HOST}", "${VERSION}", "${ARTIFACT}"], status: [./status.sh, "${HOST}"], timeout: 5s}}
      - {name: web-2, target: %q, exec: {deploy: [./deploy.sh, "${HOST}", "${VERSION}", "${ARTIFACT}"]}}
`, f.admin, f.target1, f.target2))
}

// TestExecHostsCheckPlanValidate: check runs an exec host's status script
// and shows its answer, or that there is none; validate and plan say
// that a host without one is never skipped.
func TestExecHostsCheckPlanValidate(t *testing.T) {
	f := newCheckFleet(t)

	cases := []struct {
		name, status string
		code         int
		stdout       []string
		stderr       string
	}{
		{"status script says v1", `echo v1`, ExitOK, []string{
			"web-1  exec   yes        -      v1       -         exec host: status script says v1  " + f.target1 + "  healthy",
			"web-2  exec   yes        -      -        -         exec host: no status script       " + f.target2 + "  healthy",
			"ok: the load balancer answered and accepted its token, and 2 exec hosts answered",
		}, ""},
		{"status script fails", `echo "cannot read /srv/app/VERSION" >&2; exit 1`, ExitFailed, []string{"exec host: status script failed"},
			"web-1: status script ./status.sh for web-1: exit status 1 after"},
		{"status script prints garbage", `echo "<html>502</html>"`, ExitFailed, nil,
			`web-1: status script ./status.sh for web-1 printed "<html>502</html>", which is not a version`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := f.execConfig(t, tc.status)
			code, stdout, stderr := runCheck(t, "web", "-c", path)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want %q\nstdout:\n%s", code, tc.code, stderr, tc.stderr, stdout)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout without %q:\n%s", want, stdout)
				}
			}
		})
	}

	path := f.execConfig(t, "echo v1")
	warning := "environments.web.hosts[1].exec: cannot skip hosts already on the version: no exec.status"
	if code, _, stderr := runValidate(t, "-c", path); code != ExitOK || !strings.Contains(stderr, warning) || strings.Contains(stderr, "hosts[0]") {
		t.Fatalf("validate: exit %d\nstderr:\n%s", code, stderr)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"plan", "web", "-c", path}, &out, &errOut); code != ExitOK || !strings.Contains(errOut.String(), warning) {
		t.Fatalf("plan: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
}

// TestShowPrintsOutput: show prints every line of an event, so a script's
// output in the journal is read there.
func TestShowPrintsOutput(t *testing.T) {
	dir := t.TempDir()
	path := writeDeployConfig(t, dir, validDeployConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(dir, ".zerodown", "state.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.CreateRun(ctx, store.Run{Env: "staging", Pipeline: "rolling", Version: "v2", Status: store.RunSucceeded})
	if err == nil {
		_, err = st.AppendEvent(ctx, store.Event{RunID: run.ID, Host: "web-1", Type: "info",
			Message: "deploy script ./deploy.sh: exit status 0 after 1.2s; output:\nunpacked v2\nstarted pid 4242"})
	}
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	var out, errOut bytes.Buffer
	if code := Main([]string{"show", run.ID, "-c", path}, &out, &errOut); code != ExitOK {
		t.Fatalf("show: exit %d\n%s", code, errOut.String())
	}
	for _, want := range []string{"web-1  info   deploy script ./deploy.sh: exit status 0 after 1.2s; output:", "  | unpacked v2\n", "  | started pid 4242\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show without %q:\n%s", want, out.String())
		}
	}
}
