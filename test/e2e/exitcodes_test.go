package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployExitCodes checks every documented exit code of `zerodown
// deploy` through the binary: 2 for bad input found before anything
// changes (and no run is created for it), 0 deployed, 1 failed and rolled
// back, 3 left for a person.
func TestDeployExitCodes(t *testing.T) {
	f := startFleet(t)
	good := f.config("zerodown.yaml", 1, "")
	dir := t.TempDir()
	notGzip := filepath.Join(dir, "app.tar.gz")
	if err := os.WriteFile(notGzip, []byte("this is not a gzip file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(badYAML, []byte("environments: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrongAgentToken := filepath.Join(dir, "wrong-agent.token")
	if err := os.WriteFile(wrongAgentToken, []byte("not-the-agent-token-at-all-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withWrong := func(name, old, new string) string {
		b, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	agentToken := filepath.Join(f.agents[0].root, "agent.token")
	wrongAgent := withWrong("wrong-agent.yaml", agentToken, wrongAgentToken)
	wrongLB := withWrong("wrong-lb.yaml", filepath.Join(f.lb.dir, "admin.token"), wrongAgentToken)

	cases := []struct {
		name string
		args []string
		want int
		says string
	}{
		{"no version", []string{"deploy", "staging", "--artifact", f.artifact, "-c", good}, 2, "--version"},
		{"unknown environment", []string{"deploy", "nowhere", "--version", "v1", "--artifact", f.artifact, "-c", good}, 2, `no environment "nowhere"`},
		{"broken config", []string{"deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", badYAML}, 2, "broken.yaml"},
		{"artifact is a directory", []string{"deploy", "staging", "--version", "v1", "--artifact", dir, "-c", good}, 2, "not a regular file"},
		{"artifact is not a gzip file", []string{"deploy", "staging", "--version", "v1", "--artifact", notGzip, "-c", good}, 2, "is not one"},
		{"version with a space", []string{"deploy", "staging", "--version", "v 6", "--artifact", f.artifact, "-c", good}, 2, `version "v 6"`},
		{"wrong agent token", []string{"deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", wrongAgent}, 2, "token"},
		{"wrong load balancer token", []string{"deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", wrongLB}, 2, "token"},
		{"deployed", []string{"deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", good}, 0, "succeeded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, code := f.zerodown(c.args...)
			if code != c.want || !strings.Contains(out, c.says) {
				t.Fatalf("exit %d, want %d saying %q:\n%s", code, c.want, c.says, out)
			}
		})
	}
	// Bad input leaves no run behind: the journal has the one deploy.
	out, _ := f.zerodown("history", "-c", good)
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("history after the refused deploys has %d lines, want a header and one run:\n%s", n, out)
	}

	bad := f.failingOn(t, 1, "zerodown-bad.yaml")
	out, code := f.zerodown("deploy", "staging", "--version", "v2", "--artifact", f.artifact, "-c", bad)
	if code != 1 || !strings.Contains(out, "rolled back") {
		t.Fatalf("a failing release: exit %d, want 1:\n%s", code, out)
	}
	f.onVersion(all, "v1")

	manual := f.config("zerodown-manual.yaml", 1, "", "--unhealthy-file", "../../fail")
	b, _ := os.ReadFile(manual)
	if err := os.WriteFile(manual, []byte(strings.Replace(string(b), "    strategy:\n", "    rollback: manual\n    strategy:\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = f.zerodown("deploy", "staging", "--version", "v3", "--artifact", f.artifact, "-c", manual)
	if code != 3 || !strings.Contains(out, "needs attention") || !strings.Contains(out, "staging-1") {
		t.Fatalf("rollback: manual: exit %d, want 3 naming the hosts:\n%s", code, out)
	}
}
