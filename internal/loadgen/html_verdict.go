package loadgen

import (
	"fmt"
	"strings"
)

// Run outcomes, as the deploy engine names the status of a finished run
// (RunInfo.Outcome).
const (
	runSucceeded      = "succeeded"
	runRolledBack     = "rolled_back"
	runFailed         = "failed"
	runNeedsAttention = "needs_attention"
)

// verdict is what the top of the HTML report says about a run.
type verdict struct {
	// Badge is the word on the badge (PASS, FAIL, ROLLED BACK…); empty: no
	// badge. Class is its CSS class.
	Badge, Class string
	// Why says in a sentence or two how the run ended and whether the load
	// thresholds held.
	Why string
}

// verdict decides the badge. The thresholds alone decide it for a plain
// load run; for a deploy run PASS also needs the run to have succeeded,
// since the load can look clean while the deploy was rolled back.
func (r *Report) verdict() verdict {
	load := r.thresholdSentence()
	var outcome, reason string
	if r.Run != nil {
		outcome, reason = r.Run.Outcome, firstLineOf(r.Run.Reason)
	}
	because := func(s string) string {
		if reason == "" {
			return s + "."
		}
		return s + ": " + reason + "."
	}
	switch outcome {
	case "":
		switch {
		case len(r.Thresholds) == 0:
			return verdict{Why: load}
		case r.Pass:
			return verdict{"PASS", "pass", load}
		}
		return verdict{"FAIL", "fail", load}
	case runSucceeded:
		switch {
		case len(r.Thresholds) == 0:
			return verdict{"SUCCEEDED", "unverified", "The run succeeded. " + load}
		case r.Pass:
			return verdict{"PASS", "pass", "The run succeeded. " + load}
		}
		return verdict{"FAIL", "fail", "The run succeeded, but the load did not pass. " + load}
	case runRolledBack:
		return verdict{"ROLLED BACK", "rolled-back", because("The run was rolled back") + " " + load}
	case runFailed:
		return verdict{"FAILED", "fail", because("The run failed") + " " + load}
	case runNeedsAttention:
		return verdict{"NEEDS ATTENTION", "attention",
			because("The run needs attention: it left hosts in a state a person must check") + " " + load}
	}
	words := outcomeWords(outcome)
	return verdict{strings.ToUpper(words), "other", because("The run ended "+words) + " " + load}
}

// thresholdSentence says whether the load thresholds held, naming those
// that did not.
func (r *Report) thresholdSentence() string {
	q := r.Requests
	counts := fmt.Sprintf("%d of %d requests failed", q.Failed, q.Total)
	if len(r.Thresholds) == 0 {
		return "No load threshold was evaluated (" + counts + ")."
	}
	var failed []string
	for _, t := range r.Thresholds {
		if !t.Pass {
			failed = append(failed, brokenThreshold(t))
		}
	}
	if len(failed) == 0 {
		return "Every load threshold held (" + counts + ")."
	}
	return "The load failed: " + strings.Join(failed, "; ") + " (" + counts + ")."
}

// brokenThreshold says how far a failed threshold was off:
// "max_failed 12, limit 0".
func brokenThreshold(t ThresholdResult) string {
	switch t.Unit {
	case "ms":
		return fmt.Sprintf("%s %s, limit %s", t.Name, Millis(t.Value*1e6), Millis(t.Limit*1e6))
	case "ratio":
		return fmt.Sprintf("%s %.2f%% of the target rate, limit %.2f%%", t.Name, t.Value*100, t.Limit*100)
	}
	return fmt.Sprintf("%s %d, limit %d", t.Name, int64(t.Value), int64(t.Limit))
}

// outcomeWords turns an outcome name into words: rolled_back → rolled back.
func outcomeWords(o string) string { return strings.ReplaceAll(o, "_", " ") }

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSuffix(s, ".")
}
