package pipeline

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/config"
)

// swapDoc is a zerodown.yaml with environment "web" of zerodown lb: hosts
// web-1 to web-3, each with a second slot (swap_target); strategy is what
// goes under strategy: (nothing leaves the default).
func swapDoc(hosts int, strategy string) string {
	var b strings.Builder
	b.WriteString("app: {run: [./hello]}\nenvironments:\n  web:\n    lb: {admin: 'http://127.0.0.1:9100', pool: web}\n    hosts:\n")
	for i := 1; i <= hosts; i++ {
		fmt.Fprintf(&b, "      - {name: web-%d, agent: 'http://127.0.0.1:71%02d', target: '127.0.0.1:81%02d', swap_target: '127.0.0.1:82%02d'}\n", i, i, i, i)
	}
	if strategy != "" {
		b.WriteString("    strategy:\n" + strategy)
	}
	return b.String()
}

const swapSettings = "      swap: {drain_timeout: 20s, health_timeout: 40s}\n"

func swapEnv(t *testing.T, hosts int, strategy string) *config.Environment {
	t.Helper()
	cfg, err := config.ParseDeploy("zerodown.yaml", []byte(swapDoc(hosts, strategy)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Environments["web"]
}

// swapJob is the outline of one host's swap stage.
func swapJob(host, drain, health string) string {
	return fmt.Sprintf("swap-%[1]s/%[1]s: deploy %[1]s (idle slot) | attach %[1]s (new slot) | wait-healthy %[1]s (new slot) (%[3]s) | "+
		"detach %[1]s (old slot) | wait-drained %[1]s (old slot) (%[2]s) | retire %[1]s", host, drain, health)
}

func TestSwapStages(t *testing.T) {
	tests := []struct {
		name     string
		hosts    int
		strategy string
		skip     []string
		want     []string
	}{
		{
			name: "every host uploaded first, then swapped one at a time", hosts: 3, strategy: swapSettings,
			want: []string{
				"upload/web-1: upload web-1", "upload/web-2: upload web-2", "upload/web-3: upload web-3",
				swapJob("web-1", "20s", "40s"), swapJob("web-2", "20s", "40s"), swapJob("web-3", "20s", "40s"),
			},
		},
		{
			name: "defaults: 1m to drain and to be healthy", hosts: 2, strategy: "      swap: {}\n",
			want: []string{
				"upload/web-1: upload web-1", "upload/web-2: upload web-2",
				swapJob("web-1", "1m0s", "1m0s"), swapJob("web-2", "1m0s", "1m0s"),
			},
		},
		{
			name: "one host with a second slot is swapped by default", hosts: 1,
			want: []string{"upload/web-1: upload web-1", swapJob("web-1", "1m0s", "1m0s")},
		},
		{
			name: "a host already on the version is left out", hosts: 3, strategy: swapSettings, skip: []string{"web-2"},
			want: []string{
				"upload/web-1: upload web-1", "upload/web-3: upload web-3",
				swapJob("web-1", "20s", "40s"), swapJob("web-3", "20s", "40s"),
			},
		},
		{
			name: "every host on the version: nothing to do", hosts: 2, strategy: swapSettings, skip: []string{"web-1", "web-2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := swapEnv(t, tt.hosts, tt.strategy)
			skip := map[string]bool{}
			for _, h := range tt.skip {
				skip[h] = true
			}
			p, err := Swap(env, skip)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != "web-swap" || p.Environment != "web" || p.Strategy != "swap" {
				t.Errorf("pipeline %q of %q, strategy %q", p.Name, p.Environment, p.Strategy)
			}
			if got := outline(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stages:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if tt.want == nil && len(p.Stages) != 0 {
				t.Errorf("an empty pipeline has stages %+v", p.Stages)
			}
		})
	}
}

// The slots of a host's swap, task by task: the engine acts on the
// targets by them.
func TestSwapSlots(t *testing.T) {
	p, err := Swap(swapEnv(t, 2, swapSettings), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind Kind
		slot string
	}{
		{KindDeploy, SlotIdle},
		{KindAttach, SlotNew},
		{KindWaitHealthy, SlotNew},
		{KindDetach, SlotOld},
		{KindWaitDrained, SlotOld},
		{KindRetire, ""},
	}
	for _, st := range p.Stages[1:] {
		if len(st.Jobs) != 1 {
			t.Fatalf("stage %s has %d jobs, want one host at a time", st.Name, len(st.Jobs))
		}
		j := st.Jobs[0]
		if len(j.Tasks) != len(want) {
			t.Fatalf("stage %s: %d tasks, want %d", st.Name, len(j.Tasks), len(want))
		}
		for i, w := range want {
			if task := j.Tasks[i]; task.Kind != w.kind || task.Slot != w.slot || task.Host != j.Name {
				t.Errorf("stage %s task %d: %s %s slot %q, want %s %s slot %q", st.Name, i, task.Kind, task.Host, task.Slot, w.kind, j.Name, w.slot)
			}
		}
	}
	if got := p.Hosts(); !reflect.DeepEqual(got, []string{"web-1", "web-2"}) {
		t.Errorf("hosts %v", got)
	}
	if p.WeightsOf() != nil || p.SwitchOf() != nil {
		t.Errorf("a swap has weights %v or a switch %v", p.WeightsOf(), p.SwitchOf())
	}
}

func TestSwapErrors(t *testing.T) {
	env := swapEnv(t, 2, swapSettings)
	env.Strategy.Swap = nil
	p, err := Swap(env, nil)
	if err == nil || err.Error() != "environment web: no swap strategy" || p != nil {
		t.Fatalf("pipeline %v, error %v; want no swap strategy", p, err)
	}
}

// The plan of a swap deploy, upload stage included, loads back from
// zerodown.yaml as the same pipeline.
func TestSwapPlanRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		hosts    int
		strategy string
		skip     map[string]bool
	}{
		{"three hosts", 3, swapSettings, nil},
		{"one host, defaults", 1, "", nil},
		{"a host skipped", 3, swapSettings, map[string]bool{"web-1": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Swap(swapEnv(t, tt.hosts, tt.strategy), tt.skip)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, swapDoc(tt.hosts, tt.strategy), p, nil)
		})
	}
}

// roundTrip writes p as a plan, appends it to doc, loads that and checks
// the pipeline it holds is p. edit, when set, changes the plan before it
// is loaded (a known gap).
func roundTrip(t *testing.T, doc string, p *Pipeline, edit func(string) string) {
	t.Helper()
	var b strings.Builder
	if err := WriteYAML(&b, p); err != nil {
		t.Fatal(err)
	}
	plan := b.String()
	if edit != nil {
		plan = edit(plan)
	}
	cfg, err := config.ParseDeploy("zerodown.yaml", []byte(doc+plan))
	if err != nil {
		t.Fatalf("the plan does not load:\n%v\nplan:\n%s", err, plan)
	}
	pc := cfg.Pipelines[p.Name]
	if pc == nil {
		t.Fatalf("no pipeline %s in %v", p.Name, cfg.Pipelines)
	}
	back := FromConfig(p.Name, pc)
	back.Strategy = p.Strategy // a hand-written pipeline has none
	want := withRunIf(p)
	if !reflect.DeepEqual(back, want) {
		t.Errorf("loaded back:\n  %s\nwant:\n  %s\nplan:\n%s",
			strings.Join(outline(back), "\n  "), strings.Join(outline(want), "\n  "), plan)
		for si := range min(len(back.Stages), len(want.Stages)) {
			if !reflect.DeepEqual(back.Stages[si], want.Stages[si]) {
				t.Errorf("stage %d loaded back as %+v, want %+v", si, back.Stages[si], want.Stages[si])
			}
		}
	}
}
