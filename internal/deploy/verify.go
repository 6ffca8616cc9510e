package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/loadgen"
)

// Verification is what the load verifier found during a run.
type Verification struct {
	Report *loadgen.Report
	// Pass: the thresholds held, the balancer's retries included.
	Pass bool
	// Note says why counting started late or could not start.
	Note string
	// LB is what the load balancer hid during the run (retries, failures
	// toward targets); nil when its driver cannot tell.
	LB *lb.Counts
	// HTML and JSON are the report files beside the journal.
	HTML, JSON string
}

// verifier fires an environment's verify load at its load balancer for the
// whole run, marks the rollout's steps on the report's time axis, and stops
// the run as soon as requests fail beyond the thresholds.
type verifier struct {
	// onSample sees each finished second of the load, while the run goes.
	onSample   func(loadgen.Row)
	cfg        *config.Verify
	g          *loadgen.Generator
	thresholds loadgen.Thresholds
	bal        lb.Balancer
	reportDir  string
	runID      string

	mu       sync.Mutex
	started  bool
	finished bool // no load starts after finish
	note     string
	lbBefore *lb.Counts
	marks    []loadgen.Event // rollout steps before the load started
}

// verifyPoll is how often the verifier's counts are compared with the
// thresholds, and how often an empty pool is looked at, during a run.
const verifyPoll = 250 * time.Millisecond

// verifyMaxLag is how late a request of the verifier may start before it
// is dropped, which counts as failed.
const verifyMaxLag = loadgen.DefaultMaxLag

func newVerifier(v *config.Verify, bal lb.Balancer, reportDir, runID string) (*verifier, error) {
	targets := []loadgen.Target{{Label: "GET " + v.URL, Method: "GET", URL: v.URL}}
	if v.PostEcho {
		targets = append(targets, loadgen.Target{Label: "POST " + v.URL, Method: "POST", URL: v.URL,
			Body: []byte("zerodown verify " + runID), ExpectEcho: true})
	}
	if v.Post != "" {
		u, err := url.Parse(v.URL)
		if err != nil {
			return nil, badInput(fmt.Errorf("verify.url: %w", err))
		}
		post, err := u.Parse(v.Post)
		if err != nil {
			return nil, badInput(fmt.Errorf("verify.post: %w", err))
		}
		targets = append(targets, loadgen.Target{Label: "POST " + post.String(), Method: "POST", URL: post.String(),
			Body: []byte("zerodown verify " + runID)})
	}
	g, err := loadgen.New(loadgen.Config{Targets: targets, Rate: float64(v.Rate), MaxLag: verifyMaxLag})
	if err != nil {
		return nil, badInput(fmt.Errorf("verify: %w", err))
	}
	th := loadgen.Thresholds{MaxFailed: 0, MaxDropped: 0, P99: time.Duration(v.P99)}
	if v.MaxFailed != nil {
		th.MaxFailed = int64(*v.MaxFailed)
	}
	if v.MaxDropped != nil {
		th.MaxDropped = int64(*v.MaxDropped)
	}
	return &verifier{cfg: v, g: g, thresholds: th, bal: bal, reportDir: reportDir, runID: runID}, nil
}

// start fires the load now when the balancer has a serving target; a
// first deploy onto a pool with none starts counting when the first target
// becomes healthy, since every request before that fails whatever the
// deploy does.
func (v *verifier) start(ctx context.Context) error {
	serving, err := v.serving(ctx)
	if err != nil {
		return err
	}
	v.readLB(ctx, true)
	if serving {
		return v.begin("")
	}
	go func() {
		tick := time.NewTicker(verifyPoll / 2)
		defer tick.Stop()
		since := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if ok, err := v.serving(ctx); err == nil && ok {
				_ = v.begin(fmt.Sprintf("the pool had no serving target when the run started; counting began %s later, when the first target became healthy",
					time.Since(since).Round(time.Millisecond)))
				return
			}
		}
	}()
	v.mu.Lock()
	v.note = "the pool has no serving target yet: counting starts when the first target is healthy"
	v.mu.Unlock()
	return nil
}

func (v *verifier) serving(ctx context.Context) (bool, error) {
	ts, err := v.bal.Targets(ctx)
	if err != nil {
		return false, classify("verify: read the load balancer's targets", err)
	}
	for _, t := range ts {
		if t.State == lb.StateHealthy {
			return true, nil
		}
	}
	return false, nil
}

func (v *verifier) begin(note string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started || v.finished {
		return nil
	}
	if err := v.g.Start(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	v.started, v.note = true, note
	for _, m := range v.marks {
		v.g.Mark(m)
	}
	v.marks = nil
	return nil
}

// readLB reads the balancer's counters, at the start (first) or the end.
func (v *verifier) readLB(ctx context.Context, first bool) *lb.Counts {
	c, ok := v.bal.(lb.Counter)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	counts, err := c.Counts(ctx)
	if err != nil {
		return nil
	}
	if first {
		v.mu.Lock()
		v.lbBefore = &counts
		v.mu.Unlock()
	}
	return &counts
}

// mark puts a rollout step on the report's time axis.
func (v *verifier) mark(e engine.Event) {
	switch e.Type {
	case engine.EvDetaching, engine.EvDrained, engine.EvActivated, engine.EvAttaching, engine.EvHealthy,
		engine.EvRollback, engine.EvRolledBack, engine.EvFailed, engine.EvDetached, engine.EvSwitched, engine.EvCanary:
	default:
		return
	}
	m := loadgen.Event{Time: e.At, Host: e.Host, Type: e.Type, Detail: firstLine(e.Message)}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.started {
		v.marks = append(v.marks, m)
		return
	}
	v.g.Mark(m)
}

// watch stops the run through stop when failed or dropped requests go past
// the thresholds, so a deploy that hurts users is rolled back at once, and
// hands each finished second to onSample; when ctx ends, the last second
// too (after finish, the load's last).
func (v *verifier) watch(ctx context.Context, stop context.CancelCauseFunc) {
	tick := time.NewTicker(verifyPoll)
	defer tick.Stop()
	lastSample := int64(-1)
	sample := func() (loadgen.Snapshot, bool) {
		v.mu.Lock()
		started := v.started
		v.mu.Unlock()
		if !started {
			return loadgen.Snapshot{}, false
		}
		s := v.g.Snapshot()
		if v.onSample != nil && s.Last.Seconds > 0 && s.Last.T != lastSample {
			lastSample = s.Last.T
			v.onSample(s.Last)
		}
		return s, true
	}
	for {
		select {
		case <-ctx.Done():
			sample()
			return
		case <-tick.C:
		}
		s, started := sample()
		if !started {
			continue
		}
		if v.thresholds.MaxFailed >= 0 && s.Failed > v.thresholds.MaxFailed {
			// A dropped request was never sent: say so, or a starved
			// verifier reads as a failing service.
			var dropped string
			if s.Dropped > 0 {
				dropped = fmt.Sprintf(", %d of them dropped: not started within %s of their due time (the verifier's machine too busy, or every connection waiting on slow answers)", s.Dropped, verifyMaxLag)
			}
			stop(fmt.Errorf("%w: the verifier saw %d failed requests (max_failed %d)%s", engine.ErrRequestsFailing, s.Failed, v.thresholds.MaxFailed, dropped))
			return
		}
		if v.thresholds.MaxDropped >= 0 && s.Dropped > v.thresholds.MaxDropped {
			stop(fmt.Errorf("%w: the verifier dropped %d requests (max_dropped %d)", engine.ErrRequestsFailing, s.Dropped, v.thresholds.MaxDropped))
			return
		}
	}
}

// finish stops the load, evaluates the thresholds (the balancer's retries
// against verify.max_lb_retries too), and writes the reports beside the
// run's journal.
func (v *verifier) finish() (*Verification, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v.mu.Lock()
	started, note, before := v.started, v.note, v.lbBefore
	v.finished = true
	v.mu.Unlock()
	out := &Verification{Note: note}
	// Counters that went down belong to a balancer restarted (or handed
	// over to a new process) during the run: the difference means nothing.
	if after := v.readLB(ctx, false); after != nil && before != nil &&
		after.Retries >= before.Retries && after.TargetErrors >= before.TargetErrors {
		out.LB = &lb.Counts{Retries: after.Retries - before.Retries, TargetErrors: after.TargetErrors - before.TargetErrors}
	}
	if !started {
		out.Note = "no target of the pool became healthy during the run: nothing was verified"
		return out, nil
	}
	rep, err := v.g.Stop(ctx)
	if rep == nil {
		return out, fmt.Errorf("verify: %w", err)
	}
	out.Report = rep
	out.Pass = rep.Evaluate(v.thresholds)
	if v.cfg.MaxLBRetries != nil && out.LB != nil && out.LB.Retries > uint64(*v.cfg.MaxLBRetries) {
		out.Pass = false
	}
	return out, nil
}

// write saves the report as JSON and HTML beside the journal. It returns
// the HTML page for the journal itself even when a file could not be
// written (nil only when there is no page).
func (v *verifier) write(out *Verification) ([]byte, error) {
	if out.Report == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	var page []byte
	pageErr := out.Report.WriteHTML(&buf)
	if pageErr == nil {
		page = buf.Bytes()
	}
	if err := os.MkdirAll(v.reportDir, 0o755); err != nil {
		return page, fmt.Errorf("verify: report directory: %w", err)
	}
	base := filepath.Join(v.reportDir, v.runID)
	data, _ := json.MarshalIndent(out.Report, "", "  ")
	if err := os.WriteFile(base+".json", data, 0o644); err != nil {
		return page, fmt.Errorf("verify: %w", err)
	}
	out.JSON = base + ".json"
	if pageErr != nil {
		return nil, fmt.Errorf("verify: HTML report: %w", pageErr)
	}
	if err := os.WriteFile(base+".html", page, 0o644); err != nil {
		return page, fmt.Errorf("verify: %w", err)
	}
	out.HTML = base + ".html"
	return page, nil
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// VerifySummary is the verifier's finding in a few numbers, for a CD
// server's log (`deploy -o json`) and the server's API.
type VerifySummary struct {
	Pass     bool           `json:"pass"`
	Requests int64          `json:"requests"`
	OK       int64          `json:"ok"`
	Failed   int64          `json:"failed"`
	Dropped  int64          `json:"dropped"`
	P50      loadgen.Millis `json:"p50_ms"`
	P99      loadgen.Millis `json:"p99_ms"`
	// LBRetries and LBTargetErrors are what the load balancer hid: requests
	// it sent again to another target, and failures toward targets.
	LBRetries      *uint64 `json:"lb_retries,omitempty"`
	LBTargetErrors *uint64 `json:"lb_target_errors,omitempty"`
	Note           string  `json:"note,omitempty"`
	HTML           string  `json:"html,omitempty"`
	JSON           string  `json:"json,omitempty"`
}

// Summary condenses v.
func (v *Verification) Summary() VerifySummary {
	s := VerifySummary{Pass: v.Pass, Note: v.Note, HTML: v.HTML, JSON: v.JSON}
	if r := v.Report; r != nil {
		s.Requests, s.OK, s.Failed, s.Dropped = r.Requests.Total, r.Requests.OK, r.Requests.Failed, r.Requests.Dropped
		s.P50, s.P99 = r.Latency.P50, r.Latency.P99
	}
	if v.LB != nil {
		s.LBRetries, s.LBTargetErrors = &v.LB.Retries, &v.LB.TargetErrors
	}
	return s
}
