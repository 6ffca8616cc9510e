//go:build linux

package supervise_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/supervise"
)

// within bounds every wait of these tests: the machine may be busy, and
// the programs run with the race detector.
const within = 30 * time.Second

// rig is one supervisor's files: its pid file, its log, and the directory
// its child reports to.
type rig struct {
	t       *testing.T
	dir     string
	pidFile string
	log     string
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	r := &rig{t: t, dir: dir, pidFile: filepath.Join(dir, "agent.pid"), log: filepath.Join(dir, "agent.log")}
	// The child is in the supervisor's process group, which the test's
	// cleanup kills, and gets SIGTERM when the supervisor dies; this is
	// for a child that outlived both by mistake.
	t.Cleanup(func() {
		c, ok := readChild(dir)
		if !ok {
			return
		}
		// A child killed with its group a moment ago may still be dying.
		deadline := time.Now().Add(5 * time.Second)
		for proctest.Running(c.pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if proctest.Running(c.pid) {
			syscall.Kill(c.pid, syscall.SIGKILL)
			if !t.Failed() {
				t.Errorf("child %d still ran after the test", c.pid)
			}
		}
	})
	return r
}

// command is the supervisor started from program (this test binary, a
// copy, or a symlink to one) with the rig's files.
func (r *rig) command(program string, args ...string) *exec.Cmd {
	cmd := exec.Command(program, append([]string{"supervise", "--pid-file", r.pidFile, "--log", r.log, "--dir", r.dir}, args...)...)
	cmd.Env = append(os.Environ(), roleEnv+"=1")
	return cmd
}

func (r *rig) start(program string, args ...string) *proctest.Proc {
	r.t.Helper()
	return proctest.StartCmd(r.t, "supervisor", r.command(program, args...))
}

// waitChild waits for a running child other than pid not.
func (r *rig) waitChild(not int) childReport {
	r.t.Helper()
	var c childReport
	proctest.Eventually(r.t, within, "a child other than pid "+strconv.Itoa(not), func() bool {
		var ok bool
		c, ok = readChild(r.dir)
		return ok && c.pid != not && proctest.Running(c.pid)
	})
	return c
}

func (r *rig) logText() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

func (r *rig) waitLog(s string) {
	r.t.Helper()
	proctest.Eventually(r.t, within, "the log to say "+strconv.Quote(s), func() bool {
		return strings.Contains(r.logText(), s)
	})
}

func (r *rig) pidInFile() int {
	b, err := os.ReadFile(r.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// logLine is one of the supervisor's own lines.
type logLine struct {
	at  time.Time
	msg string
}

func (r *rig) supervisorLines() []logLine {
	r.t.Helper()
	var lines []logLine
	for l := range strings.Lines(r.logText()) {
		rest, ok := strings.CutPrefix(strings.TrimSuffix(l, "\n"), "zerodown-supervise ")
		if !ok {
			continue
		}
		ts, msg, ok := strings.Cut(rest, ": ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if !ok || err != nil {
			r.t.Fatalf("log line %q: want zerodown-supervise <RFC 3339 time>: <message>", l)
		}
		lines = append(lines, logLine{at, msg})
	}
	return lines
}

func testBinary(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestRestartsACrashedChildWithBackoff(t *testing.T) {
	r := newRig(t)
	const backoff, maxBackoff = 250 * time.Millisecond, time.Second
	sup := r.start(testBinary(t), "--backoff", backoff.String(), "--max-backoff", maxBackoff.String())

	// Quick crashes double the wait up to max-backoff; a child that stayed
	// up max-backoff brings it back to backoff.
	c := r.waitChild(0)
	for i, want := range []time.Duration{backoff, 2 * backoff, maxBackoff, maxBackoff, backoff} {
		if want == backoff && i > 0 {
			proctest.Eventually(t, within, "the child to stay up max-backoff", func() bool {
				return time.Since(c.started) > maxBackoff+100*time.Millisecond
			})
		}
		syscall.Kill(c.pid, syscall.SIGUSR1)
		next := r.waitChild(c.pid)
		r.waitLog("started " + testBinary(t) + " child --dir " + r.dir + " (pid " + strconv.Itoa(next.pid) + ")")
		if proctest.Running(c.pid) {
			t.Fatalf("crash %d: the crashed child %d still runs", i+1, c.pid)
		}

		lines := r.supervisorLines()
		exitAt, restartAt := -1, -1
		for j, l := range lines {
			if strings.Contains(l.msg, "(pid "+strconv.Itoa(c.pid)+") exited on its own") {
				exitAt = j
			}
			if strings.Contains(l.msg, "(pid "+strconv.Itoa(next.pid)+")") {
				restartAt = j
			}
		}
		if exitAt < 0 || restartAt != exitAt+2 {
			t.Fatalf("crash %d: want the exit of %d, the wait, the start of %d in the log; got\n%s", i+1, c.pid, next.pid, r.logText())
		}
		if !strings.HasSuffix(lines[exitAt].msg, ": exit status 3") {
			t.Errorf("crash %d: the exit status is not logged: %q", i+1, lines[exitAt].msg)
		}
		if got := lines[exitAt+1].msg; got != "restarting in "+want.String() {
			t.Errorf("crash %d: %q, want restarting in %s", i+1, got, want)
		}
		if gap := lines[restartAt].at.Sub(lines[exitAt].at); gap < want {
			t.Errorf("crash %d: restarted %s after the exit, want at least %s", i+1, gap, want)
		}
		c = next
	}
	if got := r.pidInFile(); got != sup.Pid() {
		t.Errorf("pid file holds %d, want the supervisor's %d", got, sup.Pid())
	}
	sup.Signal(syscall.SIGTERM)
	if code := sup.Wait(t, within); code != 0 {
		t.Fatalf("supervisor exited %d, want 0", code)
	}
}

func TestStopsTheChildAndExits(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			r := newRig(t)
			sup := r.start(testBinary(t))
			c := r.waitChild(0)
			proctest.Eventually(t, within, "the pid file", func() bool { return r.pidInFile() == sup.Pid() })

			sup.Signal(sig)
			if code := sup.Wait(t, within); code != 0 {
				t.Fatalf("supervisor exited %d, want 0; output:\n%s", code, sup.Output())
			}
			if proctest.Running(c.pid) {
				t.Errorf("the child %d runs on", c.pid)
			}
			log := r.logText()
			if !strings.Contains(log, "child "+strconv.Itoa(c.pid)+" got SIGTERM") {
				t.Errorf("the child did not get SIGTERM; log:\n%s", log)
			}
			if _, err := os.Stat(r.pidFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the pid file is still there (%v)", err)
			}
		})
	}
}

func TestKillsAChildThatDoesNotStop(t *testing.T) {
	r := newRig(t)
	sup := r.start(testBinary(t), "--child-ignores-term", "--stop-timeout", "300ms")
	c := r.waitChild(0)
	sup.Signal(syscall.SIGTERM)
	if code := sup.Wait(t, within); code != 0 {
		t.Fatalf("supervisor exited %d, want 0", code)
	}
	if proctest.Running(c.pid) {
		t.Errorf("the child %d runs on", c.pid)
	}
	log := r.logText()
	for _, want := range []string{
		"child " + strconv.Itoa(c.pid) + " got SIGTERM",
		"did not exit within 300ms of SIGTERM: SIGKILL",
		"(pid " + strconv.Itoa(c.pid) + ") exited: signal: killed",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}

// copyFile copies the test binary to dst, executable: another "build".
// It appears whole (a rename), since a supervisor may try to run it.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

// switchLink points link at target atomically, as an upgrade does.
func switchLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

func TestSIGHUPRestartsFromTheSwitchedProgram(t *testing.T) {
	r := newRig(t)
	old, upgraded := filepath.Join(r.dir, "zerodown-old"), filepath.Join(r.dir, "zerodown-new")
	copyFile(t, testBinary(t), old)
	copyFile(t, testBinary(t), upgraded)
	program := filepath.Join(r.dir, "zerodown")
	switchLink(t, old, program)

	sup := r.start(program)
	c := r.waitChild(0)
	if c.exe != old {
		t.Fatalf("the child runs %s, want %s", c.exe, old)
	}
	supExe := func() string {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(sup.Pid()) + "/exe")
		return exe
	}
	if supExe() != old {
		t.Fatalf("the supervisor runs %s, want %s", supExe(), old)
	}

	switchLink(t, upgraded, program)
	sup.Signal(syscall.SIGHUP)
	next := r.waitChild(c.pid)
	if next.exe != upgraded {
		t.Errorf("after SIGHUP the child runs %s, want %s", next.exe, upgraded)
	}
	if supExe() != upgraded {
		t.Errorf("after SIGHUP the supervisor (pid %d) runs %s, want %s", sup.Pid(), supExe(), upgraded)
	}
	if sup.Exited() {
		t.Fatal("the supervisor exited")
	}
	if proctest.Running(c.pid) {
		t.Errorf("the old child %d runs on", c.pid)
	}
	log := r.logText()
	for _, want := range []string{
		"child " + strconv.Itoa(c.pid) + " got SIGTERM",
		"re-executing the supervisor: " + program + " supervise --pid-file",
		"supervisor re-executed from " + program + " (pid " + strconv.Itoa(sup.Pid()) + ")",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	if got := r.pidInFile(); got != sup.Pid() {
		t.Errorf("pid file holds %d, want the supervisor's %d", got, sup.Pid())
	}

	// The new supervisor is a supervisor like the old one.
	sup.Signal(syscall.SIGTERM)
	if code := sup.Wait(t, within); code != 0 {
		t.Fatalf("supervisor exited %d, want 0", code)
	}
	if proctest.Running(next.pid) {
		t.Errorf("the child %d runs on", next.pid)
	}
	if _, err := os.Stat(r.pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pid file is still there (%v)", err)
	}
}

func TestSIGHUPWithAProgramThatIsGoneSupervisesOn(t *testing.T) {
	r := newRig(t)
	program := filepath.Join(r.dir, "zerodown")
	copyFile(t, testBinary(t), program)
	sup := r.start(program)
	c := r.waitChild(0)
	os.Remove(program)
	sup.Signal(syscall.SIGHUP)
	r.waitLog("supervising on as before")
	// The child cannot start either (its program is gone); once it is
	// back, the supervisor starts it.
	r.waitLog("start " + program + ": ")
	copyFile(t, testBinary(t), program)
	r.waitChild(c.pid)
	if sup.Exited() {
		t.Fatal("the supervisor exited")
	}
}

func TestASecondSupervisorRefuses(t *testing.T) {
	r := newRig(t)
	first := r.start(testBinary(t))
	c := r.waitChild(0)
	proctest.Eventually(t, within, "the pid file", func() bool { return r.pidInFile() == first.Pid() })

	// The same command again, as a second bootstrap would run it.
	second := r.start(testBinary(t))
	if code := second.Wait(t, within); code != 1 {
		t.Fatalf("the second supervisor exited %d, want 1; output:\n%s", code, second.Output())
	}
	want := "another supervisor is running: pid " + strconv.Itoa(first.Pid()) + ", pid file " + r.pidFile
	if !strings.Contains(second.Output(), want) {
		t.Errorf("the second supervisor says %q, want %q", second.Output(), want)
	}
	if got := r.pidInFile(); got != first.Pid() {
		t.Errorf("pid file holds %d, want the first supervisor's %d", got, first.Pid())
	}
	if now, _ := readChild(r.dir); now.pid != c.pid || !proctest.Running(c.pid) {
		t.Errorf("the first supervisor's child changed: %d, was %d", now.pid, c.pid)
	}

	// In this process, with the pid file named relative to the directory.
	t.Chdir(r.dir)
	err := supervise.Run(context.Background(), supervise.Options{Program: testBinary(t), PidFile: "agent.pid", Log: r.log})
	if !errors.Is(err, supervise.ErrRunning) {
		t.Errorf("Run: %v, want ErrRunning", err)
	}
}

// runInProcess runs Run in the test process until the returned stop is
// called, with the child of these tests.
func runInProcess(t *testing.T, r *rig) (stop func() error) {
	t.Setenv(roleEnv, "1") // for the child Run starts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- supervise.Run(ctx, supervise.Options{
			Program: testBinary(t),
			Args:    []string{"child", "--dir", r.dir},
			PidFile: r.pidFile,
			Log:     r.log,
		})
	}()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(within):
			t.Fatal("Run did not return")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestStalePidFiles(t *testing.T) {
	// A live process that is no supervisor: the child of these tests.
	stranger := proctest.StartCmd(t, "stranger", func() *exec.Cmd {
		cmd := exec.Command(testBinary(t), "child", "--dir", t.TempDir())
		cmd.Env = append(os.Environ(), roleEnv+"=1")
		return cmd
	}())
	// A live supervisor of another pid file.
	other := newRig(t)
	otherSup := other.start(testBinary(t))
	other.waitChild(0)

	for name, content := range map[string]string{
		"dead pid":                       "999999999\n",
		"not a pid":                      "hello\n",
		"empty":                          "",
		"no supervisor":                  strconv.Itoa(stranger.Pid()) + "\n",
		"the supervisor of another file": strconv.Itoa(otherSup.Pid()),
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			if err := os.WriteFile(r.pidFile, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			stop := runInProcess(t, r)
			c := r.waitChild(0)
			if got := r.pidInFile(); got != os.Getpid() {
				t.Errorf("pid file holds %d, want this process's %d", got, os.Getpid())
			}
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if proctest.Running(c.pid) {
				t.Errorf("the child %d runs on after the context ended", c.pid)
			}
			if !strings.Contains(r.logText(), "child "+strconv.Itoa(c.pid)+" got SIGTERM") {
				t.Errorf("the child did not get SIGTERM; log:\n%s", r.logText())
			}
			if _, err := os.Stat(r.pidFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the pid file is still there (%v)", err)
			}
		})
	}
}

func TestKeepsAPidFileItNoLongerHolds(t *testing.T) {
	r := newRig(t)
	stop := runInProcess(t, r)
	r.waitChild(0)
	// Someone else's now (a supervisor started after it was removed).
	if err := os.WriteFile(r.pidFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := r.pidInFile(); got != 1 {
		t.Errorf("pid file holds %d, want 1 as another process wrote it", got)
	}
}

func TestSetsid(t *testing.T) {
	t.Run("a new session", func(t *testing.T) {
		r := newRig(t)
		// Not through proctest, which gives the process a group of its
		// own: a group leader cannot start a session.
		cmd := r.command(testBinary(t), "--setsid")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Process.Kill()
			cmd.Wait()
		})
		r.waitChild(0)
		if sid := sessionOf(t, cmd.Process.Pid); sid != cmd.Process.Pid {
			t.Errorf("the supervisor's session is %d, want its own %d", sid, cmd.Process.Pid)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("supervisor: %v", err)
		}
	})
	t.Run("a group leader", func(t *testing.T) {
		r := newRig(t)
		sup := r.start(testBinary(t), "--setsid")
		if code := sup.Wait(t, within); code != 1 || !strings.Contains(sup.Output(), "start it with setsid(1)") {
			t.Errorf("exit %d, output %q; want 1 and advice to use setsid(1)", code, sup.Output())
		}
	})
}

// sessionOf reads the session of pid (field 6 of /proc/PID/stat).
func sessionOf(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	sid, _ := strconv.Atoi(fields[3])
	return sid
}

func TestOptionsErrors(t *testing.T) {
	if err := supervise.Run(context.Background(), supervise.Options{}); err == nil || !strings.Contains(err.Error(), "no program") {
		t.Errorf("Run without a program: %v", err)
	}
	err := supervise.Run(context.Background(), supervise.Options{Program: "/bin/true", Log: filepath.Join(t.TempDir(), "no", "such", "dir", "log")})
	if err == nil || !strings.Contains(err.Error(), "open the log") {
		t.Errorf("Run with a log in a missing directory: %v", err)
	}
}
