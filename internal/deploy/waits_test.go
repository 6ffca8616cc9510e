package deploy

import (
	"context"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
)

func TestPipelineTimeouts(t *testing.T) {
	task := func(k pipeline.Kind, d time.Duration) pipeline.Task {
		return pipeline.Task{Kind: k, Host: "web-1", Timeout: d}
	}
	p := &pipeline.Pipeline{Stages: []pipeline.Stage{{Jobs: []pipeline.Job{{Tasks: []pipeline.Task{
		task(pipeline.KindWaitDrained, 10*time.Second), task(pipeline.KindWaitDrained, 0),
		task(pipeline.KindWaitHealthy, 90*time.Second), task(pipeline.KindDetach, time.Hour),
	}}}}}}
	drain, health := PipelineTimeouts(p)
	if drain != config.DefaultDrainTimeout || health != 90*time.Second {
		t.Fatalf("drain %s, health %s: want the default drain (a task without a timeout) and 90s", drain, health)
	}
	if d, h := PipelineTimeouts(&pipeline.Pipeline{}); d != 0 || h != 0 {
		t.Fatalf("a pipeline without waits: %s, %s", d, h)
	}
}

// bounded is a balancer that says how long it drains and checks.
type bounded struct {
	lb.Balancer
	drain, health time.Duration
}

func (b bounded) DrainBound(context.Context) (time.Duration, error)  { return b.drain, nil }
func (b bounded) HealthBound(context.Context) (time.Duration, error) { return b.health, nil }

func TestReadWaitsFollowsTheBalancer(t *testing.T) {
	w := ReadWaits(context.Background(), bounded{drain: 330 * time.Second, health: 20 * time.Second}, 30*time.Second, time.Minute)
	if w.Drain != 335*time.Second || w.Health != time.Minute || w.DrainBound != 330*time.Second {
		t.Fatalf("waits %+v: want the drain lengthened to the bound and its margin, health left at the config's minute", w)
	}
	if w := ReadWaits(context.Background(), bounded{}, 0, time.Minute); w.Drain != 0 {
		t.Fatalf("no drain step, yet a drain wait of %s", w.Drain)
	}
}

func TestRequireApprovalGatesEveryPipeline(t *testing.T) {
	cfg, err := config.ParseDeploy("zerodown.yaml", []byte(`app: {run: [./hello]}
environments:
  production:
    require_approval: true
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
pipelines:
  by-hand:
    environment: production
    stages: [{name: one, jobs: [{tasks: [{detach: web-1}, {attach: web-1}]}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	env := cfg.Environments["production"]
	for _, name := range []string{"", "by-hand"} {
		p, err := Pipeline(cfg, env, name, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if first := p.Stages[0]; first.Name != ApprovalStage || first.Jobs[0].Tasks[0].Kind != pipeline.KindApprove {
			t.Errorf("pipeline %q starts with %+v, want the approval", name, first)
		}
	}
	if p, err := Pipeline(cfg, env, "", map[string]bool{"web-1": true}, ""); err != nil || len(p.Stages) != 0 {
		t.Errorf("nothing to deploy, yet %d stages (%v)", len(p.Stages), err)
	}
	// A first stage that approves and also changes a host is no gate.
	mixed := &pipeline.Pipeline{Stages: []pipeline.Stage{{Name: "one", Jobs: []pipeline.Job{
		{Tasks: []pipeline.Task{{Kind: pipeline.KindApprove}}}, {Tasks: []pipeline.Task{{Kind: pipeline.KindDeploy, Host: "web-1"}}}}}}}
	if g := gated(env, mixed); g.Stages[0].Name != ApprovalStage {
		t.Errorf("a first stage that deploys beside an approval counted as the gate: %+v", g.Stages[0])
	}
}
