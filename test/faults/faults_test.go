package faults

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/proctest"
)

// row is one fault and what may honestly come of it.
type row struct {
	name  string // the subtest's name
	fault string // the table's description
	// links leaves a path without Toxiproxy where the row kills what is
	// behind it: through a proxy, a dead process's refused connections
	// become connections that are accepted and closed, which a client
	// must treat as a call that may have been received. The row would
	// measure the proxy.
	links links
	// before sets up a fault that lasts the whole run and returns what
	// ends it once the run is over.
	before func(t *testing.T, f *fleet) (after func())
	// during runs on the test's goroutine while the deploy runs: it waits
	// for a step of the run, strikes, and says what it did.
	during func(t *testing.T, f *fleet, d *deployRun) string
	// resume: during kills the deploy; `zerodown resume` must finish it.
	resume bool
	// holdStaging2 closes staging-2's gate (see gateHook) before the run,
	// so that during can strike while its activation is in progress, and
	// then opens it.
	holdStaging2 bool
	// lossy, when not empty, is why POSTs in flight on host lossyHost may
	// fail: at most maxLost of them, each run at most once, and only by the
	// app of that host (or by none). The verifier gets the same allowance.
	// Every other row allows no failure at all.
	lossy     string
	lossyHost int // -1: any host, or none
	maxLost   int
	// lossyGets lets GETs fail too, within maxLost: a fault the client
	// itself meets (the balancer down), not one behind the balancer.
	lossyGets bool
}

// How long and how hard the faults strike. The rows aim at steps of the
// run: the rolling strategy changes staging-1, then staging-2, then
// staging-3, one at a time.
const (
	ctlLatency   = 300 * time.Millisecond
	dataLatency  = 50 * time.Millisecond
	blackholeFor = 3 * time.Second
	resetFor     = 1500 * time.Millisecond
	// stepWithin bounds the wait for a step of the run.
	stepWithin = 90 * time.Second
)

var rows = []row{
	{
		name:  "control latency",
		fault: fmt.Sprintf("control path: %s latency each way on every engine↔agent link, the whole run", ctlLatency),
		before: func(t *testing.T, f *fleet) func() {
			var removes []func()
			for _, a := range f.agents {
				removes = append(removes, addToxic(t, a.ctl, "latency", map[string]any{"latency": ctlLatency.Milliseconds()}, bothWays...))
			}
			return func() {
				for _, r := range removes {
					r()
				}
			}
		},
	},
	{
		name:         "control reset during activation",
		fault:        "control path: reset_peer on staging-2's agent link from the middle of its activation until 1 s after the agent finished it",
		holdStaging2: true,
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			a := f.agents[1]
			a.heldAtGate(t, "v2", stepWithin)
			remove := addToxic(t, a.ctl, "reset_peer", map[string]any{"timeout": 0}, bothWays...)
			a.gate(t, true)
			a.idle(t, 30*time.Second)
			hold(time.Second)
			remove()
			return ""
		},
	},
	{
		name:  "control blackhole",
		fault: fmt.Sprintf("control path: blackhole (timeout 0) on staging-2's agent link for %s from its detach, then healed", blackholeFor),
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			d.await(t, "staging-2", "detaching", stepWithin)
			remove := addToxic(t, f.agents[1].ctl, "timeout", map[string]any{"timeout": 0}, bothWays...)
			hold(blackholeFor)
			remove()
			return ""
		},
	},
	{
		name:         "control blackhole during activation",
		fault:        fmt.Sprintf("control path: blackhole (timeout 0) on staging-2's agent link from the middle of its activation until %s after the agent finished it", blackholeFor),
		holdStaging2: true,
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			a := f.agents[1]
			a.heldAtGate(t, "v2", stepWithin)
			remove := addToxic(t, a.ctl, "timeout", map[string]any{"timeout": 0}, bothWays...)
			a.gate(t, true)
			a.idle(t, 30*time.Second)
			hold(blackholeFor)
			remove()
			return "the engine read the activation's end from the agent's status once the link healed"
		},
	},
	{
		name:  "lb upgraded twice",
		fault: "`zerodown lb upgrade` (a new process takes over the sockets) while staging-1 drains, and again while staging-2 is activated",
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			d.await(t, "staging-1", "detaching", stepWithin)
			first := f.lb.upgrade(t)
			d.await(t, "staging-2", "deploying", stepWithin)
			second := f.lb.upgrade(t)
			return "handovers: " + strings.TrimSuffix(first, "; the old one is finishing its requests") + "; " +
				strings.TrimSuffix(second, "; the old one is finishing its requests")
		},
	},
	{
		name:  "lb killed and restarted",
		fault: "`zerodown lb` SIGKILLed while staging-2 drains, started again at once (as systemd would)",
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			// Killed once the detach call has been answered, which is after
			// the balancer saved it: the run then waits on the drain. (Kill
			// it earlier and the detach may be lost with the process; the
			// run, never answered, sends it again.)
			proctest.Eventually(t, stepWithin, "the run to wait on staging-2's drain", func() bool {
				return d.seen("staging-2", "draining") || d.seen("staging-2", "drained")
			})
			down := f.lb.killAndRestart(t)
			// The detach was saved before it was answered: the restarted
			// balancer must not send staging-2 traffic while it changes.
			f.lb.ready(t)
			p, err := f.lb.pool()
			if err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				if tg.Address == f.agents[1].target() && tg.State != lb.StateDraining && tg.State != lb.StateUnused && !d.seen("staging-2", "attaching") {
					t.Errorf("staging-2 is %s in the restarted balancer, want detached", tg.State)
				}
			}
			return fmt.Sprintf("the balancer answered again %s after the kill; the run's admin calls were retried meanwhile, and staging-2 came back from the state file still detached", down.Round(10*time.Millisecond))
		},
		lossy: "a balancer killed outright refuses connections until it is back and loses what it had in flight (to restart or upgrade it, use `zerodown lb upgrade`: no request fails, see that row); " +
			"none of those POSTs may run twice",
		lossyGets: true,
		lossyHost: -1,
		// Both the client's and the verifier's requests of the time the
		// race-built balancer takes to start and check its targets once.
		maxLost: 3 * trafficRate,
	},
	{
		name:  "data latency",
		fault: fmt.Sprintf("data path: %s latency each way on every lb↔app link, the whole run", dataLatency),
		before: func(t *testing.T, f *fleet) func() {
			var removes []func()
			for _, a := range f.agents {
				removes = append(removes, addToxic(t, a.data, "latency", map[string]any{"latency": dataLatency.Milliseconds()}, bothWays...))
			}
			return func() {
				for _, r := range removes {
					r()
				}
			}
		},
	},
	{
		name:  "data reset",
		fault: fmt.Sprintf("data path: reset_peer on staging-3's lb↔app link for %s while staging-2 is being changed", resetFor),
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			d.await(t, "staging-1", "healthy", stepWithin)
			remove := addToxic(t, f.agents[2].data, "reset_peer", map[string]any{"timeout": 0}, bothWays...)
			hold(resetFor)
			remove()
			return ""
		},
		lossy: "a POST whose connection is reset after the balancer sent it may have run: the balancer must fail it (502), never send it again; " +
			"its GETs it may retry",
		lossyHost: 2,
		// POSTs reach staging-3 at half the POST rate (staging-2 is out)
		// until two failed health checks (half a second) or three failed
		// requests take it out: two seconds of its share is a generous
		// bound.
		maxLost: trafficRate / 2,
	},
	{
		name:         "agent killed mid-activation",
		fault:        "staging-2's agent SIGKILLed during its activation, restarted at once (as systemd would)",
		links:        links{directControl: true},
		holdStaging2: true,
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			a := f.agents[1]
			a.heldAtGate(t, "v2", stepWithin)
			a.proc.Signal(syscall.SIGKILL)
			a.proc.Wait(t, 10*time.Second)
			// The hook the dead agent started may still wait: let it end.
			a.gate(t, true)
			a.run(t)
			return ""
		},
	},
	{
		name:  "agent killed while idle",
		fault: "staging-3's agent SIGKILLed while staging-1 is being changed, restarted at once (as systemd would)",
		links: links{directControl: true},
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			a := f.agents[2]
			d.await(t, "staging-1", "detaching", stepWithin)
			a.proc.Signal(syscall.SIGKILL)
			a.proc.Wait(t, 10*time.Second)
			a.run(t)
			return ""
		},
	},
	{
		name:  "app killed on another host",
		fault: "staging-3's app SIGKILLed while staging-2 is being changed; its agent restarts it",
		links: links{directData: true},
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			a := f.agents[2]
			d.await(t, "staging-1", "healthy", stepWithin)
			s, err := a.status(2 * time.Second)
			if err != nil || s.PID == 0 {
				t.Fatalf("%s: no app pid: %+v %v", a.name, s, err)
			}
			if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			var back time.Duration
			proctest.Eventually(t, 20*time.Second, a.name+"'s app restarted by its agent", func() bool {
				n, err := a.status(2 * time.Second)
				back = time.Since(killed)
				return err == nil && n.PID != 0 && n.PID != s.PID && n.Healthy
			})
			return fmt.Sprintf("the agent had the app healthy again within %s", back.Round(100*time.Millisecond))
		},
		lossy:     "a POST running in the killed process is lost with it (the balancer answers 502 and must not send it again)",
		lossyHost: 2,
		// At most the POSTs in flight on one host: its share of the POST
		// rate times the POST's duration, with room for a slow machine.
		maxLost: 10,
	},
	{
		name:         "engine killed, then resume",
		fault:        "`zerodown deploy` SIGKILLed during staging-2's activation; then `zerodown resume RUN`",
		resume:       true,
		holdStaging2: true,
		during: func(t *testing.T, f *fleet, d *deployRun) string {
			a := f.agents[1]
			a.heldAtGate(t, "v2", stepWithin)
			d.kill()
			// The agent finishes an activation whose caller went away.
			a.gate(t, true)
			return ""
		},
	},
}

// hold keeps a fault in place for its duration. It is the fault's length,
// not a wait for something to happen.
func hold(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	<-timer.C
}

// TestFaults runs every row on a fleet of its own, in order (two fleets
// at once would starve each other on a small machine and blur the
// numbers), then prints the table, or writes it to docs/faults.md when
// ZERODOWN_WRITE_FAULTS=1.
func TestFaults(t *testing.T) {
	needBinaries(t)
	start := time.Now()
	var results []result
	for _, rw := range rows {
		t.Run(rw.name, func(t *testing.T) {
			res := result{fault: rw.fault, lossy: rw.lossy}
			defer func() {
				if t.Failed() && res.failures == nil {
					res.failures = []string{"did not finish: see the test's log"}
				}
				if t.Skipped() {
					return
				}
				results = append(results, res)
			}()
			runRow(t, rw, &res)
		})
	}
	table := faultsTable(results)
	t.Logf("%d rows in %s:\n%s", len(results), time.Since(start).Round(time.Second), table)
	if os.Getenv("ZERODOWN_WRITE_FAULTS") == "1" {
		if len(results) != len(rows) {
			t.Fatalf("ZERODOWN_WRITE_FAULTS=1 needs every row: %d of %d ran", len(results), len(rows))
		}
		if err := writeFaultsDoc("../../docs/faults.md", table, time.Since(start)); err != nil {
			t.Fatal(err)
		}
	}
}

// runRow deploys v1, starts the traffic, deploys v2 under the row's fault,
// and records and checks what came of it.
func runRow(t *testing.T, rw row, res *result) {
	f := startFleet(t, rw.links)
	f.firstDeploy()

	maxFailed := 0
	if rw.lossy != "" {
		maxFailed = rw.maxLost
	}
	cfg := f.config("zerodown.yaml", "min_healthy: 1, drain_timeout: 30s, health_timeout: 20s",
		fmt.Sprintf("url: %q, rate: 20, post: /verify, max_failed: %d", f.lb.url+"/", maxFailed), true)

	tr := startTraffic(f.lb.url, strings.ReplaceAll(rw.name, " ", "-"))
	t.Cleanup(tr.finish)
	proctest.Eventually(t, 10*time.Second, "the client's requests answered before the run", func() bool { return tr.ok.Load() > 10 })

	if rw.holdStaging2 {
		f.agents[1].gate(t, false)
	}
	if rw.before != nil {
		after := rw.before(t, f)
		defer after()
	}
	d := f.startDeploy("deploy v2", "deploy", "staging", "--version", "v2", "--artifact", f.artifact, "-c", cfg, "-o", "json")
	if rw.during != nil {
		res.what = rw.during(t, f, d)
	}
	code := d.wait(t, 3*time.Minute)
	last, lastCode := d, code
	res.exit = fmt.Sprint(code)
	if rw.resume {
		if code == -1 {
			res.exit = "SIGKILL"
		}
		if d.id() == "" {
			t.Fatalf("the killed deploy never said its run id:\n%s", d.output())
		}
		r := f.startDeploy("resume", "resume", d.id(), "-c", cfg, "-o", "json")
		lastCode = r.wait(t, 3*time.Minute)
		last = r
		res.exit += fmt.Sprintf(", resume %d", lastCode)
	}

	// The service must go on answering after the run, whatever the run did.
	okAfter := tr.ok.Load()
	proctest.Eventually(t, 10*time.Second, "the client's requests answered after the run", func() bool { return tr.ok.Load() > okAfter+20 })
	tr.finish()
	f.lb.idle(t, 30*time.Second)

	tl, err := tr.account(f.requestLog)
	if err != nil {
		t.Fatal(err)
	}
	res.tally = tl
	ver, fin := last.summary()
	res.verify = ver
	if fin != nil {
		res.status = fin.Status
		res.runErr = fin.Error
	}
	res.final, res.endProblems = f.endState("v2")

	// Every failed check is collected, so that the table says all of it.
	var details []string
	fail := func(detail, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		res.failures = append(res.failures, msg)
		if detail != "" {
			msg += "\n" + detail
		}
		details = append(details, msg)
	}
	if lastCode != 0 || fin == nil || fin.Status != "succeeded" {
		fail(last.output(), "the run ended with exit %d, %s; want 0, succeeded", lastCode, res.status)
	}
	if rw.resume && code != -1 {
		fail(d.output(), "the deploy that was to be killed ended by itself with exit %d", code)
	}
	for _, p := range res.endProblems {
		fail("", "end state: %s", p)
	}
	for _, p := range tl.problems {
		fail("", "client: %s", p)
	}
	switch {
	case tl.getsFailed > 0 && !rw.lossyGets:
		fail("", "%d of %d GETs failed, first: %v", tl.getsFailed, tl.gets, tl.getFailures)
	case tl.getsFailed > rw.maxLost:
		fail("", "%d GETs failed, more than the %d this fault can take: first %v", tl.getsFailed, rw.maxLost, tl.getFailures)
	}
	if len(tl.lost) > 0 {
		switch {
		case rw.lossy == "":
			fail("", "%d of %d POSTs failed, first: %+v", len(tl.lost), tl.posts, tl.lost[0])
		case len(tl.lost) > rw.maxLost:
			fail("", "%d POSTs failed, more than the %d in flight this fault can take: first %+v", len(tl.lost), rw.maxLost, tl.lost[0])
		}
		for _, lp := range tl.lost {
			if rw.lossyHost < 0 {
				continue
			}
			if host := f.agents[rw.lossyHost]; rw.lossy != "" && lp.ranOn != "" && lp.ranOn != host.appAddr() {
				fail("", "POST %s failed (%s) but ran on %s, not on %s where the fault was", lp.id, lp.err, lp.ranOn, host.name)
			}
		}
	}
	switch {
	case ver == nil:
		fail("", "the run reported no verifier summary")
	case ver.Requests == 0:
		fail("", "the verifier sent no request: %+v", ver)
	case rw.lossy == "" && (ver.Failed != 0 || ver.Dropped != 0):
		fail(ver.verifierErrors(), "the verifier saw %d failed and %d dropped requests", ver.Failed, ver.Dropped)
	}

	for _, msg := range details {
		t.Error(msg)
	}
}
