package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/host"
)

// agentFixture is `zerodown agent` running as a process on a fresh root.
type agentFixture struct {
	t       *testing.T
	dir     string
	root    string
	cfgPath string
	url     string
	app     string
	port    int
	token   string
	proc    *proctest.Proc
	client  *agent.Client
}

const agentConfigTemplate = `listen: 127.0.0.1:%d
root: %s
port: %d
preflight: %v
restart: { backoff: 50ms, max_backoff: 1s }
shutdown_timeout: 5s
allow_root: true
`

// appSpecTemplate is an app spec for the sample app; %s is extra arguments.
const appSpecTemplate = `name: hello
run: ["./hello", "--listen", "127.0.0.1:${PORT}", "--name", "e2e"%s]
health: { path: /healthz, interval: 50ms, timeout: %s }
stop: { signal: SIGTERM, timeout: 5s }
`

func startAgent(t *testing.T, preflight bool) *agentFixture {
	t.Helper()
	return startAgentWith(t, preflight, "")
}

// startAgentWith starts an agent whose agent.yaml ends with extra.
func startAgentWith(t *testing.T, preflight bool, extra string) *agentFixture {
	t.Helper()
	dir := t.TempDir()
	f := &agentFixture{t: t, dir: dir, root: filepath.Join(dir, "root"), cfgPath: filepath.Join(dir, "agent.yaml"), port: proctest.FreePort(t)}
	listen := proctest.FreePort(t)
	f.url = fmt.Sprintf("http://127.0.0.1:%d", listen)
	f.app = fmt.Sprintf("http://127.0.0.1:%d", f.port)
	cfg := fmt.Sprintf(agentConfigTemplate, listen, f.root, f.port, preflight) + extra
	if err := os.WriteFile(f.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before the agent, so it runs after the agent is killed:
	// the app outlives its agent by design.
	t.Cleanup(func() { proctest.KillUnder(f.root) })
	f.run()
	return f
}

func (f *agentFixture) run() {
	t := f.t
	t.Helper()
	f.proc = proctest.Start(t, "zerodown agent", bin.zerodown, "agent", "--config", f.cfgPath)
	tokenPath := filepath.Join(f.root, "agent.token")
	proctest.Eventually(t, 10*time.Second, "the generated agent token", func() bool {
		b, err := os.ReadFile(tokenPath)
		f.token = strings.TrimSpace(string(b))
		return err == nil && f.token != ""
	})
	var err error
	f.client, err = agent.NewClient(agent.ClientConfig{URL: f.url, Token: f.token})
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "the agent API", func() bool {
		_, err := f.client.AgentStatus(ctxFor(t, time.Second))
		return err == nil
	})
}

// settled waits until no activation or recovery runs and returns the status.
func (f *agentFixture) settled(within time.Duration) agent.Status {
	f.t.Helper()
	var s agent.Status
	proctest.Eventually(f.t, within, "the agent to settle", func() bool {
		var err error
		s, err = f.client.AgentStatus(ctxFor(f.t, 2*time.Second))
		return err == nil && s.Activation == nil
	})
	return s
}

// cli runs the zerodown binary against this agent.
func (f *agentFixture) cli(args ...string) (stdout, stderr string, code int) {
	f.t.Helper()
	cmd := exec.Command(bin.zerodown, args...)
	cmd.Env = append(os.Environ(), "ZERODOWN_AGENT="+f.url, "ZERODOWN_AGENT_TOKEN="+f.token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		f.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// writeSpec writes an app spec and returns its path.
func (f *agentFixture) writeSpec(name, healthTimeout string, extra ...string) string {
	f.t.Helper()
	args := ""
	for _, a := range extra {
		args += fmt.Sprintf(", %q", a)
	}
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(fmt.Sprintf(appSpecTemplate, args, healthTimeout)), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *agentFixture) upload(version, spec string) {
	f.t.Helper()
	out, errOut, code := f.cli("agent", "upload", helloTarGz(f.t), "--version", version, "--spec", spec)
	if code != 0 {
		f.t.Fatalf("upload %s: exit %d\n%s%s", version, code, out, errOut)
	}
}

func (f *agentFixture) serves(version string) {
	f.t.Helper()
	v, err := appVersion(f.app)
	if err != nil || v != version {
		f.t.Fatalf("the app answers %q, %v; want %s", v, err, version)
	}
}

var appHTTP = &http.Client{Timeout: 2 * time.Second}

func appVersion(url string) (string, error) {
	resp, err := appHTTP.Get(url + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header.Get("X-Version"), nil
}

var (
	helloTarOnce sync.Once
	helloTarData []byte
)

// helloTarGz writes the sample app as a release artifact into the test's
// directory and returns its path.
func helloTarGz(t *testing.T) string {
	t.Helper()
	helloTarOnce.Do(func() {
		bin, err := os.ReadFile(bin.hello)
		if err != nil {
			panic(err)
		}
		var buf bytes.Buffer
		gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		tw := tar.NewWriter(gz)
		_ = tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(bin)
		_ = tw.Close()
		_ = gz.Close()
		helloTarData = buf.Bytes()
	})
	p := filepath.Join(t.TempDir(), "hello.tar.gz")
	if err := os.WriteFile(p, helloTarData, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentDeployWithCLI(t *testing.T) {
	t.Parallel()
	f := startAgent(t, true)
	spec := f.writeSpec("app.yaml", "10s")
	f.upload("v1", spec)
	f.upload("v2", spec)
	if out, _, code := f.cli("agent", "upload", helloTarGz(t), "--version", "v1", "--spec", spec); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("re-upload: exit %d: %s", code, out)
	}

	steps := []struct {
		args  []string
		code  int
		out   string
		serve string
	}{
		{[]string{"agent", "activate", "v1"}, 0, "v1 is running and healthy", "v1"},
		{[]string{"agent", "activate", "v2", "--timeout", "30s"}, 0, "v2 is running and healthy", "v2"},
		{[]string{"agent", "rollback"}, 0, "v1 is running and healthy", "v1"},
		{[]string{"agent", "rollback"}, 0, "v2 is running and healthy", "v2"},
		{[]string{"agent", "activate", "v9"}, 2, "", "v2"},
		{[]string{"agent", "activate"}, 2, "", "v2"},
	}
	for _, s := range steps {
		out, errOut, code := f.cli(s.args...)
		if code != s.code || !strings.Contains(out, s.out) {
			t.Fatalf("%v: exit %d, want %d with %q\n%s%s", s.args, code, s.code, s.out, out, errOut)
		}
		f.serves(s.serve)
	}

	out, _, code := f.cli("agent", "status", "-o", "json")
	var st agent.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	if st.Version != "v2" || st.Previous != "v1" || !st.Healthy || st.State != "running" || len(st.Releases) != 2 {
		t.Errorf("status %+v", st)
	}
	if out, _, code := f.cli("agent", "status"); code != 0 || !strings.Contains(out, "VERSION") || !strings.Contains(out, "running") {
		t.Errorf("status text: exit %d\n%s", code, out)
	}
	if out, _, code := f.cli("agent", "releases"); code != 0 || !strings.Contains(out, "current") || !strings.Contains(out, "previous") {
		t.Errorf("releases: exit %d\n%s", code, out)
	}
	if out, _, code := f.cli("agent", "logs", "-n", "200"); code != 0 || !strings.Contains(out, "hello: listening on") {
		t.Errorf("logs: exit %d\n%s", code, out)
	}

	// A release that fails its health check: exit 1, its output, and v2
	// still serving.
	f.upload("v3", f.writeSpec("bad.yaml", "1s", "--fail-health"))
	out, errOut, code := f.cli("agent", "activate", "v3")
	if code != 1 || !strings.Contains(errOut, "v2 kept running untouched") || !strings.Contains(errOut, "last output of v3") {
		t.Errorf("activate a failing release: exit %d\n%s%s", code, out, errOut)
	}
	f.serves("v2")

	// Without a token the agent refuses, and says so.
	wrong := filepath.Join(f.dir, "wrong.token")
	if err := os.WriteFile(wrong, []byte(strings.Repeat("x", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.zerodown, "agent", "status", "--agent", f.url, "--token-file", wrong)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "401") {
		t.Errorf("status with a wrong token: %v\n%s", err, b)
	}
}

func TestAgentFailedHealthKeepsV1Serving(t *testing.T) {
	t.Parallel()
	f := startAgent(t, true)
	f.upload("v1", f.writeSpec("app.yaml", "10s"))
	f.upload("v2", f.writeSpec("bad.yaml", "2s", "--fail-health"))
	if err := f.client.Activate(ctxFor(t, time.Minute), "v1"); err != nil {
		t.Fatal(err)
	}
	pid := f.settled(5 * time.Second).PID

	var (
		mu       sync.Mutex
		ok       int
		failures []string
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := appVersion(f.app)
			mu.Lock()
			if err != nil || v != "v1" {
				failures = append(failures, fmt.Sprintf("%q %v", v, err))
			} else {
				ok++
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond) // paces the client; not a synchronisation
		}
	}()
	err := f.client.Activate(ctxFor(t, time.Minute), "v2")
	count := func() int { mu.Lock(); defer mu.Unlock(); return ok }
	before := count()
	proctest.Eventually(t, 5*time.Second, "more answers after the activation", func() bool { return count() > before+10 })
	close(stop)
	<-done

	if !errors.Is(err, host.ErrUnhealthy) {
		t.Fatalf("activate v2: %v, want unhealthy", err)
	}
	if len(failures) > 0 {
		t.Fatalf("the client saw %d failures while v2 failed its health check, first: %s", len(failures), failures[0])
	}
	t.Logf("%d answers, all from v1", ok)
	if s := f.settled(5 * time.Second); s.Version != "v1" || s.PID != pid || !s.Healthy {
		t.Errorf("after the failure: %+v, want v1 pid %d healthy", s, pid)
	}
}

func TestAgentRestartKeepsApp(t *testing.T) {
	t.Parallel()
	f := startAgent(t, true)
	f.upload("v1", f.writeSpec("app.yaml", "10s"))
	if err := f.client.Activate(ctxFor(t, time.Minute), "v1"); err != nil {
		t.Fatal(err)
	}
	pid := f.settled(5 * time.Second).PID
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		f.proc.Signal(sig)
		code := f.proc.Wait(t, 10*time.Second)
		if sig == syscall.SIGTERM && code != 0 {
			t.Errorf("agent exit code %d after SIGTERM", code)
		}
		f.serves("v1") // nobody supervises it right now, and it serves
		f.run()
		var s agent.Status
		proctest.Eventually(t, 10*time.Second, "the restarted agent to adopt the app", func() bool {
			var err error
			s, err = f.client.AgentStatus(ctxFor(t, 2*time.Second))
			return err == nil && s.Activation == nil && s.Healthy
		})
		if s.PID != pid || !s.Adopted || s.Version != "v1" {
			t.Fatalf("after %s of the agent: %+v, want the app's pid %d adopted", sig, s, pid)
		}
	}
}

func TestAgentKilledMidActivation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		preflight bool
		// phase is where the agent is killed.
		phase string
		// healthyAfter makes v2 healthy once the agent is dead.
		healthyAfter bool
		want         string
	}{
		{"in hooks", true, "hooks", false, "v1"},
		{"in preflight", true, "preflight", false, "v1"},
		{"in the health gate, v2 never healthy", false, "health", false, "v1"},
		{"in the health gate, v2 healthy later", false, "health", true, "v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startAgent(t, tt.preflight)
			gate := filepath.Join(f.dir, "gate")
			unhealthy := filepath.Join(f.dir, "unhealthy")
			if err := os.WriteFile(unhealthy, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			f.upload("v1", f.writeSpec("app.yaml", "10s"))
			v2 := f.writeSpec("v2.yaml", "3s", "--unhealthy-file", unhealthy)
			if tt.phase == "hooks" {
				b, _ := os.ReadFile(v2)
				hook := fmt.Sprintf("hooks: { before_start: [[sh, -c, 'while [ ! -e %s ]; do sleep 0.02; done']] }\n", gate)
				if err := os.WriteFile(v2, append(b, hook...), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })
			}
			f.upload("v2", v2)
			if err := f.client.Activate(ctxFor(t, time.Minute), "v1"); err != nil {
				t.Fatal(err)
			}
			go func() { _ = f.client.Activate(ctxFor(t, time.Minute), "v2") }()
			proctest.Eventually(t, 10*time.Second, "the activation to reach "+tt.phase, func() bool {
				s, err := f.client.AgentStatus(ctxFor(t, time.Second))
				return err == nil && s.Activation != nil && s.Activation.Phase == tt.phase
			})
			var preflightPid int
			if rec, err := os.ReadFile(filepath.Join(f.root, "run", "preflight.pid")); err == nil {
				var r struct{ PID int }
				_ = json.Unmarshal(rec, &r)
				preflightPid = r.PID
			}
			f.proc.Signal(syscall.SIGKILL)
			f.proc.Wait(t, 10*time.Second)
			if tt.healthyAfter {
				if err := os.Remove(unhealthy); err != nil {
					t.Fatal(err)
				}
			}

			f.run()
			s := f.settled(20 * time.Second)
			link, err := os.Readlink(filepath.Join(f.root, "current"))
			if err != nil || link != "releases/"+tt.want || s.Version != tt.want {
				t.Fatalf("current -> %q (%v), status %+v; want %s", link, err, s, tt.want)
			}
			proctest.Eventually(t, 10*time.Second, tt.want+" to be healthy", func() bool {
				s, err = f.client.AgentStatus(ctxFor(t, time.Second))
				return err == nil && s.Healthy && s.PID != 0
			})
			if !proctest.Running(s.PID) || s.State != "running" {
				t.Errorf("status %+v: the app is not running", s)
			}
			f.serves(tt.want)
			if preflightPid != 0 && proctest.Running(preflightPid) {
				t.Errorf("the preflight process %d of the killed agent still runs", preflightPid)
			}
		})
	}
}
