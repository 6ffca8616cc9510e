package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

func env(n int, r *config.Rolling) *config.Environment {
	e := &config.Environment{Name: "staging", Strategy: config.Strategy{Rolling: r}}
	for i := 1; i <= n; i++ {
		e.Hosts = append(e.Hosts, config.Host{Name: "staging-" + string(rune('0'+i))})
	}
	return e
}

func q(n int) config.Quantity   { return config.Quantity{N: n} }
func pct(n int) config.Quantity { return config.Quantity{N: n, Percent: true} }

func TestBatchSizes(t *testing.T) {
	cases := []struct {
		name     string
		spec     []config.Quantity
		total, n int
		want     []int
	}{
		{"default one at a time", nil, 3, 3, []int{1, 1, 1}},
		{"fixed two", []config.Quantity{q(2)}, 5, 5, []int{2, 2, 1}},
		{"25 percent rounds up", []config.Quantity{pct(25)}, 3, 3, []int{1, 1, 1}},
		{"canary then halves", []config.Quantity{q(1), pct(50), pct(100)}, 4, 4, []int{1, 2, 1}},
		{"percent of the environment, not of the rest", []config.Quantity{pct(50)}, 4, 2, []int{2}},
		{"nothing left", []config.Quantity{q(1)}, 2, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := BatchSizes(c.spec, c.total, c.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
	if _, err := BatchSizes([]config.Quantity{q(0)}, 3, 3); err == nil || !strings.Contains(err.Error(), "batch 1 is empty: 0 of 3 hosts") {
		t.Fatalf("empty batch: %v", err)
	}
}

func TestRollingExpansion(t *testing.T) {
	e := env(3, &config.Rolling{Batch: []config.Quantity{q(1), q(2)}, Bake: config.Duration(5 * time.Second)})
	p, err := Rolling(e, map[string]bool{"staging-2": true})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteYAML(&b, p); err != nil {
		t.Fatal(err)
	}
	want := `pipelines:
  staging-rolling:
    environment: staging
    stages:
      - name: upload
        jobs:
          - { name: staging-1, tasks: [ {upload: staging-1} ] }
          - { name: staging-3, tasks: [ {upload: staging-3} ] }
      - name: update-staging-1
        jobs:
          - { name: staging-1, tasks: [ {detach: staging-1}, {wait-drained: staging-1, timeout: 1m}, {deploy: staging-1}, {attach: staging-1}, {wait-healthy: staging-1, timeout: 1m}, {sleep: 5s} ] }
      - name: update-staging-3
        jobs:
          - { name: staging-3, tasks: [ {detach: staging-3}, {wait-drained: staging-3, timeout: 1m}, {deploy: staging-3}, {attach: staging-3}, {wait-healthy: staging-3, timeout: 1m}, {sleep: 5s} ] }
`
	if b.String() != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", b.String(), want)
	}
	if hosts := p.Hosts(); strings.Join(hosts, ",") != "staging-1,staging-3" {
		t.Fatalf("hosts %v", hosts)
	}
	d, approvals := Estimate(p)
	// upload 0.5s + two batches of 0.05+0.5+1+0.05+1+5 = 7.6s each.
	if d != 15700*time.Millisecond || approvals != 0 {
		t.Fatalf("estimate %s, %d approvals", d, approvals)
	}
}

func TestRollingAllSkipped(t *testing.T) {
	p, err := Rolling(env(2, nil), map[string]bool{"staging-1": true, "staging-2": true})
	if err != nil || len(p.Stages) != 0 {
		t.Fatalf("stages %v, err %v", p.Stages, err)
	}
}

// TestFromConfig maps DESIGN.md's hand-written three-stage pipeline.
func TestFromConfig(t *testing.T) {
	c := &config.Pipeline{Environment: "staging", Stages: []config.Stage{
		{Name: "update-staging-1", Jobs: []config.Job{{Tasks: []config.Task{{Detach: "staging-1"}, {Deploy: "staging-1"}}}}},
		{Name: "attach-staging-1", Jobs: []config.Job{{Tasks: []config.Task{{Attach: "staging-1"}}}}},
		{Name: "update-staging-2", Jobs: []config.Job{{Tasks: []config.Task{
			{Detach: "staging-2"}, {Deploy: "staging-2"}, {Attach: "staging-2"},
			{Exec: &config.ExecTask{Command: []string{"notify", "failed"}}, RunIf: config.RunIfFailed,
				OnCancel: &config.Task{Sleep: config.Duration(time.Second)}},
		}}}},
	}}
	p := FromConfig("staging-by-hand", c)
	var b strings.Builder
	WriteYAML(&b, p)
	for _, want := range []string{
		"- name: update-staging-1\n        jobs:\n          - { name: job-1, tasks: [ {detach: staging-1}, {deploy: staging-1} ] }",
		"{attach: staging-2}, {exec: { command: [notify, failed] }, run_if: failed, on_cancel: {sleep: 1s}}",
	} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("plan lacks %q:\n%s", want, b.String())
		}
	}
}

func TestYAMLString(t *testing.T) {
	for in, want := range map[string]string{
		"staging-1": "staging-1", "": `""`, "yes": `"yes"`, "1.5": `"1.5"`,
		"a b": `"a b"`, "x: y": `"x: y"`, `q"uote`: `"q\"uote"`,
	} {
		if got := yamlString(in); got != want {
			t.Errorf("yamlString(%q) = %s, want %s", in, got, want)
		}
	}
}
