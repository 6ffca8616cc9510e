//go:build linux

package cli

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

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestAgentSupervise runs `zerodown agent supervise` as bootstrap lays it
// out on a host — <dir>/agent-<port>/ with the zerodown symlink, agent.yaml,
// agent.pid, agent.log, root/ — with this test binary as zerodown, and an
// agent under it that serves its API until the supervisor is stopped.
func TestAgentSupervise(t *testing.T) {
	dir := t.TempDir()
	port := proctest.FreePort(t)
	agentDir := filepath.Join(dir, fmt.Sprintf("agent-%d", port))
	root := filepath.Join(agentDir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	program := filepath.Join(agentDir, "zerodown")
	if err := os.Symlink(exe, program); err != nil {
		t.Fatal(err)
	}
	listen := proctest.FreeAddr(t)
	config := fmt.Sprintf("listen: %s\ntoken: 0123456789abcdef0123456789abcdef\nroot: %s\nport: %d\n", listen, root, port)
	if err := os.WriteFile(filepath.Join(agentDir, "agent.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proctest.KillUnder(root) })

	cmd := exec.Command(program, "agent", "supervise", "--config", "agent.yaml", "--pid-file", "agent.pid", "--log", "agent.log")
	cmd.Dir = agentDir
	cmd.Env = append(os.Environ(), asZerodownEnv+"=1")
	sup := proctest.StartCmd(t, "zerodown agent supervise", cmd)

	const within = 30 * time.Second
	proctest.WaitListening(t, listen, within)
	readLog := func() string {
		b, _ := os.ReadFile(filepath.Join(agentDir, "agent.log"))
		return string(b)
	}
	// The agent runs from the symlink, not from the binary it points to,
	// with its config as an absolute path.
	started := regexp.MustCompile(`started (\S+) agent --config (\S+) \(pid (\d+)\)`)
	var m []string
	proctest.Eventually(t, within, "the supervisor to log the agent's start", func() bool {
		m = started.FindStringSubmatch(readLog())
		return m != nil
	})
	if m[1] != program || m[2] != filepath.Join(agentDir, "agent.yaml") {
		t.Errorf("the agent was started as %s --config %s, want %s --config %s", m[1], m[2], program, filepath.Join(agentDir, "agent.yaml"))
	}
	agentPid, _ := strconv.Atoi(m[3])
	proctest.Eventually(t, within, "the agent's own output in the log", func() bool {
		return strings.Contains(readLog(), "zerodown agent: API on http://"+listen)
	})
	pidFile := filepath.Join(agentDir, "agent.pid")
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != strconv.Itoa(sup.Pid()) {
		t.Errorf("agent.pid holds %q, want the supervisor's pid %d", b, sup.Pid())
	}

	// Bootstrap run a second time starts nothing.
	again := exec.Command(program, "agent", "supervise", "--config", "agent.yaml", "--pid-file", "agent.pid", "--log", "agent.log")
	again.Dir = agentDir
	again.Env = cmd.Env
	second := proctest.StartCmd(t, "second zerodown agent supervise", again)
	if code := second.Wait(t, within); code != ExitFailed || !strings.Contains(second.Output(), "another supervisor is running: pid "+strconv.Itoa(sup.Pid())) {
		t.Errorf("a second supervisor: exit %d, output %q; want 1 and another supervisor is running", code, second.Output())
	}

	sup.Signal(syscall.SIGTERM)
	if code := sup.Wait(t, within); code != 0 {
		t.Fatalf("the supervisor exited %d, want 0; log:\n%s", code, readLog())
	}
	if err := syscall.Kill(agentPid, 0); err == nil {
		t.Errorf("the agent (pid %d) runs on", agentPid)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Error("agent.pid is still there")
	}
	if !strings.Contains(readLog(), "stopping the agent; the app keeps running") {
		t.Errorf("the agent did not stop on SIGTERM; log:\n%s", readLog())
	}
}

func TestProgramPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "zerodown-0123abcd")
	link := filepath.Join(dir, "agent-7101", "zerodown")
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(link)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(link))
	t.Setenv("PATH", filepath.Dir(link))
	for argv0, want := range map[string]string{
		link:         link, // not resolved to the binary
		"./zerodown": link,
		"zerodown":   link, // found on PATH
	} {
		got, err := programPath(argv0)
		if err != nil || got != want {
			t.Errorf("programPath(%q) = %q, %v; want %q", argv0, got, err, want)
		}
	}
	if _, err := programPath("no-such-zerodown"); err == nil || !strings.Contains(err.Error(), "find the path zerodown was started as (no-such-zerodown)") {
		t.Errorf("programPath of a name not on PATH: %v", err)
	}
}
