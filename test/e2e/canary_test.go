package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// canaryReport is what the canary test reads of a run's verifier report.
type canaryReport struct {
	Requests struct {
		Total  int64 `json:"total"`
		Failed int64 `json:"failed"`
	} `json:"requests"`
	Timeline struct {
		Rows []struct {
			T        int64            `json:"t"`
			Seconds  int64            `json:"seconds"`
			Versions map[string]int64 `json:"versions"`
		} `json:"rows"`
	} `json:"timeline"`
	Events []struct {
		T      float64 `json:"t"`
		Type   string  `json:"type"`
		Detail string  `json:"detail"`
	} `json:"events"`
}

func readCanaryReport(t *testing.T, log string) canaryReport {
	t.Helper()
	m := reportLine.FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		t.Fatalf("no report in the run's output:\n%s", log)
	}
	data, err := os.ReadFile(m[len(m)-1][1])
	if err != nil {
		t.Fatal(err)
	}
	var r canaryReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// shareBetween is version's share of the answers in the timeline's whole
// seconds between two times of the report (seconds since its start).
func (r canaryReport) shareBetween(version string, from, to float64) (float64, int64) {
	var mine, all int64
	for _, row := range r.Timeline.Rows {
		if float64(row.T) < math.Ceil(from) || float64(row.T+row.Seconds) > math.Floor(to) {
			continue
		}
		for v, n := range row.Versions {
			all += n
			if v == version {
				mine += n
			}
		}
	}
	if all == 0 {
		return 0, 0
	}
	return 100 * float64(mine) / float64(all), all
}

// eventAt is when the report's last event whose detail starts with
// prefix happened, in seconds since the report's start: the canary's
// first share is set once before it is deployed and again at its step.
func (r canaryReport) eventAt(t *testing.T, prefix string) float64 {
	t.Helper()
	for i := len(r.Events) - 1; i >= 0; i-- {
		if e := r.Events[i]; strings.HasPrefix(e.Detail, prefix) {
			return e.T
		}
	}
	t.Fatalf("no event %q on the report's time axis: %+v", prefix, r.Events)
	return 0
}

var abortLine = regexp.MustCompile(`canary aborted: out of the load balancer ([0-9.]+m?s) after it began serving`)

// TestCanary deploys a canary through zerodown lb under the load
// verifier: the version mix of the verifier's timeline follows the steps'
// weights (10 % ± 3 %, then 50 % ± 5 %) and the rollout completes with no
// failed request; then a canary whose answers are 5 % 500s is aborted by
// its analysis and rolled back, with the failed requests and the time to
// abort in the output and the report.
func TestCanary(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	startBuiltinFor(t, f)
	canaryThrough(t, f)
}

// TestCanaryHAProxy is the same canary through HAProxy: weights with `set
// server weight`, the canary's per-server counts from `show stat`.
func TestCanaryHAProxy(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	startHAProxyFor(t, f)
	canaryThrough(t, f)
}

// TestCanaryALB is the same canary through a simulated ALB: the canary
// host in a target group of its own, the listener's weighted target
// groups for the steps, the analysis on the verifier's answers alone.
func TestCanaryALB(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	startALBCanaryFor(t, f, awsTuned)
	canaryThrough(t, f)
}

func canaryThrough(t *testing.T, f *driverFleet) {
	art := helloTarGz(t)
	canaryConfig := func(name string, maxFailed int, extraArgs ...string) string {
		t.Helper()
		var hosts strings.Builder
		for i, a := range f.agents {
			extra := f.hostYAML(i)
			if extra != "" {
				extra = ", " + extra
			}
			fmt.Fprintf(&hosts, "      - { name: staging-%d, agent: %q, target: %q, token_file: %q%s }\n",
				i+1, a.url, f.target(i), filepath.Join(a.root, "agent.token"), extra)
		}
		cfg := fmt.Sprintf(appYAML, appArgs(extraArgs...), filepath.Join(f.dir, "state.db")) + fmt.Sprintf(`environments:
  staging:
    lb: %s
    hosts:
%s    strategy:
      canary:
        steps: [ { weight: 10, pause: 3s }, { weight: 50, pause: 3s }, { weight: 100 } ]
        analysis: { max_error_rate: 1, min_requests: 20 }
    verify: { url: %q, rate: 200, max_failed: %d }
`, f.lbYAML, hosts.String(), f.front+"/", maxFailed)
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := f.config
	if f.canaryOnly {
		// A canary is all this balancer is set up for. Nothing serves
		// before the first deploy: the verifier's threshold is loose.
		first = func(string, ...string) string { return canaryConfig("first.yaml", 1<<20) }
	}
	if out, code := f.deploy(first("rolling.yaml"), "v1", nil); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.onVersion("v1")

	good := canaryConfig("canary.yaml", 0)
	posts := startSlowPosts(f.front, 2, 3*time.Minute)
	log, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v2", "--artifact", art, "-c", good, "-o", "log")
	postReport := posts.finish()
	if code != 0 {
		t.Fatalf("canary deploy of v2: exit %d\n%s", code, log)
	}
	f.onVersion("v2")
	if posts.failed.Load() > 0 {
		t.Fatalf("slow POSTs during the canary: %s\n%s", postReport, log)
	}
	r := readCanaryReport(t, log)
	if r.Requests.Failed != 0 {
		t.Fatalf("the verifier counted %d failed requests during a good canary\n%s", r.Requests.Failed, log)
	}
	at10, at50, at100 := r.eventAt(t, "canary at 10%"), r.eventAt(t, "canary at 50%"), r.eventAt(t, "canary at 100%")
	share10, n10 := r.shareBetween("v2", at10, at50)
	share50, n50 := r.shareBetween("v2", at50, at100)
	t.Logf("version mix: v2 %.1f%% of %d answers at the 10%% step, %.1f%% of %d at the 50%% step", share10, n10, share50, n50)
	if n10 < 150 || math.Abs(share10-10) > 3 {
		t.Errorf("at the 10%% step v2 answered %.1f%% of %d requests, want 10 ± 3", share10, n10)
	}
	if n50 < 150 || math.Abs(share50-50) > 5 {
		t.Errorf("at the 50%% step v2 answered %.1f%% of %d requests, want 50 ± 5", share50, n50)
	}
	if f.evenShares != nil {
		if err := f.evenShares(); err != nil {
			t.Errorf("after the canary: %v", err)
		}
	} else {
		ts, err := f.targets()
		if err != nil {
			t.Fatal(err)
		}
		for addr, tg := range ts {
			if tg.Weight != 1 {
				t.Errorf("after the canary %s has weight %d, want 1 again", addr, tg.Weight)
			}
		}
	}

	// A bad canary: 5% of its answers are 500s. The verifier's threshold
	// is loose, so the canary's analysis is what stops it.
	bad := canaryConfig("bad.yaml", 1000, "--error-percent", "5")
	log, code = zerodownWhile(t, nil, "deploy", "staging", "--version", "v3", "--artifact", art, "-c", bad, "-o", "log")
	if code == 0 || !strings.Contains(log, "the canary failed its analysis") {
		t.Fatalf("a bad canary: exit %d, want its analysis to fail it\n%s", code, log)
	}
	f.onVersion("v2")
	r = readCanaryReport(t, log)
	m := abortLine.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no time to abort in the run's output\n%s", log)
	}
	abort, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bad canary: aborted %s after it began serving; %d of %d requests failed", abort, r.Requests.Failed, r.Requests.Total)
	if r.Requests.Failed == 0 || r.Requests.Failed > 20 {
		t.Errorf("the bad canary failed %d requests: want some (it answers 5%% 500s), and few (the analysis caps them)", r.Requests.Failed)
	}
	if abort > 5*time.Second {
		t.Errorf("the bad canary was taken out %s after it began serving, want within 5s", abort)
	}
	if !strings.Contains(log, "failed") || !strings.Contains(log, strconv.Itoa(int(r.Requests.Failed))) {
		t.Errorf("the run's output does not say how many requests failed\n%s", log)
	}
}
