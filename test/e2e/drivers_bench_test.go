package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
)

// startBuiltinFor starts `zerodown lb` in front of f's agents and points
// f's driver at it.
func startBuiltinFor(t *testing.T, f *driverFleet) {
	t.Helper()
	var targets []string
	for i := range f.agents {
		targets = append(targets, f.target(i))
	}
	l := startLB(t, f.dir, targets...)
	f.bal = l.client.Balancer("hello")
	f.front = l.url
	f.lbYAML = fmt.Sprintf("{ driver: builtin, admin: %q, pool: hello, token_file: %q }", l.admin, l.dir+"/admin.token")
}

// recipe deploys as the hand-made recipe zerodown replaces does, host by
// host: deregister, sleep 60, deploy, register, sleep 60 — through the
// same driver calls (the recipe's `aws elb deregister-instances-...`)
// and the same agents, on the simulation's clock (sleep 60 × scale). The
// sleep is the recipe's, the thing measured, not a wait in the test.
func recipe(t *testing.T, f *driverFleet, cfgPath, version string, scale float64) time.Duration {
	t.Helper()
	cfg, err := config.LoadDeploy(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := deploy.Release(helloTarGz(t), version, cfg.App)
	if err != nil {
		t.Fatal(err)
	}
	sleep := time.Duration(float64(time.Minute) * scale)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	for i, a := range f.agents {
		token, err := os.ReadFile(filepath.Join(a.root, "agent.token"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := agent.NewClient(agent.ClientConfig{URL: a.url, Token: strings.TrimSpace(string(token))})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.bal.Detach(ctx, f.target(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(sleep)
		if err := c.Upload(ctx, rel); err != nil {
			t.Fatal(err)
		}
		if err := c.Activate(ctx, version); err != nil {
			t.Fatal(err)
		}
		if err := f.bal.Attach(ctx, f.target(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(sleep)
	}
	return time.Since(start)
}

// driverBench is one row of the drivers' benchmark.
type driverBench struct {
	name  string
	setup func(t *testing.T, f *driverFleet)
	// scale is the simulation's clock (AWS's timers × scale); 0 for a
	// real balancer.
	scale float64
}

// onV1 is two hosts behind the bench's balancer, deployed v1 through it.
func (b driverBench) onV1(t *testing.T) (*driverFleet, string) {
	f := startDriverAgents(t, 2)
	b.setup(t, f)
	cfg := f.config("zerodown.yaml")
	if out, code := f.deploy(cfg, "v1", nil); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.onVersion("v1")
	return f, cfg
}

// driverBenches are the balancers the benchmark deploys through; the
// drivers' files add theirs.
var driverBenches = []driverBench{
	{"builtin (zerodown lb)", startBuiltinFor, 0},
	{"haproxy 2.6", func(t *testing.T, f *driverFleet) { startHAProxyFor(t, f) }, 0},
	{"nginx 1.22", startNginxFor, 0},
	{"aws-elb (simulated, AWS defaults)", func(t *testing.T, f *driverFleet) { startELBFor(t, f, awsClassicDefaults) }, awsScale},
	{"aws-elb (simulated, tuned)", func(t *testing.T, f *driverFleet) { startELBFor(t, f, awsTuned) }, awsScale},
	{"aws-alb (simulated, AWS defaults)", func(t *testing.T, f *driverFleet) { startALBFor(t, f, awsALBDefaults) }, awsScale},
	{"aws-alb (simulated, tuned)", func(t *testing.T, f *driverFleet) { startALBFor(t, f, awsTuned) }, awsScale},
}

// TestDriversBenchmark deploys the same two-host rolling release through
// every driver under GET and slow-POST load and prints, per driver, the
// rollout time, failed requests and the time of each detach (detaching →
// drained) and attach (attaching → healthy), beside the recipe's fixed
// 4 × sleep 60 and the plan's estimate. bench/drivers.sh runs it; it is
// skipped otherwise (it takes minutes).
func TestDriversBenchmark(t *testing.T) {
	if os.Getenv("ZERODOWN_BENCH_DRIVERS") == "" {
		t.Skip("set ZERODOWN_BENCH_DRIVERS=1 (bench/drivers.sh does)")
	}
	var rows []string
	for _, b := range driverBenches {
		t.Run(b.name, func(t *testing.T) {
			f, cfg := b.onV1(t)
			plan, err := f.command("plan", "staging", "-c", cfg).CombinedOutput()
			if err != nil {
				t.Fatalf("plan: %v\n%s", err, plan)
			}
			l := startLoad(f.front, 100, 200000, 20*time.Minute)
			posts := startSlowPosts(f.front, 3, 20*time.Minute)
			start := time.Now()
			out, code := f.deployJSON(cfg, "v2")
			took := time.Since(start)
			l.finish()
			posts.finish()
			if code != 0 {
				t.Fatalf("deploy v2: exit %d\n%s", code, out)
			}
			detaches, attaches := stepTimes(t, out)
			detach, attach := durations(detaches, 1), durations(attaches, 1)
			if b.scale > 0 {
				detach += " (at AWS's pace " + durations(detaches, b.scale) + ")"
				attach += " (at AWS's pace " + durations(attaches, b.scale) + ")"
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |", b.name, took.Round(100*time.Millisecond),
				failedOf(l, posts), detach, attach, planEstimate(string(plan)), planWaits(string(plan))))
		})
	}
	// The recipe through the simulated AWS load balancers, at their
	// defaults: its sleep 60 against AWS's 300 s drains and 5 to 10 checks.
	for _, b := range driverBenches {
		if b.scale == 0 || !strings.Contains(b.name, "defaults") {
			continue
		}
		t.Run("recipe through "+b.name, func(t *testing.T) {
			f, cfg := b.onV1(t)
			l := startLoad(f.front, 100, 200000, 20*time.Minute)
			posts := startSlowPosts(f.front, 3, 20*time.Minute)
			took := recipe(t, f, cfg, "v2", b.scale)
			l.finish()
			posts.finish()
			rows = append(rows, fmt.Sprintf("| recipe (sleep 60 × %g) through %s | %s (at AWS's pace %s) | %s | | | | |",
				b.scale, b.name, took.Round(100*time.Millisecond), time.Duration(float64(took)/b.scale).Round(time.Second), failedOf(l, posts)))
		})
	}
	fmt.Println("| balancer | rollout (2 hosts) | failed requests | detach → drained | attach → healthy | plan's estimate | plan's worst wait per host (drain / health) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("| recipe (sleep 60 after each call), its fixed time | %s | | 60s | 60s | | 60s / 60s |\n", 4*time.Minute)
}

// failedOf says how many GETs (sent at a fixed rate) and slow POSTs (sent
// by three workers, one after another) failed.
func failedOf(l *load, posts *slowPosts) string {
	return fmt.Sprintf("GET %d of %d, POST %d of %d", l.failed.Load(), l.ok.Load()+l.failed.Load(),
		posts.failed.Load(), posts.ok.Load()+posts.failed.Load())
}

// deployJSON runs a deploy with -o json and returns its output.
func (f *driverFleet) deployJSON(cfg, version string) (string, int) {
	cmd := f.command("deploy", "staging", "--version", version, "--artifact", helloTarGz(f.t), "-c", cfg, "-o", "json")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out) + string(ee.Stderr), ee.ExitCode()
		}
		f.t.Fatal(err)
	}
	return string(out), 0
}

// durations prints ds divided by scale, as "a, b".
func durations(ds []time.Duration, scale float64) string {
	var parts []string
	for _, d := range ds {
		d = time.Duration(float64(d) / scale)
		if scale != 1 {
			d = d.Round(time.Second)
		} else {
			d = d.Round(100 * time.Millisecond)
		}
		parts = append(parts, d.String())
	}
	return strings.Join(parts, ", ")
}

// stepTimes reads the run's events and returns each host's detach
// (detaching → drained) and attach (attaching → healthy) durations.
func stepTimes(t *testing.T, out string) (detaches, attaches []time.Duration) {
	t.Helper()
	begun := map[string]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e engine.Event // each event is a line of its own
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch e.Type {
		case engine.EvDetaching, engine.EvAttaching:
			begun[e.Host+e.Type] = e.At
		case engine.EvDrained:
			detaches = append(detaches, e.At.Sub(begun[e.Host+engine.EvDetaching]))
		case engine.EvHealthy:
			if at, ok := begun[e.Host+engine.EvAttaching]; ok {
				attaches = append(attaches, e.At.Sub(at))
			}
		}
	}
	if len(detaches) == 0 || len(attaches) == 0 {
		t.Fatalf("no detach or attach events in the run's JSON:\n%s", out)
	}
	return detaches, attaches
}

var (
	estimateRe = regexp.MustCompile(`# estimated duration: (\S+)`)
	waitRe     = regexp.MustCompile(`(?m)^#\s+(drain|health)\s+(\S+)`)
)

func planEstimate(plan string) string {
	if m := estimateRe.FindStringSubmatch(plan); m != nil {
		return m[1]
	}
	return "?"
}

func planWaits(plan string) string {
	var parts []string
	for _, m := range waitRe.FindAllStringSubmatch(plan, -1) {
		parts = append(parts, m[2])
	}
	return strings.Join(parts, " / ")
}
