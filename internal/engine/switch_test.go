package engine_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
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
	"github.com/zerodown/zerodown/internal/pipeline"
)

// fakeSwitcher is a balancer's blue-green switch in memory.
type fakeSwitcher struct {
	mu    sync.Mutex
	live  string
	calls []string // "switch POOL", in order
	// fail makes SwitchLive(pool) fail; moved makes it fail after live
	// traffic moved (the preview did not).
	fail    map[string]error
	moved   map[string]bool
	liveErr error
}

var _ lb.Switcher = (*fakeSwitcher)(nil)

func (s *fakeSwitcher) Live(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.liveErr != nil {
		return "", s.liveErr
	}
	return s.live, nil
}

func (s *fakeSwitcher) SwitchLive(_ context.Context, pool string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "switch "+pool)
	if err := s.fail[pool]; err != nil {
		if s.moved[pool] {
			s.live = pool
		}
		return err
	}
	s.live = pool
	return nil
}

func (s *fakeSwitcher) state() (live string, calls []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live, append([]string(nil), s.calls...)
}

// bgFleet is environment "web" under blue-green: blue-1 in pool blue
// (live), green-1 in pool green, both on v1, each pool an in-memory
// balancer joined as zerodown joins them (lb.Pools).
type bgFleet struct {
	blue, green *enginetest.LB
	hosts       map[string]*enginetest.Host
	sw          *fakeSwitcher
	journal     *enginetest.Journal
	env         *config.Environment
	eng         *engine.Engine
}

const (
	blueAddr  = "127.0.0.1:8201"
	greenAddr = "127.0.0.1:8301"
)

// server answers every request with status.
func server(t *testing.T, status int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

func newBGFleet(t *testing.T, live string) *bgFleet {
	t.Helper()
	noLoad := 0
	f := &bgFleet{
		blue: enginetest.NewLB(blueAddr), green: enginetest.NewLB(greenAddr),
		hosts:   map[string]*enginetest.Host{"blue-1": enginetest.NewHost("v1"), "green-1": enginetest.NewHost("v1")},
		sw:      &fakeSwitcher{live: live},
		journal: enginetest.NewJournal(),
	}
	for _, l := range []*enginetest.LB{f.blue, f.green} {
		l.DrainDelay, l.HealthDelay, l.InFlight = 30*time.Millisecond, 30*time.Millisecond, 1
	}
	preview := server(t, http.StatusOK)
	f.env = &config.Environment{Name: "web",
		Hosts: []config.Host{{Name: "blue-1", Pool: "blue", Target: blueAddr}, {Name: "green-1", Pool: "green", Target: greenAddr}},
		Strategy: config.Strategy{BlueGreen: &config.BlueGreen{
			Pools: []string{"blue", "green"}, Preview: preview,
			Smoke:        []config.SmokeTask{{URL: preview, Status: http.StatusOK}},
			PreviewLoad:  config.PreviewLoad{Rate: &noLoad},
			DrainTimeout: config.Duration(2 * time.Second), HealthTimeout: config.Duration(2 * time.Second),
		}},
	}
	bal, err := lb.NewPools([]string{"blue", "green"}, map[string]lb.Balancer{"blue": f.blue, "green": f.green},
		map[string]string{blueAddr: "blue", greenAddr: "green"})
	if err != nil {
		t.Fatal(err)
	}
	f.eng = &engine.Engine{
		LB: bal, Journal: f.journal, MinHealthy: 1,
		Hosts: map[string]engine.Host{
			"blue-1":  {Name: "blue-1", Target: blueAddr, Deployer: f.hosts["blue-1"]},
			"green-1": {Name: "green-1", Target: greenAddr, Deployer: f.hosts["green-1"]},
		},
		Release: host.Release{Version: "v2"}, Rollback: config.RollbackAuto, HealthTimeout: 2 * time.Second,
		Switcher: f.sw,
	}
	return f
}

// blueGreen is the strategy's pipeline with live traffic on blue, then
// the stages after.
func (f *bgFleet) blueGreen(t *testing.T, after ...pipeline.Stage) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.BlueGreen(f.env, "blue", nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Stages = append(p.Stages, after...)
	f.eng.Switch = p.SwitchOf()
	return p
}

func (f *bgFleet) versions() map[string]string {
	return map[string]string{"blue-1": f.hosts["blue-1"].Version(), "green-1": f.hosts["green-1"].Version()}
}

// events are the messages of the run's events of type typ, by host.
func (f *bgFleet) events(typ string) []string {
	var out []string
	for _, e := range f.journal.Events { // the run is over: no writer left
		if e.Type == typ {
			out = append(out, e.Host+": "+e.Message)
		}
	}
	return out
}

func switchOnly(from, to string) *pipeline.Pipeline {
	return &pipeline.Pipeline{Name: "web-blue-green", Environment: "web", Strategy: "blue-green", Stages: []pipeline.Stage{
		{Name: "switch", Jobs: []pipeline.Job{{Name: "switch", Tasks: []pipeline.Task{
			{Kind: pipeline.KindSwitch, Switch: &config.SwitchTask{From: from, To: to}},
		}}}},
	}}
}

// smokeStage is a stage of one smoke check of url.
func smokeStage(name, url string) pipeline.Stage {
	return pipeline.Stage{Name: name, Jobs: []pipeline.Job{{Name: "check", Tasks: []pipeline.Task{
		{Kind: pipeline.KindSmoke, Smoke: &config.SmokeTask{URL: url, Status: http.StatusOK}},
	}}}}
}

func TestSwitchTask(t *testing.T) {
	half := errors.New("preview not switched")
	tests := []struct {
		name      string
		live      string
		noSwitch  bool // the engine has no Switcher
		failAfter bool // a stage after the switch fails
		liveErr   error
		fail      map[string]error
		moved     map[string]bool
		status    engine.Status // empty: failed or rolled back
		err       string        // in the run's error
		wantLive  string
		wantCalls []string
		switched  []string // EvSwitched events
		info      string   // in an EvInfo event
	}{
		{name: "switches live traffic", live: "blue", status: engine.StatusSucceeded,
			wantLive: "green", wantCalls: []string{"switch green"},
			switched: []string{": live traffic switched from pool blue to pool green in "},
			info:     "switching live traffic from pool blue to pool green"},
		{name: "already switched (a resumed run) passes without switching", live: "green", status: engine.StatusSucceeded,
			wantLive: "green", info: "live traffic already goes to pool green"},
		// A resumed run whose switch happened, and no host changed
		// (every idle host was on the version already), still switches
		// back when a later task fails.
		{name: "already switched, then a later task fails: switched back", live: "green", failAfter: true,
			status: engine.StatusRolledBack, err: "status 503, want 200",
			wantLive: "blue", wantCalls: []string{"switch blue"},
			switched: []string{": live traffic switched back from pool green to pool blue in "},
			info:     "live traffic already goes to pool green"},
		{name: "live traffic on neither pool fails the task", live: "red", status: engine.StatusFailed,
			err:      "switch blue → green: live traffic goes to pool red, not blue as planned: plan again",
			wantLive: "red"},
		{name: "live traffic unknown fails the task", live: "blue", liveErr: errors.New("socket closed"), status: engine.StatusFailed,
			err:      "switch blue → green: read where live traffic goes: socket closed",
			wantLive: "blue"},
		{name: "a balancer that cannot switch fails the task", live: "blue", noSwitch: true, status: engine.StatusFailed,
			err:      "switch blue → green: this environment's load balancer cannot switch pools",
			wantLive: "blue"},
		// The live route moved, the preview did not: the rollback
		// switches live traffic back.
		{name: "a switch failing half-way is switched back", live: "blue",
			fail: map[string]error{"green": half}, moved: map[string]bool{"green": true}, status: engine.StatusRolledBack,
			err: "switch blue → green: preview not switched", wantLive: "blue", wantCalls: []string{"switch green", "switch blue"},
			switched: []string{": live traffic switched back from pool green to pool blue in "}},
		// Nothing moved: there is nothing to switch back. (Whether that
		// run is "failed" or "rolled back" is not pinned here.)
		{name: "a switch failing before live traffic moved", live: "blue",
			fail: map[string]error{"green": half},
			err:  "switch blue → green: preview not switched", wantLive: "blue", wantCalls: []string{"switch green"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBGFleet(t, tt.live)
			f.sw.liveErr, f.sw.fail, f.sw.moved = tt.liveErr, tt.fail, tt.moved
			p := switchOnly("blue", "green")
			if tt.failAfter {
				p.Stages = append(p.Stages, smokeStage("after-switch", server(t, http.StatusServiceUnavailable)))
			}
			f.eng.Switch = p.SwitchOf()
			if tt.noSwitch {
				f.eng.Switcher = nil
			}
			res := f.eng.Run(context.Background(), p, nil)
			if res.Status != tt.status && (tt.status != "" || res.Status != engine.StatusFailed && res.Status != engine.StatusRolledBack) {
				t.Fatalf("status %s, err %v, stranded %v; want %s", res.Status, res.Err, res.Stranded, tt.status)
			}
			if tt.err == "" && res.Err != nil || tt.err != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.err)) {
				t.Fatalf("error %v, want %q", res.Err, tt.err)
			}
			wantTask := engine.TaskPassed
			if tt.err != "" && !tt.failAfter {
				wantTask = engine.TaskFailed
			}
			if got := f.journal.Finished["switch/switch/0"]; got != wantTask {
				t.Errorf("switch task %s, want %s", got, wantTask)
			}
			live, calls := f.sw.state()
			if live != tt.wantLive || !reflect.DeepEqual(calls, tt.wantCalls) {
				t.Errorf("live %s after switches %q; want %s after %q", live, calls, tt.wantLive, tt.wantCalls)
			}
			switched := f.events(engine.EvSwitched)
			if len(switched) != len(tt.switched) {
				t.Fatalf("switched events %q, want %q", switched, tt.switched)
			}
			for i := range switched {
				if !strings.HasPrefix(switched[i], tt.switched[i]) {
					t.Errorf("switched event %q, want it to start %q", switched[i], tt.switched[i])
				}
			}
			if tt.info != "" && !slices.Contains(f.events(engine.EvInfo), ": "+tt.info) {
				t.Errorf("no info %q in %q", tt.info, f.events(engine.EvInfo))
			}
			if len(res.Stranded) != 0 || len(res.Changed) != 0 || len(f.blue.Calls)+len(f.green.Calls) != 0 {
				t.Errorf("stranded %v, changed %v, balancer calls %v %v", res.Stranded, res.Changed, f.blue.Calls, f.green.Calls)
			}
		})
	}
}

// A blue-green run that fails: before the switch the idle pool's hosts
// are rolled back as in a rolling deploy; after it, live traffic is
// switched back and the hosts are left on the new version (they serve only
// the preview); a switch back that fails leaves the pool stranded.
func TestBlueGreenRunFails(t *testing.T) {
	tests := []struct {
		name         string
		beforeSwitch bool // the preview's smoke check fails, else a check after the switch
		failBack     error
		status       engine.Status
		wantLive     string
		wantCalls    []string
		versions     map[string]string
		rolledBack   []string // EvRolledBack events
		stranded     map[string]string
	}{
		{name: "a failure after the switch switches back", status: engine.StatusRolledBack,
			wantLive: "blue", wantCalls: []string{"switch green", "switch blue"},
			versions:   map[string]string{"blue-1": "v1", "green-1": "v2"},
			rolledBack: []string{": live traffic is back on pool blue; pool green keeps v2 for the preview until the next deploy"}},
		{name: "a failure before the switch rolls the idle hosts back", beforeSwitch: true, status: engine.StatusRolledBack,
			wantLive: "blue", versions: map[string]string{"blue-1": "v1", "green-1": "v1"},
			rolledBack: []string{"green-1: rolled back and healthy"}},
		{name: "a switch back that fails strands the pool", failBack: errors.New("admin API down"), status: engine.StatusNeedsAttention,
			wantLive: "green", wantCalls: []string{"switch green", "switch blue"},
			versions: map[string]string{"blue-1": "v1", "green-1": "v2"},
			stranded: map[string]string{"pool green": "switch live traffic back from pool green to pool blue: admin API down; live traffic still goes to pool green"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBGFleet(t, "blue")
			if tt.failBack != nil {
				f.sw.fail = map[string]error{"blue": tt.failBack}
			}
			bad := server(t, http.StatusServiceUnavailable)
			var p *pipeline.Pipeline
			if tt.beforeSwitch {
				f.env.Strategy.BlueGreen.Smoke[0].URL = bad
				p = f.blueGreen(t)
			} else {
				p = f.blueGreen(t, smokeStage("after-switch", bad))
			}
			res := f.eng.Run(context.Background(), p, nil)
			if res.Status != tt.status {
				t.Fatalf("status %s, err %v, stranded %v; want %s", res.Status, res.Err, res.Stranded, tt.status)
			}
			if res.Err == nil || !strings.Contains(res.Err.Error(), "status 503, want 200") {
				t.Errorf("error %v", res.Err)
			}
			if !reflect.DeepEqual(res.Changed, []string{"green-1"}) {
				t.Errorf("changed %v", res.Changed)
			}
			live, calls := f.sw.state()
			if live != tt.wantLive || !reflect.DeepEqual(calls, tt.wantCalls) {
				t.Errorf("live %s after switches %q; want %s after %q", live, calls, tt.wantLive, tt.wantCalls)
			}
			if got := f.versions(); !reflect.DeepEqual(got, tt.versions) {
				t.Errorf("versions %v, want %v", got, tt.versions)
			}
			if got := f.events(engine.EvRolledBack); !reflect.DeepEqual(got, tt.rolledBack) {
				t.Errorf("rolled-back events %q, want %q", got, tt.rolledBack)
			}
			if len(res.Stranded) != 0 || len(tt.stranded) != 0 {
				if !reflect.DeepEqual(res.Stranded, tt.stranded) {
					t.Errorf("stranded %q, want %q", res.Stranded, tt.stranded)
				}
			}
			// Blue, live all along or again, was never touched; green is
			// healthy in its pool either way.
			if len(f.blue.Calls) != 0 {
				t.Errorf("blue's balancer was changed: %v", f.blue.Calls)
			}
			if st := f.green.State(greenAddr); st != lb.StateHealthy {
				t.Errorf("green-1 is %s", st)
			}
			// Only a rollback before the switch detaches green-1 again.
			wantGreen := []string{"detach " + greenAddr, "attach " + greenAddr}
			if tt.beforeSwitch {
				wantGreen = append(wantGreen, wantGreen...)
			}
			if !reflect.DeepEqual(f.green.Calls, wantGreen) {
				t.Errorf("green's balancer calls %v, want %v", f.green.Calls, wantGreen)
			}
		})
	}
}

// RollBack of a blue-green run, as `zerodown rollback RUN` calls it on a
// new engine: it switches back when live traffic went to the run's pool,
// and otherwise rolls the hosts back as for any run.
func TestRollBackBlueGreen(t *testing.T) {
	tests := []struct {
		name      string
		live      string
		liveErr   error
		failBack  error
		wantLive  string
		wantCalls []string
		green     string            // green-1's version after
		stranded  map[string]string // key → what its reason holds
	}{
		{name: "live on the new pool: switched back, hosts left", live: "green",
			wantLive: "blue", wantCalls: []string{"switch blue"}, green: "v2"},
		{name: "live on the old pool: hosts rolled back", live: "blue",
			wantLive: "blue", green: "v1"},
		{name: "the switch back fails", live: "green", failBack: errors.New("no route"),
			wantLive: "green", wantCalls: []string{"switch blue"}, green: "v2",
			stranded: map[string]string{"pool green": "switch live traffic back from pool green to pool blue: no route; live traffic still goes to pool green"}},
		{name: "live traffic cannot be read", live: "green", liveErr: errors.New("timeout"),
			wantLive: "green", green: "v2",
			stranded: map[string]string{"pool green": "read where live traffic goes: timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBGFleet(t, tt.live)
			f.sw.liveErr = tt.liveErr
			if tt.failBack != nil {
				f.sw.fail = map[string]error{"blue": tt.failBack}
			}
			f.eng.Switch = &config.SwitchTask{From: "blue", To: "green"}
			// The run put green-1 on v2.
			if err := f.hosts["green-1"].Activate(context.Background(), "v2"); err != nil {
				t.Fatal(err)
			}
			stranded := f.eng.RollBack(context.Background(), []string{"green-1"})
			if len(stranded) != len(tt.stranded) {
				t.Errorf("stranded %q, want %q", stranded, tt.stranded)
			}
			for k, want := range tt.stranded {
				if !strings.Contains(stranded[k], want) {
					t.Errorf("stranded[%q] = %q, want it to hold %q", k, stranded[k], want)
				}
			}
			live, calls := f.sw.state()
			if live != tt.wantLive || !reflect.DeepEqual(calls, tt.wantCalls) {
				t.Errorf("live %s after switches %q; want %s after %q", live, calls, tt.wantLive, tt.wantCalls)
			}
			if v := f.hosts["green-1"].Version(); v != tt.green {
				t.Errorf("green-1 runs %s, want %s", v, tt.green)
			}
			if v := f.hosts["blue-1"].Version(); v != "v1" || len(f.blue.Calls) != 0 {
				t.Errorf("blue-1 runs %s, blue's balancer calls %v", v, f.blue.Calls)
			}
			rolledHost := f.journal.HasEvent("green-1", engine.EvRolledBack)
			if wantHost := tt.green == "v1"; rolledHost != wantHost {
				t.Errorf("green-1 rolled back: %v, want %v (events %v)", rolledHost, wantHost, f.journal.EventTypes())
			}
			if st := f.green.State(greenAddr); st != lb.StateHealthy {
				t.Errorf("green-1 is %s", st)
			}
		})
	}
}
