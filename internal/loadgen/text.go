package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// WriteText writes the report for people: counts, rate, latency, outcomes,
// the version mix over time, error samples and, after Evaluate, each
// threshold with ✓ or ✗.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	dur := time.Duration(r.Duration * float64(time.Second))
	if r.Mode == modeClosed {
		p("zerodown load: closed loop, %d connections for %s, %s client", r.Connections, fmtDuration(dur), r.Client)
	} else {
		p("zerodown load: open model, %s/s for %s, %s client", fmtRate(r.TargetRate), fmtDuration(dur), r.Client)
	}
	if r.Interrupted {
		p(" (stopped early)")
	}
	p("\n")
	for _, t := range r.Targets {
		p("  %-40s weight %d\n", t.Method+" "+t.URL, t.Weight)
	}
	p("\n")
	q := r.Requests
	p("%-12s%d total, %d sent, %d ok, %d failed (%d dropped), %d retried by the Go client\n",
		"requests", q.Total, q.Sent, q.OK, q.Failed, q.Dropped, q.Retried)
	if r.Mode == modeClosed {
		p("%-12s%s/s\n", "throughput", fmtRate(r.AchievedRate))
	} else {
		pct := 0.0
		if r.TargetRate > 0 {
			pct = 100 * r.AchievedRate / r.TargetRate
		}
		p("%-12s%s/s target, %s/s achieved (%.2f%%)\n", "rate", fmtRate(r.TargetRate), fmtRate(r.AchievedRate), pct)
	}
	pct := func(name, note string, x Percentiles) {
		if x.Count == 0 {
			return
		}
		p("%-12sp50 %s  p90 %s  p99 %s  p99.9 %s  max %s%s\n", name, x.P50, x.P90, x.P99, x.P999, x.Max, note)
	}
	if r.Mode == modeClosed {
		pct("latency", "", r.Latency)
	} else {
		pct("latency", "  (from due time)", r.Latency)
		pct("service", "  (from start)", r.Service)
		pct("start lag", "", r.StartLag)
	}
	p("%-12s%s\n", "outcomes", r.OutcomeLine())
	if len(r.Versions) > 0 {
		var vs []string
		for _, v := range r.Versions {
			vs = append(vs, fmt.Sprintf("%s %d", v.Version, v.Count))
		}
		p("%-12s%s  (header %s)\n", "versions", strings.Join(vs, ", "), r.VersionHeader)
		if mix := versionMix(r.Timeline, 12); mix != "" {
			p("%-12s%s\n", "version mix", mix)
		}
	}
	if r.Mode == modeClosed {
		p("%-12speak %d in flight\n", "concurrency", r.PeakConcurrency)
	} else {
		p("%-12speak %d in flight (cap %d)\n", "concurrency", r.PeakConcurrency, r.MaxConcurrency)
	}
	p("%-12s%s received, %s sent\n", "bytes", fmtBytes(r.BytesReceived), fmtBytes(r.BytesSent))
	if len(r.Events) > 0 {
		p("%-12s%d marked\n", "events", len(r.Events))
	}
	if len(r.Errors) > 0 {
		p("\nfailures (first of each kind)\n")
		for _, e := range r.Errors {
			p("  %-14s at %6.3fs  %s\n", e.Outcome, e.T, e.Message)
		}
	}
	if len(r.Thresholds) > 0 {
		p("\nthresholds\n")
		failed := 0
		for _, t := range r.Thresholds {
			mark := "✓"
			if !t.Pass {
				mark = "✗"
				failed++
			}
			p("  %s %-12s %s\n", mark, t.Name, thresholdText(t))
		}
		if failed == 0 {
			p("PASS: all %d thresholds met\n", len(r.Thresholds))
		} else {
			p("FAIL: %d of %d thresholds failed\n", failed, len(r.Thresholds))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// OutcomeLine counts the answers by outcome, with the status codes of the
// HTTP ones: "ok 120, http-5xx 3 (500: 3)".
func (r *Report) OutcomeLine() string {
	var parts []string
	for _, o := range Outcomes() {
		n := r.Outcomes[o.String()]
		if n == 0 && o != OK {
			continue
		}
		s := fmt.Sprintf("%s %d", o, n)
		if o == HTTP5xx || o == HTTP4xx || o == HTTP3xx {
			var codes []string
			for _, c := range slices.Sorted(maps.Keys(r.StatusCodes)) {
				code, _ := strconv.Atoi(c)
				if statusOutcome(code) == o {
					codes = append(codes, fmt.Sprintf("%s: %d", c, r.StatusCodes[c]))
				}
			}
			if len(codes) > 0 {
				s += " (" + strings.Join(codes, ", ") + ")"
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func thresholdText(t ThresholdResult) string {
	switch t.Unit {
	case "ms":
		return fmt.Sprintf("%s ≤ %s", Millis(t.Value*1e6), Millis(t.Limit*1e6))
	case "ratio":
		return fmt.Sprintf("%.2f%% ≥ %.2f%% of the target rate", t.Value*100, t.Limit*100)
	default:
		return fmt.Sprintf("%d ≤ %d", int64(t.Value), int64(t.Limit))
	}
}

// versionMix describes how the versions seen changed over the run, as
// segments of rows with the same set of versions: "0s–12s v1, 13s–15s
// v1+v2, 16s–29s v2". Rows without answers are skipped.
func versionMix(tl Timeline, maxSegments int) string {
	type seg struct {
		from, to int64
		set      string
	}
	var segs []seg
	for _, row := range tl.Rows {
		if len(row.Versions) == 0 {
			continue
		}
		keys := slices.Sorted(maps.Keys(row.Versions))
		set := strings.Join(keys, "+")
		end := row.T + row.Seconds - 1
		if n := len(segs); n > 0 && segs[n-1].set == set {
			segs[n-1].to = end
			continue
		}
		segs = append(segs, seg{row.T, end, set})
	}
	if len(segs) == 0 {
		return ""
	}
	var parts []string
	for i, s := range segs {
		if i == maxSegments-1 && len(segs) > maxSegments {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(segs)-i))
			break
		}
		if s.from == s.to {
			parts = append(parts, fmt.Sprintf("%ds %s", s.from, s.set))
		} else {
			parts = append(parts, fmt.Sprintf("%ds–%ds %s", s.from, s.to, s.set))
		}
	}
	return strings.Join(parts, ", ")
}

func fmtRate(r float64) string {
	if r == float64(int64(r)) {
		return strconv.FormatInt(int64(r), 10)
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

func fmtBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
