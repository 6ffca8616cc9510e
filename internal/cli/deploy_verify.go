package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/loadgen"
)

// verifier fires an environment's verify load at its load balancer for the
// whole run, marks the rollout's steps on the report's time axis, and stops
// the run as soon as a request fails beyond the thresholds.
type verifier struct {
	g          *loadgen.Generator
	thresholds loadgen.Thresholds
	reportDir  string
	runID      string
}

// verifyPoll is how often the verifier's counts are compared with the
// thresholds during a run.
const verifyPoll = 250 * time.Millisecond

func startVerifier(v *config.Verify, reportDir, runID string) (*verifier, error) {
	targets := []loadgen.Target{{Label: "GET " + v.URL, Method: "GET", URL: v.URL}}
	if v.PostEcho {
		targets = append(targets, loadgen.Target{Label: "POST " + v.URL, Method: "POST", URL: v.URL,
			Body: []byte("zerodown verify " + runID), ExpectEcho: true})
	}
	g, err := loadgen.New(loadgen.Config{Targets: targets, Rate: float64(v.Rate)})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	th := loadgen.Thresholds{MaxFailed: 0, MaxDropped: 0, P99: time.Duration(v.P99)}
	if v.MaxFailed != nil {
		th.MaxFailed = int64(*v.MaxFailed)
	}
	if v.MaxDropped != nil {
		th.MaxDropped = int64(*v.MaxDropped)
	}
	if err := g.Start(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return &verifier{g: g, thresholds: th, reportDir: reportDir, runID: runID}, nil
}

// mark puts a rollout step on the report's time axis.
func (v *verifier) mark(e engine.Event) {
	switch e.Type {
	case engine.EvDetaching, engine.EvDrained, engine.EvActivated, engine.EvAttaching, engine.EvHealthy,
		engine.EvRollback, engine.EvRolledBack, engine.EvFailed, engine.EvDetached:
		v.g.Mark(loadgen.Event{Time: e.At, Host: e.Host, Type: e.Type, Detail: firstLine(e.Message)})
	}
}

// watch stops the run through stop when failed or dropped requests go past
// the thresholds, so a deploy that hurts users is rolled back at once.
func (v *verifier) watch(ctx context.Context, stop context.CancelCauseFunc) {
	tick := time.NewTicker(verifyPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s := v.g.Snapshot()
			if v.thresholds.MaxFailed >= 0 && s.Failed > v.thresholds.MaxFailed {
				stop(fmt.Errorf("%w: the verifier saw %d failed requests (max_failed %d)", engine.ErrAborted, s.Failed, v.thresholds.MaxFailed))
				return
			}
			if v.thresholds.MaxDropped >= 0 && s.Dropped > v.thresholds.MaxDropped {
				stop(fmt.Errorf("%w: the verifier dropped %d requests (max_dropped %d)", engine.ErrAborted, s.Dropped, v.thresholds.MaxDropped))
				return
			}
		}
	}
}

// finish stops the load, evaluates the thresholds, writes the reports
// beside the run's journal and prints the verdict. It returns whether the
// thresholds held.
func (v *verifier) finish(w io.Writer) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := v.g.Stop(ctx)
	if rep == nil {
		return false, fmt.Errorf("verify: %w", err)
	}
	pass := rep.Evaluate(v.thresholds)
	fmt.Fprintln(w, "\nload verifier:")
	if err := rep.WriteText(w); err != nil {
		return pass, err
	}
	if err := os.MkdirAll(v.reportDir, 0o755); err != nil {
		return pass, fmt.Errorf("verify: report directory: %w", err)
	}
	base := filepath.Join(v.reportDir, v.runID)
	data, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(base+".json", data, 0o644); err != nil {
		return pass, fmt.Errorf("verify: %w", err)
	}
	if err := writeHTMLReport(rep, base+".html"); err != nil {
		return pass, fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintf(w, "report: %s.html (JSON: %s.json)\n", base, base)
	return pass, nil
}

func writeHTMLReport(rep *loadgen.Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
