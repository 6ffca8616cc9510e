package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestPauseResume: a pause task holds a deploy until `zerodown resume RUN`
// from another terminal, which returns at once and lets the run go on.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 2) // min_healthy 1 needs two
	startBuiltinFor(t, f)
	cfg := fmt.Sprintf(appYAML, "", filepath.Join(f.dir, "state.db")) + "environments:\n" + f.envYAML("production") + `pipelines:
  held:
    environment: production
    stages:
      - name: hold
        jobs: [ { tasks: [ {pause: {message: "look at the dashboards"}} ] } ]
      - name: update
        jobs: [ { tasks: [ {deploy: production-1}, {attach: production-1}, {wait-healthy: production-1} ] } ]
`
	cfgPath := filepath.Join(f.dir, "zerodown.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var run string
	out, code := zerodownWhile(t, func(out *proctest.Buffer) {
		proctest.Eventually(t, 30*time.Second, "the run to pause", func() bool { return strings.Contains(out.String(), "paused until") })
		m := regexp.MustCompile(`run (r-[0-9a-z-]+)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no run ID in\n%s", out.String())
		}
		run = m[1]
		if _, err := appVersion(f.agents[0].app); err == nil {
			t.Fatal("the app runs before the pause was resumed")
		}
		o, err := exec.Command(bin.zerodown, "resume", run, "-c", cfgPath).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "stage hold of run "+run+" resumed by ") {
			t.Fatalf("resume of the paused run: %v\n%s", err, o)
		}
	}, "deploy", "production", "--pipeline", "held", "--version", "v1", "--artifact", helloTarGz(t), "-c", cfgPath, "-o", "log")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	if v, err := appVersion(f.agents[0].app); err != nil || v != "v1" {
		t.Fatalf("production-1 answers %q (%v) after the run, want v1", v, err)
	}
	if !strings.Contains(out, "resumed by") {
		t.Errorf("the run's output does not say who resumed it:\n%s", out)
	}
	if o, err := exec.Command(bin.zerodown, "resume", run, "-c", cfgPath).CombinedOutput(); err == nil {
		t.Fatalf("resume of an ended run succeeded:\n%s", o)
	}
}
