package faults

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
	"github.com/zerodown/zerodown/internal/proctest"
)

// fleet is the whole product on loopback with Toxiproxy in its links:
//
//	zerodown deploy ──ctl[i]──▶ agent i ──supervises──▶ app i
//	client ──▶ zerodown lb ──data[i]──▶ app i
//
// Each host's `agent:` in zerodown.yaml is its control proxy, and its
// `target:` is its data proxy, whose upstream is the port the agent gives
// the app: the target is only the address the balancer sends traffic to,
// so it need not be the app's own. A row may leave either link direct.
type fleet struct {
	t      *testing.T
	dir    string
	tox    *toxiproxy.ApiServer
	agents []*agentProc
	lb     *lbProc
	// requestLog is where every app appends the POSTs it runs.
	requestLog string
	artifact   string
}

// agentProc is one host: `zerodown agent` and the links to it and its app.
type agentProc struct {
	name    string
	dir     string
	root    string
	cfgPath string
	listen  string // the agent API's own address
	appPort int
	proc    *proctest.Proc
	token   string
	// client talks to the agent directly, never through a fault: it is how
	// the test observes the host.
	client *agent.Client
	ctl    *toxiproxy.Proxy // engine → agent API; nil when direct
	data   *toxiproxy.Proxy // balancer → app; nil when direct
}

// agentURL is the address the engine reaches this host's agent at.
func (a *agentProc) agentURL() string {
	if a.ctl != nil {
		return "http://" + a.ctl.Listen
	}
	return "http://" + a.listen
}

// target is the address the balancer sends this host's traffic to.
func (a *agentProc) target() string {
	if a.data != nil {
		return a.data.Listen
	}
	return a.appAddr()
}

func (a *agentProc) appAddr() string { return fmt.Sprintf("127.0.0.1:%d", a.appPort) }

const agentConfigTemplate = `listen: %s
root: %s
port: %d
preflight: true
restart: { backoff: 50ms, max_backoff: 1s }
shutdown_timeout: 5s
allow_root: true
`

const lbConfigTemplate = `listeners:
  - name: web
    address: %s
    routes: [ { pool: hello } ]
admin:
  address: %s
  token_file: %s
state_file: %s
shutdown_timeout: 10s
pools:
  hello:
    targets: [%s]
    # A timeout twice the round trip of the data path's injected latency,
    # so that only resets and dead apps fail a check.
    health: { path: /healthz, interval: 250ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }
    deregistration_delay: 20s
`

// links says which links of a fleet go through Toxiproxy.
type links struct {
	// directControl and directData leave the engine↔agent or the lb↔app
	// links without a proxy.
	directControl, directData bool
}

// startFleet starts Toxiproxy, three agents and the balancer.
func startFleet(t *testing.T, l links) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: t.TempDir()}
	f.requestLog = filepath.Join(f.dir, "requests.log")
	// Toxiproxy's own logs would only repeat what the test reports.
	f.tox = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	// Every process's address is taken before any of them binds it, and
	// held until the proxies have bound theirs: otherwise the kernel could
	// hand one free port out twice.
	addrs, release := reserveAddrs(t, 8)
	var targets []string
	for i := 0; i < 3; i++ {
		a := f.newAgent(fmt.Sprintf("staging-%d", i+1), addrs[2*i], addrs[2*i+1])
		if !l.directControl {
			a.ctl = f.proxy(a.name+"-ctl", a.listen)
		}
		if !l.directData {
			a.data = f.proxy(a.name+"-data", a.appAddr())
		}
		f.agents = append(f.agents, a)
		targets = append(targets, a.target())
	}
	release()
	// Started all at once, waited for together: each start is a
	// process's startup time.
	for _, a := range f.agents {
		a.start(t)
	}
	f.lb = startLB(t, filepath.Join(f.dir, "lb"), addrs[6], addrs[7], targets)
	for _, a := range f.agents {
		a.ready(t)
		a.gate(t, true)
	}
	f.lb.ready(t)
	f.artifact = helloTarGz(t, f.dir)
	return f
}

// reserveAddrs listens on n free loopback ports at once, so they differ,
// and returns their addresses and what closes them.
func reserveAddrs(t *testing.T, n int) ([]string, func()) {
	t.Helper()
	var lns []net.Listener
	release := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			release()
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, release
}

// proxy starts a Toxiproxy proxy on a free loopback port in front of
// upstream.
func (f *fleet) proxy(name, upstream string) *toxiproxy.Proxy {
	f.t.Helper()
	p := toxiproxy.NewProxy(f.tox, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		f.t.Fatalf("toxiproxy %s: %v", name, err)
	}
	f.t.Cleanup(p.Stop)
	return p
}

// newAgent writes the config of an agent that listens on listen and gives
// its app the port of app.
func (f *fleet) newAgent(name, listen, app string) *agentProc {
	t := f.t
	t.Helper()
	dir := filepath.Join(f.dir, name)
	_, port, err := net.SplitHostPort(app)
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{name: name, dir: dir, root: filepath.Join(dir, "root"), cfgPath: filepath.Join(dir, "agent.yaml"), listen: listen}
	if a.appPort, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(agentConfigTemplate, a.listen, a.root, a.appPort)
	if err := os.WriteFile(a.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before the agent's own cleanup, so it runs after the
	// agent is killed: the app outlives its agent by design.
	t.Cleanup(func() { proctest.KillUnder(a.root) })
	return a
}

// run starts the agent process and waits until its API answers.
func (a *agentProc) run(t *testing.T) {
	t.Helper()
	a.start(t)
	a.ready(t)
}

func (a *agentProc) start(t *testing.T) {
	t.Helper()
	a.proc = proctest.Start(t, "zerodown agent "+a.name, bin.zerodown, "agent", "--config", a.cfgPath)
}

// ready waits until the agent's API answers.
func (a *agentProc) ready(t *testing.T) {
	t.Helper()
	tokenPath := filepath.Join(a.root, "agent.token")
	proctest.Eventually(t, 10*time.Second, a.name+"'s generated agent token", func() bool {
		b, err := os.ReadFile(tokenPath)
		a.token = strings.TrimSpace(string(b))
		return err == nil && a.token != ""
	})
	var err error
	a.client, err = agent.NewClient(agent.ClientConfig{URL: "http://" + a.listen, Token: a.token})
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, a.name+"'s agent API", func() bool {
		_, err := a.status(time.Second)
		return err == nil
	})
}

func (a *agentProc) status(within time.Duration) (agent.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return a.client.AgentStatus(ctx)
}

// gate opens or closes the host's gate (see gateHook).
func (a *agentProc) gate(t *testing.T, open bool) {
	t.Helper()
	p := filepath.Join(a.root, "gate")
	var err error
	if open {
		err = os.WriteFile(p, nil, 0o644)
	} else {
		err = os.Remove(p)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// heldAtGate waits until the agent's activation of version waits at its
// closed gate.
func (a *agentProc) heldAtGate(t *testing.T, version string, within time.Duration) {
	t.Helper()
	proctest.Eventually(t, within, a.name+" activating "+version+", held at its gate", func() bool {
		s, err := a.status(time.Second)
		return err == nil && s.Activation != nil && s.Activation.Version == version && s.Activation.Phase == "hooks"
	})
}

// idle waits until no activation runs on the agent.
func (a *agentProc) idle(t *testing.T, within time.Duration) {
	t.Helper()
	proctest.Eventually(t, within, a.name+" to finish its activation", func() bool {
		s, err := a.status(time.Second)
		return err == nil && s.Activation == nil
	})
}

// lbProc is `zerodown lb` on free loopback ports.
type lbProc struct {
	dir, cfgPath, tokenFile string
	pidFile                 string
	url, admin              string
	proc                    *proctest.Proc
	client                  *builtin.Client
}

// startLB starts `zerodown lb` on listen, with its admin API on admin.
func startLB(t *testing.T, dir, listen, admin string, targets []string) *lbProc {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &lbProc{dir: dir, cfgPath: filepath.Join(dir, "lb.yaml"), tokenFile: filepath.Join(dir, "admin.token")}
	cfg := fmt.Sprintf(lbConfigTemplate, listen, admin, l.tokenFile, filepath.Join(dir, "state.json"), strings.Join(targets, ", "))
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l.url, l.admin = "http://"+listen, "http://"+admin
	l.pidFile = filepath.Join(dir, "lb.pid")
	l.proc = proctest.Start(t, "zerodown lb", bin.zerodown, "lb", "--config", l.cfgPath, "--pid-file", l.pidFile)
	// A process an upgrade started is not the test's child: stop whichever
	// serves at the end.
	t.Cleanup(func() {
		if b, err := os.ReadFile(l.pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return l
}

// killAndRestart SIGKILLs the balancer, starts it again at once on the
// same config and state file, and returns how long it took to answer again.
func (l *lbProc) killAndRestart(t *testing.T) time.Duration {
	t.Helper()
	killed := time.Now()
	l.proc.Signal(syscall.SIGKILL)
	l.proc.Wait(t, 10*time.Second)
	l.proc = proctest.Start(t, "zerodown lb (restarted)", bin.zerodown, "lb", "--config", l.cfgPath, "--pid-file", l.pidFile)
	proctest.Eventually(t, 20*time.Second, "the restarted balancer to answer", func() bool {
		resp, err := http.Get(l.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return time.Since(killed)
}

// upgrade hands the balancer's sockets to a new process with `zerodown lb
// upgrade` and returns what it printed.
// A process still finishing the requests of an earlier upgrade makes it
// refuse another one: it is asked again until that process is gone.
func (l *lbProc) upgrade(t *testing.T) string {
	t.Helper()
	var out string
	proctest.Eventually(t, 30*time.Second, "zerodown lb upgrade to hand over", func() bool {
		var code int
		out, code = runZerodown(t, "lb", "upgrade", "--admin", l.admin, "--token-file", l.tokenFile)
		if code != 0 && !strings.Contains(out, "still finishing its requests") {
			t.Fatalf("zerodown lb upgrade: exit %d\n%s", code, out)
		}
		return code == 0
	})
	return strings.TrimSpace(out)
}

// ready waits until the balancer's admin API answers.
func (l *lbProc) ready(t *testing.T) {
	t.Helper()
	var token string
	proctest.Eventually(t, 10*time.Second, "the balancer's generated admin token", func() bool {
		b, err := os.ReadFile(l.tokenFile)
		token = strings.TrimSpace(string(b))
		return err == nil && token != ""
	})
	var err error
	l.client, err = builtin.New(builtin.Config{Admin: l.admin, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "the balancer's admin API", func() bool {
		_, err := l.pool()
		return err == nil
	})
}

func (l *lbProc) pool() (builtin.Pool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return l.client.Pool(ctx, "hello")
}

// idle waits until the balancer has no request in flight to any target:
// until then a POST could still be sent, or sent again.
func (l *lbProc) idle(t *testing.T, within time.Duration) {
	t.Helper()
	proctest.Eventually(t, within, "the balancer to have no request in flight", func() bool {
		p, err := l.pool()
		if err != nil {
			return false
		}
		for _, tg := range p.Targets {
			if tg.InFlight != 0 {
				return false
			}
		}
		return true
	})
}

// deployConfigTemplate is zerodown.yaml; %s are filled in by config.
const deployConfigTemplate = `app:
  name: hello
  run: ["./hello", "--listen", "127.0.0.1:${PORT}", "--name", "faults", "--request-log", %q]
  health: { path: /healthz, interval: 50ms, timeout: 5s }
  stop: { signal: SIGTERM, timeout: 10s }
%sstate: %s
environments:
  staging:
    lb:
      driver: builtin
      admin: %s
      pool: hello
      token_file: %s
    hosts:
%s    strategy:
      rolling: { %s }
%s`

// gateHook makes an activation wait, in its first phase (hooks), until the
// host's gate file exists: so a test can strike while an activation is
// surely in progress, however fast the app starts. The app runs in
// releases/<version>/, the gate is <root>/gate. Bounded: after 10 s the
// hook fails the activation, saying why.
const gateHook = `  hooks: { before_start: [[sh, -c, 'i=0; while [ ! -e ../../gate ]; do i=$((i+1)); if [ $i -gt 500 ]; then echo "the gate ../../gate stayed closed for 10s" >&2; exit 1; fi; sleep 0.02; done']] }
`

// config writes a zerodown.yaml: rolling is the rolling strategy's
// settings, verify the verify block's (none when empty); gated puts
// gateHook in the app spec.
func (f *fleet) config(name, rolling, verify string, gated bool) string {
	f.t.Helper()
	var hosts strings.Builder
	for _, a := range f.agents {
		fmt.Fprintf(&hosts, "      - { name: %s, agent: %q, target: %q, token_file: %q }\n",
			a.name, a.agentURL(), a.target(), filepath.Join(a.root, "agent.token"))
	}
	if verify != "" {
		verify = "    verify: { " + verify + " }\n"
	}
	hooks := ""
	if gated {
		hooks = gateHook
	}
	cfg := fmt.Sprintf(deployConfigTemplate, f.requestLog, hooks, filepath.Join(f.dir, "state.db"), f.lb.admin,
		f.lb.tokenFile, hosts.String(), rolling, verify)
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// firstDeploy puts v1 on every host at once, without a verifier: it is
// the fixture, not the test.
func (f *fleet) firstDeploy() {
	f.t.Helper()
	cfg := f.config("zerodown-first.yaml", `batch: "100%", min_healthy: 0, health_timeout: 20s`, "", false)
	d := f.startDeploy("first deploy", "deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", cfg, "-o", "json")
	if code := d.wait(f.t, 2*time.Minute); code != 0 {
		f.t.Fatalf("first deploy: exit %d\n%s", code, d.output())
	}
}

// hostState is how one host ended.
type hostState struct {
	version string // the app's X-Version, asked directly
	agent   agent.Status
	lb      lb.State
	err     error
}

// endState reads every host once the agents have settled: what the app
// answers, what the agent reports, and what `zerodown lb targets list`
// says. It returns what it found, for the table, and the deviations from
// every host serving want, healthy in the balancer.
func (f *fleet) endState(want string) (string, []string) {
	t := f.t
	t.Helper()
	states := make([]hostState, len(f.agents))
	for i, a := range f.agents {
		// An agent restarted during the run may still be adopting or
		// recovering its app; that is done within seconds.
		var s agent.Status
		var err error
		proctest.Eventually(t, 15*time.Second, a.name+"'s agent to settle", func() bool {
			s, err = a.status(2 * time.Second)
			return err == nil && s.Activation == nil && s.State == "running" && s.Healthy
		})
		states[i].agent = s
		states[i].version, states[i].err = appVersion(a.appAddr())
	}
	pools := f.lbTargets()
	for i, a := range f.agents {
		states[i].lb = "absent"
		for _, tg := range pools {
			if tg.Address == a.target() {
				states[i].lb = tg.State
			}
		}
	}
	var problems, found []string
	same := true
	for i, a := range f.agents {
		s := states[i]
		v := s.version
		switch {
		case s.err != nil:
			v = "no answer"
			problems = append(problems, fmt.Sprintf("%s: the app does not answer: %v", a.name, s.err))
		case s.agent.Version != s.version:
			v = fmt.Sprintf("%s (its agent says %s)", s.version, s.agent.Version)
			problems = append(problems, fmt.Sprintf("%s: the app serves %s, its agent reports %s", a.name, s.version, s.agent.Version))
		case s.version != want:
			problems = append(problems, fmt.Sprintf("%s: on %s, want %s", a.name, s.version, want))
		}
		if s.lb != lb.StateHealthy {
			problems = append(problems, fmt.Sprintf("%s: %s in the balancer, want healthy", a.name, s.lb))
		}
		same = same && v == states[0].version && s.lb == lb.StateHealthy
		found = append(found, fmt.Sprintf("%s %s, %s in the lb", a.name, v, s.lb))
	}
	if same {
		return fmt.Sprintf("%d/%d on %s, healthy in the lb", len(f.agents), len(f.agents), states[0].version), problems
	}
	return strings.Join(found, "; "), problems
}

// lbTargets runs `zerodown lb targets list -o json`: the state a person
// would read.
func (f *fleet) lbTargets() []builtin.Target {
	t := f.t
	t.Helper()
	out, code := runZerodown(t, "lb", "targets", "list", "--admin", f.lb.admin, "--token-file", f.lb.tokenFile, "-o", "json")
	if code != 0 {
		t.Fatalf("lb targets list: exit %d\n%s", code, out)
	}
	var list struct{ Pools []builtin.Pool }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("lb targets list -o json: %v\n%s", err, out)
	}
	for _, p := range list.Pools {
		if p.Name == "hello" {
			return p.Targets
		}
	}
	t.Fatalf("lb targets list has no pool hello:\n%s", out)
	return nil
}

// runZerodown runs the binary to completion and returns its output (stdout
// and stderr) and exit code.
func runZerodown(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin.zerodown, args...)
	var out proctest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), cmd.ProcessState.ExitCode()
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("zerodown %v did not finish in 2 minutes:\n%s", args, out.String())
		return "", -1
	}
}

var appHTTP = &http.Client{Timeout: 2 * time.Second}

// appVersion asks the app itself, not through the balancer.
func appVersion(addr string) (string, error) {
	resp, err := appHTTP.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header.Get("X-Version"), nil
}

// helloTarGz writes the sample app as a release artifact into dir.
func helloTarGz(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(bin.hello)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "hello.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
