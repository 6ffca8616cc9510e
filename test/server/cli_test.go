package server

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/server/api"
)

// TestCLIAgainstServer drives a SQLite-backed server with the real CLI, as
// a CD job does (ZERODOWN_SERVER and ZERODOWN_TOKEN in its environment):
// deploys stream to their end with local exit codes and JSON lines,
// history and show read the server, refusals exit 2 without a run, and an
// abort from another CLI rolls the run back; users of the balancer see no
// failed request throughout.
func TestCLIAgainstServer(t *testing.T) {
	t.Parallel()
	sb := startFleet(t, 2)
	dir := t.TempDir()
	cfg, url := writeServerConfig(t, dir, serverOpts{deploy: sb.Config, data: filepath.Join(dir, "data"),
		artifacts: filepath.Join(dir, "artifacts"), lease: 3 * time.Second})
	admin := createToken(t, cfg, "ci", "admin")
	viewer := createToken(t, cfg, "watcher", "viewer")
	startServer(t, "zerodown server", cfg, url)
	env := clientEnv(url, admin)
	cl := client(t, url, admin)

	// The first release lands on hosts that serve nothing yet: users come
	// once it is there.
	v1 := deployOK(t, env, sb.Artifact, "v1")
	ld := startLoad(t, sb.LB, 2, 3, 500*time.Millisecond, 3*time.Minute)
	v2 := deployOK(t, env, sb.Artifact, "v2")

	t.Run("history and show", func(t *testing.T) {
		// --server names the server as well as the environment does.
		r := zerodown(t, clientEnv("", admin), "history", "staging", "--server", url)
		if r.code != 0 {
			t.Fatalf("history: %s", r)
		}
		for id, version := range map[string]string{v1: "v1", v2: "v2"} {
			if !regexp.MustCompile(regexp.QuoteMeta(id) + ` +staging +` + version + ` +succeeded`).MatchString(r.stdout) {
				t.Errorf("history does not list run %s (%s succeeded):\n%s", id, version, r.stdout)
			}
		}
		r = zerodown(t, clientEnv("", admin), "show", v2, "--server", url)
		if r.code != 0 || !strings.Contains(r.stdout, v2) || !strings.Contains(r.stdout, "succeeded") || !strings.Contains(r.stdout, "staging-2") {
			t.Fatalf("show %s: %s", v2, r)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			env    []string
			target string // the environment deployed to
			extra  []string
			stderr string // part of the message that says why
		}{
			{"an unknown pipeline", env, "staging", []string{"--pipeline", "nope"}, `no pipeline "nope"`},
			{"an unknown environment", env, "production", nil, `no environment "production"`},
			{"no token", clientEnv(url, ""), "staging", nil, "ZERODOWN_TOKEN"},
			{"a wrong token", clientEnv(url, "zdt_0123456789ab_wrong"), "staging", nil, "401 unauthorized"},
			{"a viewer's token", clientEnv(url, viewer), "staging", nil, "role viewer"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"deploy", tc.target, "--version", "v9", "--artifact", sb.Artifact, "-o", "json"}, tc.extra...)
				r := zerodown(t, tc.env, args...)
				if r.code != 2 || !strings.Contains(r.stderr, tc.stderr) {
					t.Fatalf("want exit 2 (bad input) saying %q: %s", tc.stderr, r)
				}
			})
		}
		// None of them left a run behind.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		runs, err := cl.Runs(ctx, api.RunQuery{Env: "staging"})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs.Runs) != 2 {
			t.Fatalf("%d runs after the refusals, want the 2 deploys: %+v", len(runs.Runs), runs.Runs)
		}
	})

	t.Run("abort", func(t *testing.T) {
		cmd := exec.Command(bin.zerodown, "deploy", "staging", "--version", "v3", "--artifact", sb.Artifact, "-o", "json")
		cmd.Dir, cmd.Env = t.TempDir(), env
		dep := proctest.StartCmd(t, "zerodown deploy v3", cmd)
		var id string
		proctest.Eventually(t, time.Minute, "the deploy's run_started line", func() bool {
			if dep.Exited() {
				t.Fatalf("deploy v3 ended before it was aborted:\n%s", dep.Output())
			}
			id, _ = jsonRun(t, dep.Output())
			return id != ""
		})
		// Abort once a host runs v3, so there is something to roll back.
		proctest.Eventually(t, time.Minute, "a host of run "+id+" to be activated", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			evs, err := cl.Events(ctx, id, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.Type == "activated" {
					return true
				}
			}
			if dep.Exited() {
				t.Fatalf("deploy v3 ended before it was aborted:\n%s", dep.Output())
			}
			return false
		})
		if r := zerodown(t, env, "abort", id, "--server", url); r.code != 0 || !strings.Contains(r.stdout, "abort requested") {
			t.Fatalf("abort %s: %s", id, r)
		}
		if code := dep.Wait(t, 2*time.Minute); code != 1 {
			t.Fatalf("the aborted deploy exited %d, want 1:\n%s", code, dep.Output())
		}
		_, fin := jsonRun(t, dep.Output())
		if fin == nil || fin.Status != "aborted" || fin.ExitCode != 1 {
			t.Fatalf("the aborted deploy's last line: %+v\n%s", fin, dep.Output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, err := cl.Run(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != "aborted" || !d.Abort || d.AbortBy != "ci" {
			t.Fatalf("run %s after the abort: %+v", id, d.Run)
		}
		waitHosts(t, url, admin, "v2", len(sb.Hosts))
	})

	ld.check(t, 200, 10)
}

// deployOK deploys version with the CLI against the server and checks
// what a CD job checks: exit 0, and -o json's first and last lines.
func deployOK(t *testing.T, env []string, artifact, version string) string {
	t.Helper()
	r := zerodown(t, env, "deploy", "staging", "--version", version, "--artifact", artifact, "-o", "json")
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Fatalf("deploy %s -o json printed a line that is not JSON: %q\n%s", version, line, r)
		}
	}
	id, fin := jsonRun(t, r.stdout)
	if r.code != 0 || id == "" || fin == nil || fin.Status != "succeeded" || fin.ExitCode != 0 || !strings.Contains(string(fin.Run), id) {
		t.Fatalf("deploy %s: %s", version, r)
	}
	return id
}
