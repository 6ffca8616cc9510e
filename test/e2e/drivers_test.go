package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/proctest"
)

// driverFleet is a fleet of agents behind a load balancer that is not
// zerodown's own, deployed to with that balancer's driver.
type driverFleet struct {
	t      *testing.T
	dir    string
	agents []*agentFixture
	// lbYAML is the environment's lb: mapping, hostYAML what each host
	// adds to its own (server:, instance:).
	lbYAML   string
	hostYAML func(i int) string
	// front is the balancer's URL; bal observes it as zerodown's driver
	// does.
	front string
	bal   lb.Balancer
	// canaryOnly is a balancer set up for a canary alone (an ALB's
	// canary target group); evenShares, when set, checks that every
	// target is back on an even share after one.
	canaryOnly bool
	evenShares func() error
}

// command is zerodown with args.
func (f *driverFleet) command(args ...string) *exec.Cmd {
	return exec.Command(bin.zerodown, args...)
}

// startDriverAgents starts n agents for a driver fleet.
func startDriverAgents(t *testing.T, n int) *driverFleet {
	t.Helper()
	f := &driverFleet{t: t, dir: t.TempDir(), hostYAML: func(int) string { return "" }}
	for i := 0; i < n; i++ {
		f.agents = append(f.agents, startAgent(t, true))
	}
	return f
}

// target is agent i's app address.
func (f *driverFleet) target(i int) string {
	return fmt.Sprintf("127.0.0.1:%d", f.agents[i].port)
}

// envYAML is the fleet as environment env of zerodown.yaml.
func (f *driverFleet) envYAML(env string) string {
	var hosts strings.Builder
	for i, a := range f.agents {
		extra := f.hostYAML(i)
		if extra != "" {
			extra = ", " + extra
		}
		fmt.Fprintf(&hosts, "      - { name: %s-%d, agent: %q, target: %q, token_file: %q%s }\n",
			env, i+1, a.url, f.target(i), filepath.Join(a.root, "agent.token"), extra)
	}
	return fmt.Sprintf(`  %s:
    lb: %s
    hosts:
%s    strategy:
      rolling: { min_healthy: 1, drain_timeout: 30s, health_timeout: 30s }
`, env, f.lbYAML, hosts.String())
}

// appArgs is extraArgs as the tail of the app's run list in appYAML.
func appArgs(extraArgs ...string) string {
	args := ""
	for _, a := range extraArgs {
		args += fmt.Sprintf(", %q", a)
	}
	return args
}

// config writes zerodown.yaml; extraArgs go to the app's command line.
func (f *driverFleet) config(name string, extraArgs ...string) string {
	f.t.Helper()
	cfg := fmt.Sprintf(appYAML, appArgs(extraArgs...), filepath.Join(f.dir, "state.db")) + "environments:\n" + f.envYAML("staging")
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// deploy runs `zerodown deploy` to completion, calling during (when set)
// while it runs.
func (f *driverFleet) deploy(cfg, version string, during func()) (string, int) {
	f.t.Helper()
	var hook func(*proctest.Buffer)
	if during != nil {
		hook = func(*proctest.Buffer) { during() }
	}
	return zerodownWhile(f.t, hook, "deploy", "staging", "--version", version, "--artifact", helloTarGz(f.t), "-c", cfg, "-o", "log")
}

// zerodownWhile runs zerodown with args to completion and returns its
// output and exit code; during, when set, runs meanwhile with the output
// so far. A command still running after 3 minutes fails t.
func zerodownWhile(t *testing.T, during func(out *proctest.Buffer), args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin.zerodown, args...)
	var out proctest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if during != nil {
		during(&out)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("zerodown %s did not finish in 3 minutes:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// targets reads the balancer's view.
func (f *driverFleet) targets() (map[string]lb.Target, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts, err := f.bal.Targets(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]lb.Target{}
	for _, tg := range ts {
		out[tg.Address] = tg
	}
	return out, nil
}

// onVersion checks that every host serves version and that the balancer
// reports every one healthy.
func (f *driverFleet) onVersion(version string) {
	f.t.Helper()
	for i, a := range f.agents {
		if v, err := appVersion(a.app); err != nil || v != version {
			f.t.Fatalf("staging-%d answers %q (%v), want %s", i+1, v, err, version)
		}
	}
	proctest.Eventually(f.t, 30*time.Second, "every host healthy in the load balancer", func() bool {
		ts, err := f.targets()
		if err != nil {
			return false
		}
		for i := range f.agents {
			if ts[f.target(i)].State != lb.StateHealthy {
				return false
			}
		}
		return true
	})
}

// rollingThrough is the deploy test every driver passes: a first deploy;
// v2 under GET and slow-POST load with no failed request; v3 failing its
// health check on the second host, rolled back everywhere, still with no
// failed request. during, when set, runs while v2 is being deployed.
func rollingThrough(t *testing.T, f *driverFleet, during func()) {
	cfg := f.config("zerodown.yaml")
	if out, code := f.deploy(cfg, "v1", nil); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.onVersion("v1")

	// check and plan read the balancer through the same driver.
	out, err := f.command("check", "staging", "-c", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "WAIT PER HOST") || !strings.Contains(string(out), "ok: the load balancer and") {
		t.Fatalf("zerodown check: %v\n%s", err, out)
	}
	t.Logf("zerodown check:\n%s", out)
	out, err = f.command("plan", "staging", "-c", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "# waits per host through") || !strings.Contains(string(out), "#   drain") {
		t.Fatalf("zerodown plan: %v\n%s", err, out)
	}

	l := startLoad(f.front, 100, 20000, 3*time.Minute)
	posts := startSlowPosts(f.front, 3, 3*time.Minute)
	log, code := f.deploy(cfg, "v2", during)
	l.finish()
	postReport := posts.finish()
	if code != 0 {
		t.Fatalf("deploy v2: exit %d\n%s", code, log)
	}
	f.onVersion("v2")
	if l.failed.Load() > 0 || l.ok.Load() == 0 || posts.failed.Load() > 0 || posts.ok.Load() == 0 {
		t.Fatalf("requests during the deploy of v2: GET %s; POST %s\n%s", l.report(), postReport, log)
	}
	t.Logf("v2: GET %d ok; POST %s", l.ok.Load(), postReport)

	marker := filepath.Join(f.agents[1].root, "fail")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := f.config("zerodown-bad.yaml", "--unhealthy-file", "../../fail")
	l = startLoad(f.front, 100, 20000, 3*time.Minute)
	posts = startSlowPosts(f.front, 3, 3*time.Minute)
	log, code = f.deploy(bad, "v3", nil)
	l.finish()
	postReport = posts.finish()
	os.Remove(marker)
	if code != 1 || !strings.Contains(log, "rolled back") {
		t.Fatalf("a release failing its health check on staging-2: exit %d, want 1 (rolled back)\n%s", code, log)
	}
	f.onVersion("v2")
	if l.failed.Load() > 0 || posts.failed.Load() > 0 {
		t.Fatalf("requests during the failed deploy and its rollback: GET %s; POST %s\n%s", l.report(), postReport, log)
	}
	t.Logf("v3 rolled back: GET %d ok; POST %s", l.ok.Load(), postReport)
}
