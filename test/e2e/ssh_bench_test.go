package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSSHRolloutBench measures for bench/ssh.sh (it runs only when
// ZERODOWN_BENCH_SSH is set): bootstrapping two hosts from nothing, doing
// it again, and two-host rollouts over SSH next to the same rollouts with
// the same agents reached directly, alternating, on one fleet.
func TestSSHRolloutBench(t *testing.T) {
	if os.Getenv("ZERODOWN_BENCH_SSH") == "" {
		t.Skip("a benchmark: bench/ssh.sh runs it")
	}
	runs := 5
	f := startSSHFleet(t)
	viaSSH := f.config("zerodown-ssh.yaml", f.known)
	start := time.Now()
	if _, out, code := f.bootstrap(viaSSH); code != 0 {
		t.Fatalf("bootstrap: exit %d\n%s", code, out)
	}
	first := time.Since(start)
	start = time.Now()
	if _, out, code := f.bootstrap(viaSSH); code != 0 {
		t.Fatalf("bootstrap again: exit %d\n%s", code, out)
	}
	again := time.Since(start)

	// The same agents, reached at their loopback ports with their tokens.
	b, err := os.ReadFile(viaSSH)
	if err != nil {
		t.Fatal(err)
	}
	direct := string(b)
	for i, s := range f.sshd {
		tok := filepath.Join(f.hostDir, fmt.Sprintf("agent-%d", f.agentPts[i]), "root", "agent.token")
		direct = strings.Replace(direct, fmt.Sprintf("ssh: %q, ", s.Addr), fmt.Sprintf("token_file: %q, ", tok), 1)
	}
	directPath := filepath.Join(f.dir, "zerodown-direct.yaml")
	if err := os.WriteFile(directPath, []byte(direct), 0o644); err != nil {
		t.Fatal(err)
	}
	deploy := func(cfg, version string) time.Duration {
		start := time.Now()
		out, code := f.zerodown("deploy", "staging", "--version", version, "--artifact", f.artifact, "-c", cfg, "-o", "log")
		if code != 0 {
			t.Fatalf("deploy %s with %s: exit %d\n%s", version, filepath.Base(cfg), code, out)
		}
		return time.Since(start)
	}
	deploy(directPath, "v0")
	var sshTimes, directTimes []time.Duration
	for i := 0; i < runs; i++ {
		sshTimes = append(sshTimes, deploy(viaSSH, fmt.Sprintf("v%d-ssh", i+1)))
		directTimes = append(directTimes, deploy(directPath, fmt.Sprintf("v%d-direct", i+1)))
	}
	med := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
	t.Logf("bench: bootstrap from nothing %.3f s, again %.3f s; rollout over SSH median %.3f s (min %.3f, max %.3f), direct median %.3f s (min %.3f, max %.3f), %d runs each",
		first.Seconds(), again.Seconds(),
		med(sshTimes).Seconds(), slices.Min(sshTimes).Seconds(), slices.Max(sshTimes).Seconds(),
		med(directTimes).Seconds(), slices.Min(directTimes).Seconds(), slices.Max(directTimes).Seconds(), runs)
}
