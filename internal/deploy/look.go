package deploy

import (
	"context"
	"sync"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/store"
)

// HostLook is what one host and its target at the load balancer report.
type HostLook struct {
	Name, Target string
	// Version and Previous are the host's releases; Running and Healthy
	// its app. Err is why the host could not be asked.
	Version, Previous string
	Running, Healthy  bool
	// Target is the host's target at the balancer: its state and
	// in-flight requests; StateUnused when the balancer does not have it.
	State    lb.State
	InFlight int
	Err      error
}

// Look asks the environment's load balancer and every host what they run
// now, changing nothing. Err is set when the balancer could not be read;
// each host carries its own error.
func Look(ctx context.Context, cfg *config.Deploy, envName string) ([]HostLook, error) {
	f, err := newFleet(ctx, cfg, envName)
	if err != nil {
		return nil, err
	}
	defer f.close()
	looks := make([]HostLook, len(f.env.Hosts))
	var wg sync.WaitGroup
	for i, h := range f.env.Hosts {
		looks[i] = HostLook{Name: h.Name, Target: h.Target, State: lb.StateUnused}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := f.hosts[h.Name].Deployer.Status(ctx)
			if err != nil {
				looks[i].Err = err
				return
			}
			looks[i].Version, looks[i].Previous = st.Version, st.Previous
			looks[i].Running, looks[i].Healthy = st.Running, st.Healthy
		}()
	}
	targets, lbErr := f.bal.Targets(ctx)
	wg.Wait()
	if lbErr != nil {
		return looks, classify("read the load balancer's targets", lbErr)
	}
	byAddr := map[string]lb.Target{}
	for _, t := range targets {
		byAddr[t.Address] = t
	}
	for i, h := range f.env.Hosts {
		t, ok := byAddr[h.Target]
		if !ok && h.SwapTarget != "" {
			t, ok = byAddr[h.SwapTarget]
		}
		if ok {
			looks[i].State, looks[i].InFlight = t.State, t.InFlight
		}
	}
	return looks, nil
}

// WaitingStage is the stage whose manual approval a run waits for, from
// its tasks; empty when it waits for none.
func WaitingStage(tasks []store.TaskRecord) string {
	stage := ""
	for _, t := range tasks {
		if t.Kind == string(pipeline.KindApprove) && t.Status == store.TaskRunning {
			stage = t.Stage
		}
	}
	return stage
}
