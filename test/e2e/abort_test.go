package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestAbortEndsActivationWait aborts a deploy while an agent is busy with
// an activation that does not end by itself (a before_start hook waits for
// a gate file): the run must stop waiting at once, its rollback must wait
// for the activation the agent goes on with, and once that ends, put the
// host back on v1 — every host serving v1 and healthy at the end.
func TestAbortEndsActivationWait(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	cfg := f.config("zerodown.yaml", 1, "")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The hook runs in releases/<version>/: the gate is in the agent's root.
	hooked := strings.Replace(string(b), "  health:", `  hooks: { before_start: [["sh", "-c", "while [ ! -e ../../gate ]; do sleep 0.05; done"]] }
  health:`, 1)
	if err := os.WriteFile(cfg, []byte(hooked), 0o644); err != nil {
		t.Fatal(err)
	}
	gates := make([]string, len(f.agents))
	for i, a := range f.agents {
		gates[i] = filepath.Join(a.root, "gate")
		if err := os.WriteFile(gates[i], nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := f.zerodown("deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", cfg, "-o", "log"); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	// staging-1's activation of v2 will hang in its hook.
	if err := os.Remove(gates[0]); err != nil {
		t.Fatal(err)
	}
	deploy := proctest.StartCmd(t, "zerodown deploy v2", exec.Command(bin.zerodown, "deploy", "staging", "--version", "v2",
		"--artifact", f.artifact, "-c", cfg, "-o", "log"))
	proctest.Eventually(t, 60*time.Second, "the activation's progress in its hooks", func() bool {
		return strings.Contains(deploy.Output(), "activate: hooks")
	})
	deploy.Signal(os.Interrupt)
	interrupted := time.Now()
	proctest.Eventually(t, 10*time.Second, "the rollback to wait for the activation still running", func() bool {
		return strings.Contains(deploy.Output(), "waiting for its activation of v2 to end")
	})
	if waited := time.Since(interrupted); waited > 5*time.Second {
		t.Fatalf("the abort took %s to end the wait for the activation", waited)
	}
	if deploy.Exited() {
		t.Fatalf("the run ended before the activation it left behind:\n%s", deploy.Output())
	}
	if err := os.WriteFile(gates[0], nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := deploy.Wait(t, 2*time.Minute); code != 1 {
		t.Fatalf("aborted and rolled back run: exit %d, want 1\n%s", code, deploy.Output())
	}
	f.onVersion(all, "v1")
}
