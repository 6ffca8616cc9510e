package pipeline

import (
	"fmt"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// Rolling expands the rolling strategy of env into a pipeline: an upload
// stage that puts the artifact on every host first, then one stage per
// batch whose jobs (one per host, in parallel) detach, wait until drained,
// deploy, attach, wait until healthy and bake. Hosts in skip (already on the
// target version) are left out, so a re-run only touches what is left.
func Rolling(env *config.Environment, skip map[string]bool) (*Pipeline, error) {
	r := env.Strategy.Rolling
	if r == nil {
		r = &config.Rolling{}
	}
	var hosts []string
	for _, h := range env.Hosts {
		if !skip[h.Name] {
			hosts = append(hosts, h.Name)
		}
	}
	p := &Pipeline{Name: env.Name + "-rolling", Environment: env.Name, Strategy: "rolling"}
	if len(hosts) == 0 {
		return p, nil
	}
	sizes, err := BatchSizes(r.Batch, len(env.Hosts), len(hosts))
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", env.Name, err)
	}
	upload := Stage{Name: "upload"}
	for _, h := range hosts {
		upload.Jobs = append(upload.Jobs, Job{Name: h, Tasks: []Task{{Kind: KindUpload, Host: h}}})
	}
	p.Stages = append(p.Stages, upload)
	next := 0
	for b, size := range sizes {
		batch := hosts[next : next+size]
		next += size
		st := Stage{Name: fmt.Sprintf("batch-%d", b+1)}
		if len(batch) == 1 {
			st.Name = "update-" + batch[0]
		}
		for _, h := range batch {
			tasks := []Task{
				{Kind: KindDetach, Host: h},
				{Kind: KindWaitDrained, Host: h, Timeout: durationOr(r.DrainTimeout, config.DefaultDrainTimeout)},
				{Kind: KindDeploy, Host: h},
				{Kind: KindAttach, Host: h},
				{Kind: KindWaitHealthy, Host: h, Timeout: durationOr(r.HealthTimeout, config.DefaultRolloutHealthTimeout)},
			}
			if r.Bake > 0 {
				tasks = append(tasks, Task{Kind: KindSleep, Sleep: time.Duration(r.Bake)})
			}
			st.Jobs = append(st.Jobs, Job{Name: h, Tasks: tasks})
		}
		p.Stages = append(p.Stages, st)
	}
	return p, nil
}

// BatchSizes splits n hosts (of an environment of total hosts) into
// batches. spec[i] sizes batch i and the last entry repeats; percentages
// are of the whole environment and round up, and every batch has at least
// one host.
func BatchSizes(spec []config.Quantity, total, n int) ([]int, error) {
	if len(spec) == 0 {
		spec = []config.Quantity{{N: 1}}
	}
	var sizes []int
	left := n
	for i := 0; left > 0; i++ {
		q := spec[min(i, len(spec)-1)]
		size := q.Of(total)
		if size < 1 {
			return nil, fmt.Errorf("batch %d is empty: %s of %d hosts", i+1, quantityString(q), total)
		}
		size = min(size, left)
		sizes = append(sizes, size)
		left -= size
	}
	return sizes, nil
}

func quantityString(q config.Quantity) string {
	if q.Percent {
		return fmt.Sprintf("%d%%", q.N)
	}
	return fmt.Sprint(q.N)
}

func durationOr(d config.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// Assumed durations of the steps a plan cannot know in advance; they make
// the estimate, not the run.
const (
	estimateUpload   = 500 * time.Millisecond
	estimateDetach   = 50 * time.Millisecond
	estimateDrain    = 500 * time.Millisecond
	estimateActivate = time.Second
	estimateAttach   = 50 * time.Millisecond
	estimateHealthy  = time.Second
	estimateDefault  = 100 * time.Millisecond
)

// Estimate is the expected duration of p when nothing fails: stages add
// up, a stage takes as long as its slowest job. Approvals wait for people
// and are left out; the second result counts them.
func Estimate(p *Pipeline) (time.Duration, int) {
	var total time.Duration
	approvals := 0
	for _, st := range p.Stages {
		var longest time.Duration
		for _, j := range st.Jobs {
			var d time.Duration
			for _, t := range j.Tasks {
				switch t.Kind {
				case KindUpload:
					d += estimateUpload
				case KindDetach:
					d += estimateDetach
				case KindWaitDrained:
					d += estimateDrain
				case KindDeploy:
					d += estimateActivate
				case KindAttach:
					d += estimateAttach
				case KindWaitHealthy:
					d += estimateHealthy
				case KindSleep:
					d += t.Sleep
				case KindAnalyze:
					d += canaryEstimate(t)
				case KindPreviewLoad:
					if t.Load != nil {
						d += time.Duration(t.Load.Duration)
					}
				case KindApprove:
					approvals++
				case KindPause:
					if t.Pause != nil && t.Pause.For > 0 {
						d += time.Duration(t.Pause.For)
					} else {
						approvals++ // held until a person resumes it
					}
				default:
					d += estimateDefault
				}
			}
			longest = max(longest, d)
		}
		total += longest
	}
	return total, approvals
}
