package pipeline

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// canaryDoc is a zerodown.yaml with environment "web" of zerodown lb,
// hosts web-1 to web-4, and settings under strategy.canary.
func canaryDoc(settings string) string {
	var b strings.Builder
	b.WriteString("app: {run: [./hello]}\nenvironments:\n  web:\n    lb: {admin: 'http://127.0.0.1:9100', pool: web}\n    hosts:\n")
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&b, "      - {name: web-%d, agent: 'http://127.0.0.1:71%02d', target: '127.0.0.1:81%02d'}\n", i, i, i)
	}
	b.WriteString("    strategy:\n      canary:\n" + settings)
	return b.String()
}

// canarySettings: three steps, thresholds and timeouts that differ from
// the defaults, base weight 3.
const canarySettings = `        steps: [{weight: 10, pause: 2s}, {weight: 50, pause: 1m30s}, {weight: 100}]
        analysis: {max_error_rate: 2.5, max_p99_increase: 30, min_requests: 40}
        weight: 3
        drain_timeout: 20s
        health_timeout: 40s
`

func canaryEnv(t *testing.T, settings string) *config.Environment {
	t.Helper()
	cfg, err := config.ParseDeploy("zerodown.yaml", []byte(canaryDoc(settings)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Environments["web"]
}

// canaryOutline is outline with what the labels leave out of the weights
// and analyze tasks: the canary hosts, base weight and thresholds.
func canaryOutline(p *Pipeline) []string {
	var out []string
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			tasks := make([]string, len(j.Tasks))
			for i, t := range j.Tasks {
				switch {
				case t.Kind == KindWeights && t.Weights != nil:
					w := t.Weights
					tasks[i] = fmt.Sprintf("weights %v share %d base %d", w.Canary, w.Share, w.Base)
				case t.Kind == KindAnalyze && t.Analyze != nil:
					a := t.Analyze
					tasks[i] = fmt.Sprintf("analyze %v for %s (errors +%g, p99 +%g%%, min %d)",
						a.Canary, time.Duration(a.For), a.MaxErrorRate, a.MaxP99Increase, a.MinRequests)
				default:
					tasks[i] = t.Label()
					if t.Timeout > 0 {
						tasks[i] += " (" + t.Timeout.String() + ")"
					}
				}
			}
			out = append(out, st.Name+"/"+j.Name+": "+strings.Join(tasks, " | "))
		}
	}
	return out
}

// canaryUpdate is one host's update, as rolling does it.
func canaryUpdate(h, drain, health string) string {
	return fmt.Sprintf("detach %[1]s | wait-drained %[1]s (%[2]s) | deploy %[1]s | attach %[1]s | wait-healthy %[1]s (%[3]s)", h, drain, health)
}

func TestCanaryStages(t *testing.T) {
	u := func(h string) string { return canaryUpdate(h, "20s", "40s") }
	const thresholds = "(errors +2.5, p99 +30%, min 40)"
	oneCanarySteps := []string{
		"step-1-10%/canary: weights [web-1] share 10 base 3 | analyze [web-1] for 2s " + thresholds,
		"step-2-50%/canary: weights [web-1] share 50 base 3 | analyze [web-1] for 1m30s " + thresholds,
		"step-3-100%/canary: weights [web-1] share 100 base 3",
	}
	twoCanarySteps := []string{
		"step-1-10%/canary: weights [web-1 web-2] share 10 base 3 | analyze [web-1 web-2] for 2s " + thresholds,
		"step-2-50%/canary: weights [web-1 web-2] share 50 base 3 | analyze [web-1 web-2] for 1m30s " + thresholds,
		"step-3-100%/canary: weights [web-1 web-2] share 100 base 3",
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name     string
		settings string
		skip     []string
		want     []string
	}{
		{
			name: "one canary host, the others one at a time", settings: canarySettings,
			want: cat(
				[]string{
					"upload/web-1: upload web-1", "upload/web-2: upload web-2", "upload/web-3: upload web-3", "upload/web-4: upload web-4",
					"canary/canary: weights [web-1] share 10 base 3 | " + u("web-1"),
				},
				oneCanarySteps,
				[]string{
					"rollout-1/web-2: " + u("web-2"),
					"rollout-2/web-3: " + u("web-3"),
					"rollout-3/web-4: " + u("web-4"),
					"weights/weights: weights [web-1] share 0 base 3",
				}),
		},
		{
			name: "hosts: 2, batch [1, 50%]", settings: canarySettings + "        hosts: 2\n        batch: [1, '50%']\n",
			want: cat(
				[]string{
					"upload/web-1: upload web-1", "upload/web-2: upload web-2", "upload/web-3: upload web-3", "upload/web-4: upload web-4",
					"canary/canary: weights [web-1 web-2] share 10 base 3 | " + u("web-1") + " | " + u("web-2"),
				},
				twoCanarySteps,
				[]string{
					"rollout-1/web-3: " + u("web-3"),
					"rollout-2/web-4: " + u("web-4"),
					"weights/weights: weights [web-1 web-2] share 0 base 3",
				}),
		},
		{
			name: "hosts: 50% is two of four, batch 50% both others at once", settings: canarySettings + "        hosts: '50%'\n        batch: '50%'\n",
			want: cat(
				[]string{
					"upload/web-1: upload web-1", "upload/web-2: upload web-2", "upload/web-3: upload web-3", "upload/web-4: upload web-4",
					"canary/canary: weights [web-1 web-2] share 10 base 3 | " + u("web-1") + " | " + u("web-2"),
				},
				twoCanarySteps,
				[]string{
					"rollout-1/web-3: " + u("web-3"),
					"rollout-1/web-4: " + u("web-4"),
					"weights/weights: weights [web-1 web-2] share 0 base 3",
				}),
		},
		{
			name: "a canary host on the version is not updated, and still weighed", settings: canarySettings + "        hosts: 2\n", skip: []string{"web-1"},
			want: cat(
				[]string{
					"upload/web-2: upload web-2", "upload/web-3: upload web-3", "upload/web-4: upload web-4",
					"canary/canary: weights [web-1 web-2] share 10 base 3 | " + u("web-2"),
				},
				twoCanarySteps,
				[]string{
					"rollout-1/web-3: " + u("web-3"),
					"rollout-2/web-4: " + u("web-4"),
					"weights/weights: weights [web-1 web-2] share 0 base 3",
				}),
		},
		{
			name: "every canary host on the version: the canary is over, the rest rolled out", settings: canarySettings + "        hosts: 2\n", skip: []string{"web-1", "web-2"},
			want: []string{
				"upload/web-3: upload web-3", "upload/web-4: upload web-4",
				"rollout-1/web-3: " + u("web-3"),
				"rollout-2/web-4: " + u("web-4"),
				"weights/weights: weights [web-1 web-2] share 0 base 3",
			},
		},
		{
			name: "the others on the version: the canary and its steps only", settings: canarySettings, skip: []string{"web-2", "web-3", "web-4"},
			want: cat(
				[]string{
					"upload/web-1: upload web-1",
					"canary/canary: weights [web-1] share 10 base 3 | " + u("web-1"),
				},
				oneCanarySteps,
				[]string{"weights/weights: weights [web-1] share 0 base 3"}),
		},
		{
			name: "every host on the version: nothing to do", settings: canarySettings, skip: []string{"web-1", "web-2", "web-3", "web-4"},
		},
		{
			name:     "defaults: weight 1, 1 point, 50%, 20 answers, 1m timeouts",
			settings: "        steps: [{weight: 25, pause: 1s}, {weight: 100}]\n", skip: []string{"web-3", "web-4"},
			want: []string{
				"upload/web-1: upload web-1", "upload/web-2: upload web-2",
				"canary/canary: weights [web-1] share 25 base 1 | " + canaryUpdate("web-1", "1m0s", "1m0s"),
				"step-1-25%/canary: weights [web-1] share 25 base 1 | analyze [web-1] for 1s (errors +1, p99 +50%, min 20)",
				"step-2-100%/canary: weights [web-1] share 100 base 1",
				"rollout-1/web-2: " + canaryUpdate("web-2", "1m0s", "1m0s"),
				"weights/weights: weights [web-1] share 0 base 1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := canaryEnv(t, tt.settings)
			skip := map[string]bool{}
			for _, h := range tt.skip {
				skip[h] = true
			}
			p, err := Canary(env, skip)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != "web-canary" || p.Environment != "web" || p.Strategy != "canary" {
				t.Errorf("pipeline %q of %q, strategy %q", p.Name, p.Environment, p.Strategy)
			}
			if got := canaryOutline(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stages:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if tt.want == nil {
				if len(p.Stages) != 0 || p.WeightsOf() != nil {
					t.Errorf("an empty pipeline has stages %+v", p.Stages)
				}
				return
			}
			// The first weights task is the canary's (deploy reads it), and
			// the last stage puts every host back on the base weight.
			last := p.Stages[len(p.Stages)-1]
			if w := p.WeightsOf(); w == nil || w.Base != env.Strategy.Canary.Weight || len(w.Canary) == 0 {
				t.Errorf("weights of the pipeline %+v", w)
			}
			if lw := last.Jobs[0].Tasks[0].Weights; last.Name != "weights" || lw == nil || lw.Share != 0 {
				t.Errorf("last stage %+v", last)
			}
		})
	}
}

// A weights or analyze task's canary list is its own copy: changing one
// changes no other task.
func TestCanaryTasksDoNotShareHosts(t *testing.T) {
	p, err := Canary(canaryEnv(t, canarySettings+"        hosts: 2\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var lists [][]string
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			for _, task := range j.Tasks {
				switch {
				case task.Weights != nil:
					lists = append(lists, task.Weights.Canary)
				case task.Analyze != nil:
					lists = append(lists, task.Analyze.Canary)
				}
			}
		}
	}
	if len(lists) != 7 { // canary, 3 steps, 2 analyses, weights back
		t.Fatalf("%d weights and analyze tasks, want 7", len(lists))
	}
	lists[0][0] = "changed"
	for i, l := range lists[1:] {
		if l[0] != "web-1" {
			t.Errorf("task %d's canary is %v after the first task's changed", i+1, l)
		}
	}
}

// The analyses' windows are in the estimate.
func TestCanaryEstimate(t *testing.T) {
	skip := map[string]bool{"web-1": true, "web-2": true, "web-3": true, "web-4": true}
	env := canaryEnv(t, canarySettings)
	base, _ := Estimate(&Pipeline{})
	p, err := Canary(env, map[string]bool{"web-2": true, "web-3": true, "web-4": true})
	if err != nil {
		t.Fatal(err)
	}
	got, approvals := Estimate(p)
	if approvals != 0 || got < 92*time.Second || got > 2*time.Minute {
		t.Errorf("estimate %s with %d approvals, want the 1m32s of analysis and a few seconds", got, approvals)
	}
	if empty, err := Canary(env, skip); err != nil || len(empty.Stages) != 0 {
		t.Fatalf("%v %v", empty, err)
	} else if d, _ := Estimate(empty); d != base {
		t.Errorf("estimate of nothing %s", d)
	}
}

func TestCanaryErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*config.Canary)
		want string
	}{
		{"every host a canary", func(c *config.Canary) { c.Hosts = config.Quantity{N: 4} },
			"environment web: 4 canary hosts of 4 leave no baseline"},
		{"more canaries than hosts", func(c *config.Canary) { c.Hosts = config.Quantity{N: 9} },
			"environment web: 9 canary hosts of 4 leave no baseline"},
		{"100% of the hosts", func(c *config.Canary) { c.Hosts = config.Quantity{N: 100, Percent: true} },
			"environment web: 4 canary hosts of 4 leave no baseline"},
		{"76% rounds up to every host", func(c *config.Canary) { c.Hosts = config.Quantity{N: 76, Percent: true} },
			"environment web: 4 canary hosts of 4 leave no baseline"},
		{"no canary host", func(c *config.Canary) { c.Hosts = config.Quantity{} },
			"environment web: 0 canary hosts of 4 leave no baseline"},
		{"no steps", func(c *config.Canary) { c.Steps = nil },
			"environment web: no canary strategy with steps"},
		{"an empty batch", func(c *config.Canary) { c.Batch = config.BatchSpec{{N: 0}} },
			"environment web: batch 1 is empty: 0 of 4 hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := canaryEnv(t, canarySettings)
			tt.edit(env.Strategy.Canary)
			p, err := Canary(env, nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("pipeline %v, error %v; want error %q", p, err, tt.want)
			}
			if p != nil {
				t.Errorf("a pipeline with the error: %+v", p)
			}
		})
	}
	env := canaryEnv(t, canarySettings)
	env.Strategy.Canary = nil
	if p, err := Canary(env, nil); err == nil || err.Error() != "environment web: no canary strategy with steps" || p != nil {
		t.Errorf("no canary strategy: %v %v", p, err)
	}
}

// The plan of a canary deploy, weights and analyses included, loads back
// from zerodown.yaml as the same pipeline, as written: the last stage's
// weights task (every host back on base) leaves share out.
func TestCanaryPlanRoundTrip(t *testing.T) {
	tests := []struct {
		name, settings string
		skip           map[string]bool
	}{
		{"one canary", canarySettings, nil},
		{"two canaries, batch 50%", canarySettings + "        hosts: '50%'\n        batch: '50%'\n", nil},
		{"defaults, a canary skipped", "        hosts: 2\n        steps: [{weight: 5, pause: 1m}, {weight: 100}]\n", map[string]bool{"web-2": true}},
		{"fractional thresholds", "        steps: [{weight: 33, pause: 1500ms}, {weight: 100}]\n        analysis: {max_error_rate: 0.25, max_p99_increase: 12.5, min_requests: 7}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Canary(canaryEnv(t, tt.settings), tt.skip)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, canaryDoc(tt.settings), p, func(plan string) string {
				if strings.Contains(plan, "share: 0") {
					t.Errorf("the plan writes share: 0, which zerodown.yaml refuses:\n%s", plan)
				}
				return plan
			})
		})
	}
}
