package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/proctest"
)

// installBinary puts the zerodown binary at path the way a package manager
// does: a new file renamed over the old, so a running process keeps its
// own and the next one starts from the new.
func installBinary(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(bin.zerodown)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// readPID reads a PID file; 0 when it is missing or being replaced.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

var handoverRe = regexp.MustCompile(`handed over to a new process in (\d+) ms`)

// TestLBUpgradeUnderLoad upgrades `zerodown lb` to a new binary ten times
// while GETs and slow POSTs run through it: no connection may be refused
// and no request may fail, and every old process must exit once its
// requests are done. A new process that cannot start changes nothing.
func TestLBUpgradeUnderLoad(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "zerodown")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	installBinary(t, exe)
	_, a := startHello(t, "a", "v1")
	_, b := startHello(t, "b", "v1")
	f := &lbFixture{dir: dir, cfgPath: filepath.Join(dir, "lb.yaml")}
	listen, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := fmt.Sprintf(lbConfigTemplate, listen, admin, filepath.Join(dir, "admin.token"),
		filepath.Join(dir, "state.json"), a+", "+b, quickHealth)
	if err := os.WriteFile(f.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	f.url, f.admin = "http://"+listen, "http://"+admin
	pidFile := filepath.Join(dir, "lb.pid")
	f.startFrom(t, exe, "--pid-file", pidFile)
	// Processes started by upgrades are not the test's children: stop
	// whichever serves when the test ends.
	t.Cleanup(func() {
		if pid := readPID(pidFile); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	f.waitState(t, a, lb.StateHealthy, 10*time.Second)
	f.waitState(t, b, lb.StateHealthy, 10*time.Second)
	proctest.Eventually(t, 10*time.Second, "the PID file", func() bool { return readPID(pidFile) == f.proc.Pid() })

	l := startLoad(f.url, 200, 30000, 2*time.Minute)
	posts := startSlowPosts(f.url, 4, 2*time.Minute)
	defer func() {
		if t.Failed() {
			l.finish()
			posts.finish()
		}
	}()

	upgrade := func() (string, int) {
		cmd := exec.Command(exe, "lb", "upgrade", "--admin", f.admin, "--token-file", filepath.Join(dir, "admin.token"))
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			code = -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		return string(out), code
	}

	var handovers []string
	for i := 0; i < 10; i++ {
		old := readPID(pidFile)
		// A slow POST or two is in flight at every handover: the old
		// process must finish them.
		proctest.Eventually(t, 5*time.Second, "slow POSTs in flight", func() bool {
			ta, tb := f.target(t, a), f.target(t, b)
			return ta.InFlight+tb.InFlight > 0
		})
		installBinary(t, exe)
		out, code := upgrade()
		m := handoverRe.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("upgrade %d: exit %d: %s", i+1, code, out)
		}
		handovers = append(handovers, m[1]+" ms")
		proctest.Eventually(t, 10*time.Second, "the new process in the PID file", func() bool {
			pid := readPID(pidFile)
			return pid != 0 && pid != old
		})
		next := readPID(pidFile)
		// The new process runs the new file, not the one the old ran.
		if exeLink, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", next)); err != nil || exeLink != exe {
			t.Fatalf("upgrade %d: new process runs %q (%v), want %s", i+1, exeLink, err, exe)
		}
		proctest.Eventually(t, 20*time.Second, fmt.Sprintf("the old process %d to finish its requests and exit", old), func() bool {
			return !proctest.Running(old)
		})
	}
	t.Logf("handover times: %s", strings.Join(handovers, ", "))

	// A new process that cannot start (a bad config) changes nothing.
	good, _ := os.ReadFile(f.cfgPath)
	if err := os.WriteFile(f.cfgPath, []byte("listeners: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	serving := readPID(pidFile)
	out, code := upgrade()
	if code != 1 || !strings.Contains(out, "upgrade failed") {
		t.Fatalf("upgrade with a bad config: exit %d: %s", code, out)
	}
	if readPID(pidFile) != serving || !proctest.Running(serving) {
		t.Fatalf("a failed upgrade replaced the serving process %d", serving)
	}
	if err := os.WriteFile(f.cfgPath, good, 0o644); err != nil {
		t.Fatal(err)
	}

	// SIGUSR2 does the same without a client waiting.
	_ = syscall.Kill(serving, syscall.SIGUSR2)
	proctest.Eventually(t, 10*time.Second, "SIGUSR2 to hand over", func() bool {
		pid := readPID(pidFile)
		return pid != 0 && pid != serving
	})
	proctest.Eventually(t, 20*time.Second, "the process signalled to exit", func() bool { return !proctest.Running(serving) })

	l.finish()
	postReport := posts.finish()
	if l.failed.Load() > 0 || posts.failed.Load() > 0 {
		t.Fatalf("requests failed across upgrades:\nGET: %s\nPOST: %s", l.report(), postReport)
	}
	if l.ok.Load() < 1000 || posts.ok.Load() < 20 {
		t.Fatalf("too little load went through to prove anything: GET %s; POST %s", l.report(), postReport)
	}
	t.Logf("GET: %d ok; POST: %s", l.ok.Load(), postReport)
}

// startFrom runs `zerodown lb` from a given executable with extra flags.
func (f *lbFixture) startFrom(t *testing.T, exe string, extra ...string) {
	t.Helper()
	args := append([]string{"lb", "--config", f.cfgPath}, extra...)
	f.proc = proctest.Start(t, "zerodown lb", exe, args...)
	f.connect(t)
}
