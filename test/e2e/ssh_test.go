package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/bootstrap"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/proctest"
)

// sshFleet is two "hosts", each a real sshd on its own loopback port, with
// nothing installed: zerodown bootstraps their agents over SSH and deploys
// through the SSH connections.
type sshFleet struct {
	*fleetFixture
	sshd     []*proctest.SSHD
	hostDir  string // ssh.dir: where bootstrap installs on the "hosts"
	key      string
	known    string
	appPorts []int
	agentPts []int
}

func startSSHFleet(t *testing.T) *sshFleet {
	t.Helper()
	dir := t.TempDir()
	f := &sshFleet{fleetFixture: &fleetFixture{t: t, dir: dir}, hostDir: filepath.Join(dir, "hosts"), key: filepath.Join(dir, "id_ed25519")}
	var known []byte
	var targets []string
	for i := 0; i < 2; i++ {
		s := proctest.StartSSHD(t, filepath.Join(dir, fmt.Sprintf("sshd-%d", i+1)), f.key)
		f.sshd = append(f.sshd, s)
		b, err := os.ReadFile(s.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		known = append(known, b...)
		f.appPorts = append(f.appPorts, proctest.FreePort(t))
		f.agentPts = append(f.agentPts, proctest.FreePort(t))
		targets = append(targets, fmt.Sprintf("127.0.0.1:%d", f.appPorts[i]))
	}
	f.known = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(f.known, known, 0o600); err != nil {
		t.Fatal(err)
	}
	// What bootstrap started outlives the SSH sessions: the supervisors
	// first, so none starts an agent again, then everything under the
	// hosts' directory.
	t.Cleanup(func() {
		for _, p := range f.agentPts {
			if b, err := os.ReadFile(filepath.Join(f.hostDir, fmt.Sprintf("agent-%d", p), "agent.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		proctest.KillUnder(f.hostDir)
	})
	f.lb = startLBHealth(t, dir, slowHealth, targets...)
	f.artifact = helloTarGz(t)
	return f
}

// config writes a zerodown.yaml whose hosts are reached over SSH, with
// known_hosts as the file of host keys.
func (f *sshFleet) config(name, knownHosts string, extraArgs ...string) string {
	f.t.Helper()
	args := ""
	for _, a := range extraArgs {
		args += fmt.Sprintf(", %q", a)
	}
	var b strings.Builder
	fmt.Fprintf(&b, appYAML, args, filepath.Join(f.dir, "state.db"))
	fmt.Fprintf(&b, `environments:
  staging:
    lb: { driver: builtin, admin: %s, pool: hello, token_file: %s }
    ssh: { user: %s, identity: %s, known_hosts: %s, dir: %s, allow_root: true, keepalive: 1s }
    hosts:
`, f.lb.admin, filepath.Join(f.lb.dir, "admin.token"), f.sshd[0].User, f.key, knownHosts, f.hostDir)
	for i, s := range f.sshd {
		fmt.Fprintf(&b, "      - { name: web-%d, ssh: %q, agent: \"http://127.0.0.1:%d\", target: \"127.0.0.1:%d\" }\n", i+1, s.Addr, f.agentPts[i], f.appPorts[i])
	}
	b.WriteString("    strategy:\n      rolling: { min_healthy: 1, drain_timeout: 30s, health_timeout: 20s }\n")
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

type bootstrapOut struct {
	Hosts  []bootstrap.Result `json:"hosts"`
	Errors []string           `json:"errors"`
}

func (f *sshFleet) bootstrap(cfg string, args ...string) (bootstrapOut, string, int) {
	f.t.Helper()
	out, code := f.zerodown(append([]string{"hosts", "bootstrap", "staging", "-c", cfg, "-o", "json"}, args...)...)
	var res bootstrapOut
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil && code == 0 {
		f.t.Fatalf("bootstrap output: %v\n%s", err, out)
	}
	return res, out, code
}

// agentStatus asks host i's agent directly, on its loopback port: the
// test runs on the "host".
func (f *sshFleet) agentStatus(i int) (agent.Status, error) {
	tok, err := os.ReadFile(filepath.Join(f.hostDir, fmt.Sprintf("agent-%d", f.agentPts[i]), "root", "agent.token"))
	if err != nil {
		return agent.Status{}, err
	}
	c, err := agent.NewClient(agent.ClientConfig{URL: fmt.Sprintf("http://127.0.0.1:%d", f.agentPts[i]), Token: strings.TrimSpace(string(tok)), HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		return agent.Status{}, err
	}
	return c.AgentStatus(ctxFor(f.t, 3*time.Second))
}

func (f *sshFleet) onVersion(version string) {
	f.t.Helper()
	for i, p := range f.appPorts {
		v, err := appVersion(fmt.Sprintf("http://127.0.0.1:%d", p))
		if err != nil || v != version {
			f.t.Fatalf("web-%d answers %q (%v), want %s", i+1, v, err, version)
		}
		// The deploy saw it healthy; a check that times out on a loaded
		// machine may flap it a moment later.
		f.lb.waitState(f.t, fmt.Sprintf("127.0.0.1:%d", p), lb.StateHealthy, 10*time.Second)
	}
}

// TestSSHHosts: two hosts with nothing but sshd get their agents from
// `zerodown hosts bootstrap` (twice: the second changes nothing); rolling
// deploys reach the agents through the SSH connections under GET and slow
// POST load with zero failed requests; the SSH connection to a host killed
// mid-activation stops the run, which rolls back cleanly; an upgrade
// replaces an agent while its app serves on; an unknown host key is refused.
//
// It runs before the parallel tests, alone in the package: every upload
// here is encrypted by race-instrumented code (zerodown's SSH client), and beside
// three other end-to-end tests on two cores that starved the machine until
// health checks of 400 ms timed out.
func TestSSHHosts(t *testing.T) {
	f := startSSHFleet(t)
	cfg := f.config("zerodown.yaml", f.known)

	start := time.Now()
	res, out, code := f.bootstrap(cfg)
	took := time.Since(start)
	if code != 0 || len(res.Hosts) != 2 {
		t.Fatalf("bootstrap: exit %d\n%s", code, out)
	}
	t.Logf("bootstrap of two hosts from nothing took %s", took.Round(time.Millisecond))
	pids := map[string]int{}
	for _, r := range res.Hosts {
		if len(r.Done) == 0 || r.AgentPID == 0 || r.Mode != "supervised" {
			t.Fatalf("bootstrap of %s: %+v", r.Host, r)
		}
		pids[r.Host] = r.AgentPID
	}

	t.Run("bootstrap again changes nothing", func(t *testing.T) {
		bin := filepath.Join(f.hostDir, "bin")
		before, _ := os.ReadDir(bin)
		infoBefore, _ := before[0].Info()
		res, out, code := f.bootstrap(cfg)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		for _, r := range res.Hosts {
			if len(r.Done) != 0 || len(r.Pending) != 0 || r.AgentPID != pids[r.Host] {
				t.Errorf("%s: second bootstrap did %q (pending %q), agent pid %d, was %d", r.Host, r.Done, r.Pending, r.AgentPID, pids[r.Host])
			}
		}
		after, _ := os.ReadDir(bin)
		infoAfter, _ := after[0].Info()
		if len(after) != 1 || !infoAfter.ModTime().Equal(infoBefore.ModTime()) {
			t.Errorf("the binary directory changed: %d files", len(after))
		}
	})

	out, code = f.zerodown("deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", cfg, "-o", "log")
	if code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.onVersion("v1")

	l := startLoad(f.lb.url, 50, 20000, 4*time.Minute)
	defer l.finish()
	posts := startSlowPosts(f.lb.url, 2, 4*time.Minute)
	defer func() { t.Logf("slow POSTs: %s", posts.finish()) }()
	checkLoad := func(phase string) {
		t.Helper()
		if n := l.failed.Load() + posts.failed.Load(); n != 0 {
			t.Fatalf("%s: %s\nslow POSTs: %d failed", phase, l.report(), posts.failed.Load())
		}
	}

	t.Run("rolling v1 to v2 over SSH under load", func(t *testing.T) {
		okBefore := l.ok.Load()
		out, code := f.zerodown("deploy", "staging", "--version", "v2", "--artifact", f.artifact, "-c", cfg, "-o", "log")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		f.onVersion("v2")
		checkLoad("v1 → v2")
		if l.ok.Load() < okBefore+50 {
			t.Fatalf("the load did not run during the deploy: %s", l.report())
		}
	})

	t.Run("SSH connection killed mid-activation: the run stops and rolls back", func(t *testing.T) {
		hold := filepath.Join(f.dir, "hold")
		if err := os.WriteFile(hold, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(hold)
		held := f.config("zerodown-held.yaml", f.known, "--unhealthy-file", hold)
		run := proctest.Start(t, "deploy v3", bin.zerodown, "deploy", "staging", "--version", "v3", "--artifact", f.artifact, "-c", held, "-o", "log")
		proctest.Eventually(t, time.Minute, "web-1's agent to be activating v3", func() bool {
			st, err := f.agentStatus(0)
			return err == nil && st.Activation != nil && st.Activation.Version == "v3"
		})
		if n := f.sshd[0].KillSessions(); n == 0 {
			t.Fatal("no SSH connection to web-1 to kill")
		}
		os.Remove(hold)
		if code := run.Wait(t, 2*time.Minute); code != 1 {
			t.Fatalf("deploy: exit %d, want 1\n%s", code, run.Output())
		}
		for _, line := range strings.Split(run.Output(), "\n") {
			if strings.Contains(line, "was lost") || strings.Contains(line, "rolled back") {
				t.Log(line)
			}
		}
		for _, want := range []string{"SSH connection to", "was lost", "rolled back"} {
			if !strings.Contains(run.Output(), want) {
				t.Errorf("output lacks %q:\n%s", want, run.Output())
			}
		}
		f.onVersion("v2")
		checkLoad("v3 interrupted")
	})

	t.Run("upgrade replaces an older agent, the app serves on", func(t *testing.T) {
		// An older zerodown on web-1: another binary, linked and running,
		// and an edit to its agent.yaml.
		agentDir := filepath.Join(f.hostDir, fmt.Sprintf("agent-%d", f.agentPts[0]))
		link := filepath.Join(agentDir, "zerodown")
		current, err := os.Readlink(link)
		if err != nil {
			t.Fatal(err)
		}
		older := filepath.Join(filepath.Dir(current), "zerodown-0000000000000000")
		if out, err := exec.Command("cp", current, older).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		if err := os.Remove(link); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(older, link); err != nil {
			t.Fatal(err)
		}
		started := filepath.Join(agentDir, "started")
		rec, err := os.ReadFile(started)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(started, []byte(strings.Replace(string(rec), filepath.Base(current), filepath.Base(older), 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfgFile := filepath.Join(agentDir, "agent.yaml")
		orig, err := os.ReadFile(cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		edited := append(append([]byte{}, orig...), "# edited on the host\n"...)
		if err := os.WriteFile(cfgFile, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		// The supervisor runs itself and the agent again from the link.
		sup, err := os.ReadFile(filepath.Join(agentDir, "agent.pid"))
		if err != nil {
			t.Fatal(err)
		}
		supPid, _ := strconv.Atoi(strings.TrimSpace(string(sup)))
		syscall.Kill(supPid, syscall.SIGHUP)
		var before agent.Status
		proctest.Eventually(t, 30*time.Second, "web-1's agent to run the older binary", func() bool {
			before, err = f.agentStatus(0)
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", before.Agent.PID))
			return err == nil && exe == older
		})

		res, out, code := f.bootstrap(cfg)
		if code != 0 || len(res.Hosts[0].Done) != 0 || len(res.Hosts[0].Pending) != 3 {
			t.Fatalf("without --upgrade: exit %d\n%s", code, out)
		}
		if b, _ := os.ReadFile(cfgFile); string(b) != string(edited) {
			t.Fatal("bootstrap without --upgrade changed agent.yaml")
		}
		res, out, code = f.bootstrap(cfg, "--upgrade")
		if code != 0 {
			t.Fatalf("--upgrade: exit %d\n%s", code, out)
		}
		r := res.Hosts[0]
		if r.AgentPID == before.Agent.PID || !strings.Contains(strings.Join(r.Done, ";"), "restarted the agent") {
			t.Fatalf("--upgrade did %q; agent pid %d, was %d", r.Done, r.AgentPID, before.Agent.PID)
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", r.AgentPID)); exe != current {
			t.Errorf("the new agent runs %s, want %s", exe, current)
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", supPid)); exe != current {
			t.Errorf("the supervisor runs %s, want %s", exe, current)
		}
		if b, _ := os.ReadFile(cfgFile); string(b) != string(orig) {
			t.Fatalf("--upgrade left agent.yaml as\n%s", b)
		}
		after, err := f.agentStatus(0)
		if err != nil || after.PID != before.PID || after.Version != "v2" {
			t.Fatalf("the app's pid went from %d to %d (%v): the upgrade restarted it", before.PID, after.PID, err)
		}
		if res.Hosts[1].AgentPID != pids["web-2"] || len(res.Hosts[1].Done) != 0 {
			t.Errorf("web-2 was touched: %+v", res.Hosts[1])
		}
		res, out, code = f.bootstrap(cfg, "--upgrade")
		if code != 0 || len(res.Hosts[0].Done) != 0 || res.Hosts[0].AgentPID != r.AgentPID {
			t.Fatalf("--upgrade again: exit %d\n%s", code, out)
		}
		checkLoad("agent upgrade")
	})

	t.Run("check reports the SSH hosts", func(t *testing.T) {
		out, code := f.zerodown("check", "staging", "-c", cfg)
		if code != 0 || !strings.Contains(out, "ssh "+f.sshd[0].User+"@"+f.sshd[0].Addr+" (agent") {
			t.Fatalf("check: exit %d\n%s", code, out)
		}
	})

	t.Run("an unknown host key is refused", func(t *testing.T) {
		empty := filepath.Join(f.dir, "empty_known_hosts")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		strict := f.config("zerodown-unknown.yaml", empty)
		fp := ssh.FingerprintSHA256(f.sshd[0].HostKey)
		for _, args := range [][]string{{"check", "staging", "-c", strict}, {"hosts", "bootstrap", "staging", "-c", strict, "--upgrade"}} {
			out, code := f.zerodown(args...)
			if code == 0 || !strings.Contains(out, "is not a known host") || !strings.Contains(out, fp) || !strings.Contains(out, "ssh-keyscan -p") {
				t.Errorf("%s: exit %d\n%s", args[0], code, out)
			}
		}
		if st, err := f.agentStatus(1); err != nil || st.Agent.PID != pids["web-2"] {
			t.Errorf("web-2's agent changed: %+v, %v", st.Agent, err)
		}
	})
	l.finish()
	posts.finish()
	checkLoad("the end")
}
