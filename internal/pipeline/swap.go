package pipeline

import (
	"fmt"

	"github.com/zerodown/zerodown/internal/config"
)

// Swap expands the swap strategy of env: the artifact onto every host
// first, then one host at a time, without taking it out first: the new
// release starts in the host's idle slot, the load balancer attaches that
// slot's target and reports it healthy, then the old slot's target is
// detached and drained, and the old release stopped. Hosts in skip are
// left out.
func Swap(env *config.Environment, skip map[string]bool) (*Pipeline, error) {
	w := env.Strategy.Swap
	if w == nil {
		return nil, fmt.Errorf("environment %s: no swap strategy", env.Name)
	}
	p := &Pipeline{Name: env.Name + "-swap", Environment: env.Name, Strategy: "swap"}
	var hosts []string
	for _, h := range env.Hosts {
		if !skip[h.Name] {
			hosts = append(hosts, h.Name)
		}
	}
	if len(hosts) == 0 {
		return p, nil
	}
	upload := Stage{Name: "upload"}
	for _, h := range hosts {
		upload.Jobs = append(upload.Jobs, Job{Name: h, Tasks: []Task{{Kind: KindUpload, Host: h}}})
	}
	p.Stages = append(p.Stages, upload)
	health := durationOr(w.HealthTimeout, config.DefaultRolloutHealthTimeout)
	drain := durationOr(w.DrainTimeout, config.DefaultDrainTimeout)
	for _, h := range hosts {
		p.Stages = append(p.Stages, Stage{Name: "swap-" + h, Jobs: []Job{{Name: h, Tasks: []Task{
			{Kind: KindDeploy, Host: h, Slot: SlotIdle},
			{Kind: KindAttach, Host: h, Slot: SlotNew},
			{Kind: KindWaitHealthy, Host: h, Slot: SlotNew, Timeout: health},
			{Kind: KindDetach, Host: h, Slot: SlotOld},
			{Kind: KindWaitDrained, Host: h, Slot: SlotOld, Timeout: drain},
			{Kind: KindRetire, Host: h},
		}}}})
	}
	return p, nil
}
