package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
)

// fleetFixture is the whole product on loopback: `zerodown lb`, three
// agents and the sample app they run.
type fleetFixture struct {
	t        *testing.T
	dir      string
	lb       *lbFixture
	agents   []*agentFixture
	artifact string
}

// appYAML is the sample app and the journal of every e2e zerodown.yaml:
// %s adds to the app's arguments, %s is the journal.
const appYAML = `app:
  name: hello
  run: ["./hello", "--listen", "127.0.0.1:${PORT}", "--name", "e2e"%s]
  health: { path: /healthz, interval: 50ms, timeout: 3s }
  stop: { signal: SIGTERM, timeout: 10s }
state: %s
`

const deployConfigTemplate = appYAML + `environments:
  staging:
    lb:
      driver: builtin
      admin: %s
      pool: hello
      token_file: %s
    hosts:
%s    strategy:
      rolling: { min_healthy: %d, drain_timeout: 30s, health_timeout: 20s%s }
pipelines:
  staging-by-hand:
    environment: staging
    stages:
      - name: update-staging-1
        jobs: [ { tasks: [ {detach: staging-1}, {deploy: staging-1} ] } ]
      - name: attach-staging-1
        jobs: [ { tasks: [ {attach: staging-1} ] } ]
      - name: update-staging-2
        jobs: [ { tasks: [ {detach: staging-2}, {deploy: staging-2}, {attach: staging-2} ] } ]
`

func startFleet(t *testing.T) *fleetFixture {
	t.Helper()
	f := &fleetFixture{t: t, dir: t.TempDir()}
	var targets []string
	for i := 0; i < 3; i++ {
		a := startAgent(t, true)
		f.agents = append(f.agents, a)
		targets = append(targets, fmt.Sprintf("127.0.0.1:%d", a.port))
	}
	f.lb = startLB(t, f.dir, targets...)
	f.artifact = helloTarGz(t)
	return f
}

// config writes a zerodown.yaml and returns its path. extraArgs go to the
// app's command line; rolling adds to the rolling strategy's settings.
func (f *fleetFixture) config(name string, minHealthy int, rolling string, extraArgs ...string) string {
	f.t.Helper()
	var hosts strings.Builder
	for i, a := range f.agents {
		fmt.Fprintf(&hosts, "      - { name: staging-%d, agent: %q, target: \"127.0.0.1:%d\", token_file: %q }\n",
			i+1, a.url, a.port, filepath.Join(a.root, "agent.token"))
	}
	args := ""
	for _, a := range extraArgs {
		args += fmt.Sprintf(", %q", a)
	}
	if rolling != "" {
		rolling = ", " + rolling
	}
	cfg := fmt.Sprintf(deployConfigTemplate, args, filepath.Join(f.dir, "state.db"), f.lb.admin,
		filepath.Join(f.lb.dir, "admin.token"), hosts.String(), minHealthy, rolling)
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// zerodown runs the binary to completion and returns its output and exit code.
func (f *fleetFixture) zerodown(args ...string) (string, int) {
	f.t.Helper()
	cmd := exec.Command(bin.zerodown, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			f.t.Fatal(err)
		}
		return out.String(), cmd.ProcessState.ExitCode()
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		f.t.Fatalf("zerodown %v did not finish in 3 minutes:\n%s", args, out.String())
		return "", -1
	}
}

// onVersion checks that every host serves version and is healthy in the
// load balancer.
func (f *fleetFixture) onVersion(hosts []int, version string) {
	f.t.Helper()
	for _, i := range hosts {
		a := f.agents[i]
		v, err := appVersion(a.app)
		if err != nil || v != version {
			f.t.Fatalf("staging-%d answers %q (%v), want %s", i+1, v, err, version)
		}
		if st := f.lb.target(f.t, fmt.Sprintf("127.0.0.1:%d", a.port)).State; st != lb.StateHealthy {
			f.t.Fatalf("staging-%d is %s in the load balancer, want healthy", i+1, st)
		}
	}
}

var all = []int{0, 1, 2}

// failingOn makes the next release fail its health check on host i (and
// only there, until the test ends) and returns the config to deploy it with.
func (f *fleetFixture) failingOn(t *testing.T, i int, name string) string {
	t.Helper()
	marker := filepath.Join(f.agents[i].root, "fail")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(marker) })
	// The app runs in releases/<version>/: the marker is two levels up.
	return f.config(name, 1, "", "--unhealthy-file", "../../fail")
}

// TestDeployEndToEnd drives the real binary through a fleet's life: a first
// deploy, rolling upgrades under GET and POST load with zero failed
// requests, a release that fails its health check on the second host and is
// rolled back everywhere, min_healthy refusing a batch, the lock refusing a
// concurrent deploy, a deploy killed mid-drain and resumed, and DESIGN.md's
// hand-written three-stage pipeline.
func TestDeployEndToEnd(t *testing.T) {
	f := startFleet(t)
	good := f.config("zerodown.yaml", 1, "")

	out, code := f.zerodown("deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", good, "-o", "log")
	if code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.onVersion(all, "v1")

	l := startLoad(f.lb.url, 200, 60000, 4*time.Minute)
	defer l.finish()
	checkLoad := func(phase string) {
		t.Helper()
		if n := l.failed.Load(); n != 0 {
			t.Fatalf("%s: %s", phase, l.report())
		}
	}

	t.Run("rolling v1 to v2 under load", func(t *testing.T) {
		okBefore := l.ok.Load()
		out, code := f.zerodown("deploy", "staging", "--version", "v2", "--artifact", f.artifact, "-c", good, "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		f.onVersion(all, "v2")
		checkLoad("v1 → v2")
		if l.ok.Load() < okBefore+100 {
			t.Fatalf("the load did not run during the deploy: %s", l.report())
		}
		for _, ev := range []string{`"type":"detaching"`, `"type":"drained"`, `"type":"activated"`, `"type":"healthy"`} {
			if !strings.Contains(out, ev) {
				t.Fatalf("JSON events lack %s:\n%s", ev, out)
			}
		}
		// A re-run finds nothing to do.
		out, code = f.zerodown("deploy", "staging", "--version", "v2", "--artifact", f.artifact, "-c", good)
		if code != 0 || !strings.Contains(out, "nothing to do") {
			t.Fatalf("re-run: exit %d\n%s", code, out)
		}
	})

	t.Run("v3 fails health on staging-2: both changed hosts roll back", func(t *testing.T) {
		bad := f.failingOn(t, 1, "zerodown-bad.yaml")
		out, code := f.zerodown("deploy", "staging", "--version", "v3", "--artifact", f.artifact, "-c", bad, "-o", "log")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		if !strings.Contains(out, "rolled back") {
			t.Fatalf("output does not say it rolled back:\n%s", out)
		}
		f.onVersion(all, "v2")
		checkLoad("failed v3")
	})

	t.Run("min_healthy refuses a batch that would breach it", func(t *testing.T) {
		// With staging-3 out of the load balancer, taking staging-1 out too
		// would leave one healthy host where two are required.
		strict := f.config("zerodown-strict.yaml", 2, "")
		third := fmt.Sprintf("127.0.0.1:%d", f.agents[2].port)
		ctx := ctxFor(t, 30*time.Second)
		if _, err := f.lb.client.Detach(ctx, "hello", builtin.DetachRequest{Target: third, Wait: true, Timeout: "10s"}); err != nil {
			t.Fatal(err)
		}
		out, code := f.zerodown("deploy", "staging", "--version", "v4", "--artifact", f.artifact, "-c", strict, "-o", "log")
		if code != 1 || !strings.Contains(out, "it would leave 1 healthy target(s) (staging-2), min_healthy is 2") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if _, err := f.lb.client.Attach(ctx, "hello", builtin.AttachRequest{Target: third, Wait: true, Timeout: "10s"}); err != nil {
			t.Fatal(err)
		}
		f.onVersion(all, "v2")
		checkLoad("min_healthy refusal")
	})

	t.Run("a concurrent deploy is refused by the lock", func(t *testing.T) {
		slow := f.config("zerodown-slow.yaml", 1, "bake: 1s")
		first := proctest.Start(t, "first deploy", bin.zerodown, "deploy", "staging", "--version", "v4", "--artifact", f.artifact, "-c", slow, "-o", "log")
		proctest.Eventually(t, 30*time.Second, "the first deploy to start its first batch", func() bool {
			return strings.Contains(first.Output(), "detaching")
		})
		out, code := f.zerodown("deploy", "staging", "--version", "v5", "--artifact", f.artifact, "-c", good, "-o", "log")
		if code != 1 || !strings.Contains(out, "environment staging is locked by") || !strings.Contains(out, "since") {
			t.Fatalf("second deploy: exit %d\n%s", code, out)
		}
		if code := first.Wait(t, 2*time.Minute); code != 0 {
			t.Fatalf("first deploy: exit %d\n%s", code, first.Output())
		}
		f.onVersion(all, "v4")
		checkLoad("v2 → v4")
	})

	t.Run("killed mid-drain, then resumed", func(t *testing.T) {
		// Long requests keep the first host draining when the run reaches
		// it, however long the uploads take on a loaded machine: a new
		// one starts every 300ms (at most 100) until the run is killed.
		var long sync.WaitGroup
		stopLong := make(chan struct{})
		longOne := func() {
			defer long.Done()
			resp, err := http.Get(f.lb.url + "/?sleep=3s")
			if err != nil {
				l.fail("long request: " + err.Error())
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				l.fail(fmt.Sprintf("long request: status %d", resp.StatusCode))
			}
		}
		long.Add(1)
		go func() {
			defer long.Done()
			tick := time.NewTicker(300 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 100; i++ {
				long.Add(1)
				go longOne()
				select {
				case <-stopLong:
					return
				case <-tick.C:
				}
			}
		}()
		proctest.Eventually(t, 5*time.Second, "long requests in flight", func() bool {
			return f.lb.target(t, fmt.Sprintf("127.0.0.1:%d", f.agents[0].port)).InFlight > 0
		})
		f.deployKilledAt(t, good, "v5", func(line string) bool { return strings.Contains(line, `"type":"draining"`) })
		close(stopLong)
		out, code := f.zerodown("history", "staging", "-c", good)
		if code != 0 {
			t.Fatalf("history: exit %d\n%s", code, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 || !strings.Contains(lines[1], "interrupted: resume or rollback") {
			t.Fatalf("history does not show the killed run as interrupted:\n%s", out)
		}
		runID := strings.Fields(lines[1])[0]
		out, code = f.zerodown("resume", runID, "-c", good, "-o", "log")
		if code != 0 {
			t.Fatalf("resume: exit %d\n%s", code, out)
		}
		long.Wait()
		f.onVersion(all, "v5")
		checkLoad("killed and resumed")
		out, code = f.zerodown("show", runID, "-c", good)
		if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, "wait-drained staging-1") {
			t.Fatalf("show: exit %d\n%s", code, out)
		}
	})

	t.Run("the hand-written three-stage pipeline", func(t *testing.T) {
		out, code := f.zerodown("deploy", "staging", "--pipeline", "staging-by-hand", "--version", "v6", "--artifact", f.artifact, "-c", good, "-o", "log")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		// Attach is not followed by a wait in this pipeline: observe it here.
		for _, i := range []int{0, 1} {
			addr := fmt.Sprintf("127.0.0.1:%d", f.agents[i].port)
			f.lb.waitState(t, addr, lb.StateHealthy, 10*time.Second)
		}
		f.onVersion([]int{0, 1}, "v6")
		f.onVersion([]int{2}, "v5")
		checkLoad("hand-written pipeline")
	})

	l.finish()
	checkLoad("the whole test")
	t.Logf("load: %s", l.report())
}
