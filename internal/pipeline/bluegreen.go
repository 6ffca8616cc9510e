package pipeline

import (
	"fmt"

	"github.com/zerodown/zerodown/internal/config"
)

// BlueGreen expands the blue-green strategy of env, with live the pool
// that serves users now, into a pipeline: the artifact onto the idle
// pool's hosts; every idle host updated at once (they serve no user);
// the idle pool checked through the preview route (smoke checks, then the
// preview load); live traffic switched to it. The old pool is left as it
// is, to switch back to. Idle hosts in skip (already on the version and
// healthy) are left out; the switch is not.
func BlueGreen(env *config.Environment, live string, skip map[string]bool) (*Pipeline, error) {
	bg := env.Strategy.BlueGreen
	if bg == nil || len(bg.Pools) != 2 {
		return nil, fmt.Errorf("environment %s: no blue_green strategy with two pools", env.Name)
	}
	idle := bg.Pools[0]
	switch live {
	case bg.Pools[0]:
		idle = bg.Pools[1]
	case bg.Pools[1]:
	default:
		return nil, fmt.Errorf("environment %s: live traffic goes to pool %s, which is neither %s nor %s", env.Name, live, bg.Pools[0], bg.Pools[1])
	}
	var hosts []string
	liveDone := true
	for _, h := range env.Hosts {
		switch {
		case h.Pool == idle && !skip[h.Name]:
			hosts = append(hosts, h.Name)
		case h.Pool == live && !skip[h.Name]:
			liveDone = false
		}
	}
	p := &Pipeline{Name: env.Name + "-blue-green", Environment: env.Name, Strategy: "blue-green"}
	if liveDone {
		return p, nil // users are served the version already
	}
	if len(hosts) > 0 {
		upload := Stage{Name: "upload"}
		update := Stage{Name: "update-" + idle}
		for _, h := range hosts {
			upload.Jobs = append(upload.Jobs, Job{Name: h, Tasks: []Task{{Kind: KindUpload, Host: h}}})
			update.Jobs = append(update.Jobs, Job{Name: h, Tasks: []Task{
				{Kind: KindDetach, Host: h},
				{Kind: KindWaitDrained, Host: h, Timeout: durationOr(bg.DrainTimeout, config.DefaultDrainTimeout)},
				{Kind: KindDeploy, Host: h},
				{Kind: KindAttach, Host: h},
				{Kind: KindWaitHealthy, Host: h, Timeout: durationOr(bg.HealthTimeout, config.DefaultRolloutHealthTimeout)},
			}})
		}
		p.Stages = append(p.Stages, upload, update)
	}
	preview := Job{Name: "preview"}
	for _, st := range bg.Smoke {
		preview.Tasks = append(preview.Tasks, Task{Kind: KindSmoke, Smoke: &st})
	}
	if bg.PreviewLoad.Rate != nil && *bg.PreviewLoad.Rate > 0 && bg.PreviewLoad.Duration > 0 {
		preview.Tasks = append(preview.Tasks, Task{Kind: KindPreviewLoad, Load: &config.LoadTask{
			URL: bg.Preview, Rate: *bg.PreviewLoad.Rate, Duration: bg.PreviewLoad.Duration}})
	}
	if len(preview.Tasks) > 0 {
		p.Stages = append(p.Stages, Stage{Name: "preview-" + idle, Jobs: []Job{preview}})
	}
	p.Stages = append(p.Stages, Stage{Name: "switch", Jobs: []Job{{Name: "switch", Tasks: []Task{
		{Kind: KindSwitch, Switch: &config.SwitchTask{From: live, To: idle}},
	}}}})
	return p, nil
}
