package engine

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/loadgen"
)

// realShare is the canary's share of the traffic that weight wc on each of
// canary targets and wb on each of others give, in percent.
func realShare(wc, wb, canary, others int) float64 {
	return 100 * float64(wc*canary) / float64(wc*canary+wb*others)
}

func TestCanaryWeights(t *testing.T) {
	tests := []struct {
		name                        string
		share, canary, others, base int
		// wantC and wantB, when set, are the exact weights; otherwise the
		// weights must give share within half a point.
		wantC, wantB int
	}{
		{name: "10% with 1 canary and 3 others", share: 10, canary: 1, others: 3, base: 1},
		{name: "50% with 1 canary and 3 others", share: 50, canary: 1, others: 3, base: 1},
		{name: "90% with 1 canary and 3 others", share: 90, canary: 1, others: 3, base: 1},
		{name: "1% with 1 canary and 3 others", share: 1, canary: 1, others: 3, base: 1},
		{name: "10% with 2 canaries and 2 others", share: 10, canary: 2, others: 2, base: 1},
		{name: "50% with 2 canaries and 2 others", share: 50, canary: 2, others: 2, base: 1},
		{name: "33% with 1 canary and 1 other", share: 33, canary: 1, others: 1, base: 1},
		{name: "5% with 1 canary and 9 others, base 3", share: 5, canary: 1, others: 9, base: 3},
		{name: "100%: the others get nothing", share: 100, canary: 1, others: 3, base: 1, wantC: 1, wantB: 0},
		{name: "100% with base 3", share: 100, canary: 2, others: 2, base: 3, wantC: 3, wantB: 0},
		{name: "0%: everyone back on base", share: 0, canary: 1, others: 3, base: 1, wantC: 1, wantB: 1},
		{name: "0% with base 7", share: 0, canary: 2, others: 2, base: 7, wantC: 7, wantB: 7},
		{name: "no others: the canary serves all", share: 10, canary: 2, others: 0, base: 2, wantC: 2, wantB: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wc, wb := canaryWeights(tt.share, tt.canary, tt.others, tt.base)
			if tt.wantC != 0 || tt.wantB != 0 {
				if wc != tt.wantC || wb != tt.wantB {
					t.Fatalf("weights %d on the canary, %d on the others; want %d and %d", wc, wb, tt.wantC, tt.wantB)
				}
				return
			}
			if wc < 1 || wc > maxWeight || wb < 1 || wb > maxWeight {
				t.Fatalf("weights %d and %d, want both from 1 to %d", wc, wb, maxWeight)
			}
			if got := realShare(wc, wb, tt.canary, tt.others); math.Abs(got-float64(tt.share)) > 0.5 {
				t.Errorf("weights %d and %d give the canary %.2f%%, want %d%% ± 0.5", wc, wb, got, tt.share)
			}
		})
	}
}

// A share no whole weights reach gets the closest one they do, never
// weight 0 on every target (which would send the traffic nowhere).
func TestCanaryWeightsUnreachableShare(t *testing.T) {
	for _, tc := range []struct{ share, canary, others int }{{99, 1, 3}, {1, 1, 1}, {99, 1, 9}, {1, 3, 1}} {
		wc, wb := canaryWeights(tc.share, tc.canary, tc.others, 1)
		if wc < 1 || wb < 1 || wc > maxWeight || wb > maxWeight {
			t.Errorf("share %d%%, %d canaries, %d others: weights %d and %d", tc.share, tc.canary, tc.others, wc, wb)
		}
		lo, hi := realShare(1, maxWeight, tc.canary, tc.others), realShare(maxWeight, 1, tc.canary, tc.others)
		want := math.Min(math.Max(float64(tc.share), lo), hi)
		if got := realShare(wc, wb, tc.canary, tc.others); math.Abs(got-want) > 0.01 {
			t.Errorf("share %d%%, %d canaries, %d others: %.2f%%, want the closest reachable %.2f%%", tc.share, tc.canary, tc.others, got, want)
		}
	}
}

// Every share a step may ask (1 to 99) that whole weights from 1 to 256
// can give, with small fleets, comes within half a point.
func TestCanaryWeightsEveryShare(t *testing.T) {
	for canary := 1; canary <= 3; canary++ {
		for others := 1; others <= 9; others++ {
			lo := realShare(1, maxWeight, canary, others)
			hi := realShare(maxWeight, 1, canary, others)
			for share := 1; share <= 99; share++ {
				if float64(share) < lo || float64(share) > hi {
					continue // beyond what the weights can give
				}
				wc, wb := canaryWeights(share, canary, others, 1)
				got := realShare(wc, wb, canary, others)
				if wc < 1 || wc > maxWeight || wb < 1 || wb > maxWeight || math.Abs(got-float64(share)) > 0.5 {
					t.Errorf("share %d%%, %d canaries, %d others: weights %d and %d give %.2f%%", share, canary, others, wc, wb, got)
				}
			}
		}
	}
}

func TestJudge(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		c, b    figures
		hasP99  bool
		maxRate float64
		maxP99  float64
		min     int64
		final   bool   // the step's end
		want    string // "" passes
	}{
		{name: "error rate over the threshold", c: figures{requests: 100, errors: 5}, b: figures{requests: 1000, errors: 10}, maxRate: 2, min: 20,
			want: "the canary's error rate is 5.0% (5 of 100), the baseline's 1.0% (10 of 1000): more than 2 points above"},
		{name: "error rate just over", c: figures{requests: 100, errors: 3}, b: figures{requests: 100, errors: 1}, maxRate: 1, min: 20,
			want: "error rate is 3.0%"},
		{name: "error rate exactly at the threshold passes", c: figures{requests: 100, errors: 2}, b: figures{requests: 100, errors: 1}, maxRate: 1, min: 20},
		{name: "a baseline as bad passes", c: figures{requests: 100, errors: 30}, b: figures{requests: 100, errors: 29}, maxRate: 1, min: 20},
		{name: "no baseline answers: judged against 0%", c: figures{requests: 50, errors: 1}, maxRate: 1, min: 20,
			want: "error rate is 2.0% (1 of 50), the baseline's 0.0% (0 of 0)"},
		{name: "threshold 0: any error above the baseline fails", c: figures{requests: 100, errors: 1}, b: figures{requests: 100}, maxRate: 0, min: 20,
			want: "more than 0 points above"},
		{name: "under min requests passes, however bad", c: figures{requests: 19, errors: 19}, b: figures{requests: 1000}, maxRate: 1, min: 20},
		{name: "at min requests it is judged", c: figures{requests: 20, errors: 20}, b: figures{requests: 1000}, maxRate: 1, min: 20,
			want: "error rate is 100.0%"},
		{name: "p99 over the percentage and the floor", c: figures{requests: 100, p99: 30 * ms}, b: figures{requests: 100, p99: 10 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20,
			want: "the canary's p99 is 30ms, the baseline's 10ms: more than 50% above"},
		{name: "p99 at the percentage passes", c: figures{requests: 100, p99: 150 * ms}, b: figures{requests: 100, p99: 100 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 just over the percentage", c: figures{requests: 100, p99: 151 * ms}, b: figures{requests: 100, p99: 100 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20,
			want: "p99 is 151ms"},
		{name: "p99 of too few answers is not judged", c: figures{requests: 99, p99: 300 * ms}, b: figures{requests: 1000, p99: 10 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 against too few baseline answers is not judged", c: figures{requests: 1000, p99: 300 * ms}, b: figures{requests: 99, p99: 10 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 over the percentage, within the 10ms floor", c: figures{requests: 100, p99: 14 * ms}, b: figures{requests: 100, p99: 5 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 exactly the floor above passes", c: figures{requests: 100, p99: 15 * ms}, b: figures{requests: 100, p99: 5 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 just beyond the floor", c: figures{requests: 100, p99: 15*ms + 10*time.Microsecond}, b: figures{requests: 100, p99: 5 * ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20,
			want: "p99 is 15.01ms, the baseline's 5ms"},
		{name: "p99 not compared without p99s (the balancer's side)", c: figures{requests: 100, p99: time.Second}, b: figures{requests: 100, p99: ms}, maxRate: 1, maxP99: 50, min: 20, final: true},
		{name: "p99 not compared with too few baseline answers", c: figures{requests: 100, p99: time.Second}, b: figures{requests: 19, p99: ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 not compared with too few canary answers", c: figures{requests: 19, p99: time.Second}, b: figures{requests: 100, p99: ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 of a few hundred answers is not judged before the step's end", c: figures{requests: 999, p99: time.Second}, b: figures{requests: 5000, p99: ms}, hasP99: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "p99 of a thousand answers each is judged before the step's end", c: figures{requests: 1000, p99: 80 * ms}, b: figures{requests: 1000, p99: 5 * ms}, hasP99: true, maxRate: 1, maxP99: 50, min: 20,
			want: "the canary's p99 is 80ms, the baseline's 5ms"},
		{name: "before the step's end the baseline needs a thousand too", c: figures{requests: 5000, p99: time.Second}, b: figures{requests: 999, p99: ms}, hasP99: true, maxRate: 1, maxP99: 50, min: 20},
		{name: "min_requests above a thousand holds for the baseline before the end", c: figures{requests: 2500, p99: time.Second}, b: figures{requests: 1500, p99: ms}, hasP99: true, maxRate: 1, maxP99: 50, min: 2000},
		{name: "min_requests above a thousand: judged with that many a side", c: figures{requests: 2500, p99: time.Second}, b: figures{requests: 2000, p99: ms}, hasP99: true, maxRate: 1, maxP99: 50, min: 2000,
			want: "p99 is 1s"},
		{name: "a faster canary passes", c: figures{requests: 100, p99: ms}, b: figures{requests: 100, p99: time.Second}, hasP99: true, final: true, maxRate: 1, maxP99: 0, min: 20},
		{name: "errors are judged before latency", c: figures{requests: 100, errors: 50, p99: time.Second}, b: figures{requests: 100, p99: ms}, hasP99: true, final: true, maxRate: 1, maxP99: 50, min: 20,
			want: "error rate is 50.0%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := judge("load verifier", tt.c, tt.b, tt.hasP99, tt.maxRate, tt.maxP99, tt.min, tt.final)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("failed: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("passed, want a failure saying %q", tt.want)
			case tt.want != "" && (!strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "load verifier: ")):
				t.Fatalf("error %q, want it to name the side and contain %q", err, tt.want)
			}
		})
	}
}

func TestSplitStats(t *testing.T) {
	const canary, other1, other2 = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
	isCanary := map[string]bool{canary: true}
	tests := []struct {
		name        string
		before, now map[string]lb.TargetStat
		wantC       figures
		wantB       figures
	}{
		{
			name:   "what was counted since before",
			before: map[string]lb.TargetStat{canary: {Requests: 100, Errors: 1}, other1: {Requests: 200}, other2: {Requests: 50, Errors: 2}},
			now:    map[string]lb.TargetStat{canary: {Requests: 150, Errors: 6}, other1: {Requests: 260, Errors: 1}, other2: {Requests: 90, Errors: 2}},
			wantC:  figures{requests: 50, errors: 5},
			wantB:  figures{requests: 100, errors: 1},
		},
		{
			name:   "the balancer restarted: its counts went down and count from 0",
			before: map[string]lb.TargetStat{canary: {Requests: 1000, Errors: 10}, other1: {Requests: 5000, Errors: 3}},
			now:    map[string]lb.TargetStat{canary: {Requests: 30, Errors: 3}, other1: {Requests: 60}},
			wantC:  figures{requests: 30, errors: 3},
			wantB:  figures{requests: 60},
		},
		{
			name:   "one target restarted, the other not",
			before: map[string]lb.TargetStat{canary: {Requests: 1000, Errors: 10}, other1: {Requests: 100, Errors: 1}},
			now:    map[string]lb.TargetStat{canary: {Requests: 40, Errors: 4}, other1: {Requests: 130, Errors: 2}},
			wantC:  figures{requests: 40, errors: 4},
			wantB:  figures{requests: 30, errors: 1},
		},
		{
			name:   "errors lower than before are not negative",
			before: map[string]lb.TargetStat{canary: {Requests: 100, Errors: 10}},
			now:    map[string]lb.TargetStat{canary: {Requests: 120, Errors: 5}},
			wantC:  figures{requests: 20},
		},
		{
			name:   "a target new since before counts whole; one gone is left out",
			before: map[string]lb.TargetStat{other1: {Requests: 100, Errors: 100}},
			now:    map[string]lb.TargetStat{canary: {Requests: 25, Errors: 1}, other2: {Requests: 7}},
			wantC:  figures{requests: 25, errors: 1},
			wantB:  figures{requests: 7},
		},
		{
			name:  "no reading before",
			now:   map[string]lb.TargetStat{canary: {Requests: 3}, other1: {Requests: 9, Errors: 9}},
			wantC: figures{requests: 3},
			wantB: figures{requests: 9, errors: 9},
		},
		{name: "nothing counted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, b := splitStats(tt.before, tt.now, isCanary)
			if c != tt.wantC || b != tt.wantB {
				t.Errorf("canary %+v, baseline %+v; want %+v and %+v", c, b, tt.wantC, tt.wantB)
			}
		})
	}
}

func TestSplitVersions(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		stats   map[string]loadgen.VersionStat
		version string
		wantC   figures
		wantB   figures
	}{
		{
			name: "the canary's version apart; the others added up, with the worst p99",
			stats: map[string]loadgen.VersionStat{
				"v2": {Answers: 100, Errors: 5, P99: 20 * ms},
				"v1": {Answers: 300, Errors: 3, P99: 10 * ms},
				"v0": {Answers: 50, Errors: 1, P99: 15 * ms},
			},
			version: "v2",
			wantC:   figures{requests: 100, errors: 5, p99: 20 * ms},
			wantB:   figures{requests: 350, errors: 4, p99: 15 * ms},
		},
		{
			name:    "the canary not seen yet",
			stats:   map[string]loadgen.VersionStat{"v1": {Answers: 10, P99: ms}},
			version: "v2",
			wantB:   figures{requests: 10, p99: ms},
		},
		{
			name:    "only the canary",
			stats:   map[string]loadgen.VersionStat{"v2": {Answers: 10, Errors: 10, P99: ms}},
			version: "v2",
			wantC:   figures{requests: 10, errors: 10, p99: ms},
		},
		{name: "no answers", version: "v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, b := splitVersions(tt.stats, tt.version)
			if c != tt.wantC || b != tt.wantB {
				t.Errorf("canary %+v, baseline %+v; want %+v and %+v", c, b, tt.wantC, tt.wantB)
			}
		})
	}
}

func TestFiguresString(t *testing.T) {
	tests := []struct {
		f    figures
		want string
	}{
		{figures{}, "0.0% errors (0 of 0)"},
		{figures{requests: 200, errors: 3}, "1.5% errors (3 of 200)"},
		{figures{requests: 8, errors: 1, p99: 12345 * time.Microsecond}, "12.5% errors (1 of 8), p99 12.35ms"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.f, got, tt.want)
		}
	}
}
