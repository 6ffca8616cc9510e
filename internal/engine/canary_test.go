package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/engine/enginetest"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/proctest"
)

// callLog is the order of what the run did to the balancer and the hosts.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(format string, args ...any) {
	l.mu.Lock()
	l.calls = append(l.calls, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *callLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// weighingLB is the in-memory balancer with weights (lb.Weighter), every
// change logged in order.
type weighingLB struct {
	*enginetest.LB
	log *callLog

	mu      sync.Mutex
	weights map[string]int
}

var _ lb.Weighter = (*weighingLB)(nil)

func (w *weighingLB) SetWeight(_ context.Context, addr string, weight int) error {
	w.mu.Lock()
	w.weights[addr] = weight
	w.mu.Unlock()
	w.log.add("weight %s %d", addr, weight)
	return nil
}

func (w *weighingLB) Attach(ctx context.Context, addr string) error {
	w.log.add("attach %s", addr)
	return w.LB.Attach(ctx, addr)
}

func (w *weighingLB) Detach(ctx context.Context, addr string) error {
	w.log.add("detach %s", addr)
	return w.LB.Detach(ctx, addr)
}

func (w *weighingLB) weight(addr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.weights[addr]
}

// countingLB also counts answers per target (lb.TargetStatser): every
// reading adds perRead to what each target has answered.
type countingLB struct {
	*weighingLB
	perRead map[string]lb.TargetStat

	mu     sync.Mutex
	counts map[string]lb.TargetStat
	reads  int
}

var _ lb.TargetStatser = (*countingLB)(nil)

func (c *countingLB) TargetStats(context.Context) (map[string]lb.TargetStat, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	out := map[string]lb.TargetStat{}
	for addr, add := range c.perRead {
		n := c.counts[addr]
		n.Requests += add.Requests
		n.Errors += add.Errors
		c.counts[addr] = n
		out[addr] = n
	}
	return out, nil
}

// loggedHost is an in-memory host whose rollbacks are logged.
type loggedHost struct {
	*enginetest.Host
	name string
	log  *callLog
}

func (h *loggedHost) Rollback(ctx context.Context) error {
	h.log.add("rollback %s", h.name)
	return h.Host.Rollback(ctx)
}

func (h *loggedHost) Activate(ctx context.Context, version string) error {
	h.log.add("activate %s %s", h.name, version)
	return h.Host.Activate(ctx, version)
}

// canaryFleet is staging-1 (the canary) and staging-2 to 4 on v1 behind
// an in-memory balancer with weights, deploying v2 by canary.
type canaryFleet struct {
	log     *callLog
	wlb     *weighingLB
	clb     *countingLB // nil when the balancer does not count
	hosts   map[string]*enginetest.Host
	journal *enginetest.Journal
	eng     *engine.Engine
	p       *pipeline.Pipeline
}

const canaryAddr = "127.0.0.1:8101"

func newCanaryFleet(t *testing.T, steps []config.CanaryStep, counting bool, perRead map[string]lb.TargetStat) *canaryFleet {
	t.Helper()
	maxRate, maxP99 := 1.0, 50.0
	env := &config.Environment{Name: "staging", Strategy: config.Strategy{Canary: &config.Canary{
		Hosts: config.Quantity{N: 1}, Steps: steps, Weight: 1, Batch: config.BatchSpec{{N: 1}},
		Analysis:     config.Analysis{MaxErrorRate: &maxRate, MaxP99Increase: &maxP99, MinRequests: 20},
		DrainTimeout: config.Duration(2 * time.Second), HealthTimeout: config.Duration(2 * time.Second),
	}}}
	f := &canaryFleet{log: &callLog{}, hosts: map[string]*enginetest.Host{}, journal: enginetest.NewJournal()}
	var addrs []string
	hosts := map[string]engine.Host{}
	for i := 1; i <= 4; i++ {
		name, addr := fmt.Sprintf("staging-%d", i), fmt.Sprintf("127.0.0.1:81%02d", i)
		addrs = append(addrs, addr)
		env.Hosts = append(env.Hosts, config.Host{Name: name, Target: addr})
		f.hosts[name] = enginetest.NewHost("v1")
		hosts[name] = engine.Host{Name: name, Target: addr, Deployer: &loggedHost{Host: f.hosts[name], name: name, log: f.log}}
	}
	mem := enginetest.NewLB(addrs...)
	mem.DrainDelay, mem.HealthDelay = 20*time.Millisecond, 20*time.Millisecond
	f.wlb = &weighingLB{LB: mem, log: f.log, weights: map[string]int{}}
	var bal lb.Balancer = f.wlb
	if counting {
		f.clb = &countingLB{weighingLB: f.wlb, perRead: perRead, counts: map[string]lb.TargetStat{}}
		bal = f.clb
	}
	var err error
	if f.p, err = pipeline.Canary(env, nil); err != nil {
		t.Fatal(err)
	}
	w := f.p.WeightsOf()
	f.eng = &engine.Engine{
		LB: bal, Hosts: hosts, Journal: f.journal, MinHealthy: 1,
		Release:       host.Release{Version: "v2"},
		Rollback:      config.RollbackAuto,
		HealthTimeout: 2 * time.Second,
		Canary:        &engine.Canary{Hosts: w.Canary, Base: w.Base},
	}
	return f
}

// run runs the pipeline within a deadline far shorter than its pauses.
func (f *canaryFleet) run(t *testing.T) engine.Result {
	t.Helper()
	done := make(chan engine.Result, 1)
	go func() { done <- f.eng.Run(context.Background(), f.p, nil) }()
	select {
	case res := <-done:
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("the run did not end within 20s")
		return engine.Result{}
	}
}

func (f *canaryFleet) versions() map[string]string {
	out := map[string]string{}
	for name, h := range f.hosts {
		out[name] = h.Version()
	}
	return out
}

// events are the messages of the journal's events of type typ, once the
// run has ended.
func (f *canaryFleet) events(typ string) []string {
	var out []string
	for _, e := range f.journal.Events {
		if e.Type == typ {
			out = append(out, e.Message)
		}
	}
	return out
}

// everyWeight checks that every target's weight is w.
func (f *canaryFleet) everyWeight(t *testing.T, w int) {
	t.Helper()
	for i := 1; i <= 4; i++ {
		addr := fmt.Sprintf("127.0.0.1:81%02d", i)
		if got := f.wlb.weight(addr); got != w {
			t.Errorf("%s has weight %d, want %d", addr, got, w)
		}
	}
}

// A canary worse than its baseline fails its analysis at once, long
// before its pause is over; the run puts every weight back, takes the
// canary out of the balancer and only then rolls it back.
func TestCanaryAnalysisFails(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	steps := []config.CanaryStep{{Weight: 10, Pause: config.Duration(time.Minute)}, {Weight: 50, Pause: config.Duration(time.Minute)}, {Weight: 100}}
	bad := map[string]lb.TargetStat{
		canaryAddr:       {Requests: 40, Errors: 10},
		"127.0.0.1:8102": {Requests: 40}, "127.0.0.1:8103": {Requests: 40}, "127.0.0.1:8104": {Requests: 40, Errors: 1},
	}
	tests := []struct {
		name     string
		counting bool
		perRead  map[string]lb.TargetStat
		versions map[string]loadgen.VersionStat
		want     string
	}{
		{
			name: "the balancer's per-target errors", counting: true, perRead: bad,
			want: "load balancer: the canary's error rate is 25.0% (10 of 40), the baseline's 0.8% (1 of 120): more than 1 points above",
		},
		{
			// A thousand answers on each side: judged before the step's end.
			name: "the verifier's p99, on a balancer that does not count",
			versions: map[string]loadgen.VersionStat{
				"v2": {Answers: 1000, P99: 80 * ms},
				"v1": {Answers: 5000, Errors: 1, P99: 5 * ms},
			},
			want: "load verifier: the canary's p99 is 80ms, the baseline's 5ms: more than 50% above",
		},
		{
			name: "the verifier's errors, the balancer's counts fine", counting: true,
			perRead: map[string]lb.TargetStat{canaryAddr: {Requests: 40}, "127.0.0.1:8102": {Requests: 40}},
			versions: map[string]loadgen.VersionStat{
				"v2": {Answers: 50, Errors: 5, P99: 5 * ms},
				"v1": {Answers: 500, P99: 5 * ms},
			},
			want: "load verifier: the canary's error rate is 10.0% (5 of 50)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCanaryFleet(t, steps, tt.counting, tt.perRead)
			if tt.versions != nil {
				f.eng.VersionWindow = func() func() map[string]loadgen.VersionStat {
					return func() map[string]loadgen.VersionStat { return tt.versions }
				}
			}
			began := time.Now()
			res := f.run(t)
			if res.Status != engine.StatusRolledBack || !errors.Is(res.Err, engine.ErrCanaryFailed) {
				t.Fatalf("status %s, err %v, stranded %v; want rolled back after a failed canary", res.Status, res.Err, res.Stranded)
			}
			if !strings.Contains(res.Err.Error(), tt.want) || !strings.HasPrefix(res.Err.Error(), "analyze for 1m0s: the canary failed its analysis ") {
				t.Errorf("error %q, want it to contain %q", res.Err, tt.want)
			}
			if took := time.Since(began); took > 10*time.Second {
				t.Errorf("the run took %s: the analysis did not fail at once", took)
			}
			if !slices.Equal(res.Changed, []string{"staging-1"}) {
				t.Errorf("changed %v, want the canary only", res.Changed)
			}
			if got := f.versions(); got["staging-1"] != "v1" || got["staging-2"] != "v1" || got["staging-3"] != "v1" || got["staging-4"] != "v1" {
				t.Errorf("versions after the rollback %v, want v1 everywhere", got)
			}
			if st := f.wlb.State(canaryAddr); st != lb.StateHealthy {
				t.Errorf("the canary is %s after its rollback, want healthy", st)
			}
			f.everyWeight(t, 1)
			if got := f.journal.Finished["step-1-10%/canary/1"]; got != engine.TaskFailed {
				t.Errorf("the first analysis ended %q, want failed", got)
			}
			if _, ran := f.journal.Finished["step-2-50%/canary/0"]; ran {
				t.Error("the run went on to the second step")
			}

			// The order: the step's weights (85 on the canary, 255 on the
			// others: 10%), then every weight back to 1, then the canary
			// detached, rolled back and attached again.
			calls := f.log.list()
			lastStep := -1
			for i, c := range calls {
				if c == "weight "+canaryAddr+" 85" || strings.HasPrefix(c, "weight ") && strings.HasSuffix(c, " 255") {
					lastStep = i
				}
			}
			if lastStep < 0 || len(calls)-lastStep-1 < 4 {
				t.Fatalf("the canary never got its 10%% (weight 85 against 255): %q", calls)
			}
			after := calls[lastStep+1:]
			var back []string
			for i := 1; i <= 4; i++ {
				back = append(back, fmt.Sprintf("weight 127.0.0.1:81%02d 1", i))
			}
			first := slices.Sorted(slices.Values(after[:4])) // the hosts' order is a map's
			if !slices.Equal(first, back) || !isSubsequence([]string{"detach " + canaryAddr, "rollback staging-1", "attach " + canaryAddr}, after[4:]) {
				t.Errorf("after the failure the run did\n  %s\nwant every weight back to 1, then the canary detached, rolled back and attached",
					strings.Join(after, "\n  "))
			}
			if aborted := f.events(engine.EvCanary); len(aborted) == 0 || !strings.HasPrefix(aborted[len(aborted)-1], "canary aborted: out of the load balancer") {
				t.Errorf("canary events %q, want the abort last", aborted)
			}
		})
	}
}

// isSubsequence reports whether want occurs in got in order, not
// necessarily side by side.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// A canary held back by nothing passes its analysis over its whole pause;
// one with fewer answers than min_requests is not judged at all.
func TestCanaryAnalysisPasses(t *testing.T) {
	t.Parallel()
	steps := []config.CanaryStep{{Weight: 25, Pause: config.Duration(600 * time.Millisecond)}, {Weight: 100}}
	tests := []struct {
		name    string
		perRead map[string]lb.TargetStat
	}{
		{"as good as the baseline", map[string]lb.TargetStat{
			canaryAddr: {Requests: 40, Errors: 0}, "127.0.0.1:8102": {Requests: 40, Errors: 1},
		}},
		{"too few canary answers to judge", map[string]lb.TargetStat{
			canaryAddr: {Requests: 5, Errors: 5}, "127.0.0.1:8102": {Requests: 40},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCanaryFleet(t, steps, true, tt.perRead)
			res := f.run(t)
			if res.Status != engine.StatusSucceeded || res.Err != nil {
				t.Fatalf("status %s, err %v", res.Status, res.Err)
			}
			for name, v := range f.versions() {
				if v != "v2" {
					t.Errorf("%s runs %s, want v2", name, v)
				}
			}
			f.everyWeight(t, 1)
			passed := false
			for _, m := range f.events(engine.EvCanary) {
				passed = passed || strings.HasPrefix(m, "canary analysis passed over 600ms")
			}
			if !passed {
				t.Errorf("no passed analysis in %q", f.events(engine.EvCanary))
			}
			if f.clb.reads < 2 {
				t.Errorf("the balancer's counts were read %d times, want before and during the analysis", f.clb.reads)
			}
		})
	}
}

// zerodown promote RUN (the journal's approval of PromoteKey) ends the
// analysis under way at once, and the later ones too: the run succeeds
// long before its pauses are over.
func TestCanaryPromote(t *testing.T) {
	t.Parallel()
	steps := []config.CanaryStep{{Weight: 10, Pause: config.Duration(time.Minute)}, {Weight: 50, Pause: config.Duration(time.Minute)}, {Weight: 100}}
	f := newCanaryFleet(t, steps, true, map[string]lb.TargetStat{
		canaryAddr: {Requests: 40}, "127.0.0.1:8102": {Requests: 40}, "127.0.0.1:8103": {Requests: 40}, "127.0.0.1:8104": {Requests: 40},
	})
	var (
		mu   sync.Mutex
		seen []string // "type message" of every event so far
	)
	f.eng.OnEvent = func(e engine.Event) {
		mu.Lock()
		seen = append(seen, e.Type+" "+e.Message)
		mu.Unlock()
	}
	saw := func(prefix string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(seen, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
	done := make(chan engine.Result, 1)
	go func() { done <- f.eng.Run(context.Background(), f.p, nil) }()
	proctest.Eventually(t, 10*time.Second, "the first analysis to begin", func() bool { return saw(engine.EvTask + " start analyze for 1m0s") })
	// The analysis goes on by itself: several readings later it has not
	// ended, and the next step has not begun.
	proctest.Eventually(t, 10*time.Second, "the balancer's counts to be read during the analysis", func() bool {
		f.clb.mu.Lock()
		defer f.clb.mu.Unlock()
		return f.clb.reads >= 3
	})
	if saw(engine.EvCanary+" canary analysis passed") || saw(engine.EvTask+" start weights: canary 50%") {
		t.Fatal("the first analysis ended before the promotion")
	}
	promoted := time.Now()
	f.journal.Approve(engine.PromoteKey)
	var res engine.Result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the promoted run did not end within 20s")
	}
	if res.Status != engine.StatusSucceeded || res.Err != nil {
		t.Fatalf("status %s, err %v", res.Status, res.Err)
	}
	if took := time.Since(promoted); took > 10*time.Second {
		t.Errorf("the run ended %s after the promotion", took)
	}
	for name, v := range f.versions() {
		if v != "v2" {
			t.Errorf("%s runs %s, want v2", name, v)
		}
	}
	f.everyWeight(t, 1)
	for _, k := range []string{"step-1-10%/canary/1", "step-2-50%/canary/1"} {
		if got := f.journal.Finished[k]; got != engine.TaskPassed {
			t.Errorf("analysis %s ended %q, want passed", k, got)
		}
	}
	var promotions int
	for _, m := range f.events(engine.EvInfo) {
		if m == "promoted by test: the rest of the canary's analysis is skipped" {
			promotions++
		}
	}
	if promotions != 2 {
		t.Errorf("%d promotion events, want one per analysis (2)", promotions)
	}
}

// routableWatch records, after every detach, whether any target is still
// healthy, attached and of weight > 0 (what zerodown lb/HAProxy route to).
type routableWatch struct {
	*weighingLB
	mu      sync.Mutex
	outages []string
}

func (r *routableWatch) Detach(ctx context.Context, addr string) error {
	err := r.weighingLB.Detach(ctx, addr)
	ts, _ := r.weighingLB.Targets(ctx)
	n := 0
	for _, t := range ts {
		if t.State == lb.StateHealthy && r.weight(t.Address) > 0 {
			n++
		}
	}
	if n == 0 {
		r.mu.Lock()
		r.outages = append(r.outages, "after detach "+addr)
		r.mu.Unlock()
	}
	return err
}

// A run that fails after a canary's last step (the others at weight 0)
// gives every host its weight back before anything leaves the balancer:
// at no moment is there no routable target.
func TestCanaryRollbackAfterLastStepKeepsATarget(t *testing.T) {
	steps := []config.CanaryStep{{Weight: 10, Pause: config.Duration(200 * time.Millisecond)}, {Weight: 100}}
	f := newCanaryFleet(t, steps, true, map[string]lb.TargetStat{canaryAddr: {Requests: 1}})
	for i := 1; i <= 4; i++ {
		f.wlb.weights[fmt.Sprintf("127.0.0.1:81%02d", i)] = 1
	}
	w := &routableWatch{weighingLB: f.wlb}
	f.eng.LB = &struct {
		*routableWatch
		lb.TargetStatser
	}{w, f.clb}
	f.hosts["staging-4"].Bad["v2"] = true // the last rest host fails
	res := f.run(t)
	if res.Status != engine.StatusRolledBack {
		t.Fatalf("status %s (%v), want rolled back", res.Status, res.Err)
	}
	if len(w.outages) > 0 {
		t.Errorf("no routable target (every healthy one at weight 0 or detached) %v; calls %q", w.outages, f.log.list())
	}
}

// sharingLB weighs the canary as one group (lb.Sharer), as an ALB's
// weighted target groups do; it is a Weighter too, and must not be
// weighed target by target.
type sharingLB struct {
	*weighingLB
}

var _ lb.Sharer = sharingLB{}

func (s sharingLB) SetShare(_ context.Context, canary []string, share int) error {
	s.log.add("share %s %d", strings.Join(canary, ","), share)
	return nil
}

// Where the balancer weighs groups, the steps set the canary's share
// through it; the analysis runs on the verifier's answers alone, and a
// failing canary gets the even share back before it leaves the balancer.
func TestCanaryBySharer(t *testing.T) {
	t.Parallel()
	steps := []config.CanaryStep{{Weight: 10, Pause: config.Duration(400 * time.Millisecond)}, {Weight: 100}}
	tests := []struct {
		name      string
		canary    loadgen.VersionStat
		want      []string
		succeeded bool
	}{
		{"good", loadgen.VersionStat{Answers: 50}, []string{
			"share " + canaryAddr + " 10", "detach " + canaryAddr, "attach " + canaryAddr, "share " + canaryAddr + " 10",
			"share " + canaryAddr + " 100", "detach 127.0.0.1:8102", "share " + canaryAddr + " 0",
		}, true},
		{"bad", loadgen.VersionStat{Answers: 50, Errors: 10}, []string{
			"share " + canaryAddr + " 10", "share " + canaryAddr + " 0", "detach " + canaryAddr, "rollback staging-1", "share " + canaryAddr + " 0",
		}, false},
		// Too few answers to judge a p99 before the step's end; at its end
		// the slow canary fails.
		{"slow", loadgen.VersionStat{Answers: 150, P99: 80 * time.Millisecond}, []string{
			"share " + canaryAddr + " 10", "share " + canaryAddr + " 0", "detach " + canaryAddr, "rollback staging-1", "share " + canaryAddr + " 0",
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCanaryFleet(t, steps, false, nil)
			f.eng.LB = sharingLB{f.wlb}
			f.eng.VersionWindow = func() func() map[string]loadgen.VersionStat {
				return func() map[string]loadgen.VersionStat {
					return map[string]loadgen.VersionStat{"v2": tt.canary, "v1": {Answers: 200, P99: time.Millisecond}}
				}
			}
			res := f.run(t)
			if got := res.Status == engine.StatusSucceeded; got != tt.succeeded {
				t.Fatalf("status %s, err %v", res.Status, res.Err)
			}
			calls := f.log.list()
			if !isSubsequence(tt.want, calls) {
				t.Errorf("calls %q, want %q in this order", calls, tt.want)
			}
			for _, c := range calls {
				if strings.HasPrefix(c, "weight ") {
					t.Errorf("a target was weighed (%s) though the balancer weighs groups", c)
				}
			}
			info := strings.Join(f.events(engine.EvInfo), "\n")
			if !strings.Contains(info, "compared on the load verifier's figures only") {
				t.Errorf("no word that the analysis has only the verifier's figures in %q", info)
			}
		})
	}
}
