package exechost

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proctest"
)

// TestDeployHangs: a deploy script that hangs is killed at exec.timeout
// with the child it forked, and the error says so with its output.
func TestDeployHangs(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	x.Deploy = []string{f.script("hang.sh", `sleep 300 & echo $! > child.pid; echo "waiting for the database"; sleep 300`)}
	x.Timeout = config.Duration(500 * time.Millisecond)
	d := f.deployer(x)
	start := time.Now()
	err := deploy(t, d, release("v2", "two"))
	if err == nil || !strings.Contains(err.Error(), "deploy script ./hang.sh for web-1: did not finish within 500ms and was killed") ||
		!strings.Contains(err.Error(), "waiting for the database") {
		t.Fatalf("error %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("took %s", took)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(f.read("child.pid")))
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "the script's child to be killed", func() bool { return !proctest.Running(pid) })
	if st, err := d.Status(context.Background()); err != nil || st.Activating != "" {
		t.Fatalf("status after the deadline: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "version")); err == nil {
		t.Fatal("the hung script got further than it did")
	}
}
