package loadgen

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// SchemaVersion identifies the JSON report format (docs/load.md). Fields
// are only ever added within one schema version.
const SchemaVersion = "zerodown.load/v1"

// Millis is a duration that appears in JSON as a number of milliseconds
// (with microsecond precision).
type Millis time.Duration

// Duration returns m as a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(m) }

// MarshalJSON writes milliseconds with up to three decimals.
func (m Millis) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, math.Round(float64(m)/1e3)/1e3, 'f', -1, 64), nil
}

// UnmarshalJSON reads milliseconds.
func (m *Millis) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("milliseconds: %w", err)
	}
	*m = Millis(math.Round(f * 1e6))
	return nil
}

// String formats like time.Duration, rounded for reading.
func (m Millis) String() string { return fmtDuration(time.Duration(m)) }

// Percentiles summarizes a latency histogram.
type Percentiles struct {
	Count int64  `json:"count"`
	P50   Millis `json:"p50_ms"`
	P90   Millis `json:"p90_ms"`
	P99   Millis `json:"p99_ms"`
	P999  Millis `json:"p99_9_ms"`
	Max   Millis `json:"max_ms"`
	Mean  Millis `json:"mean_ms"`
}

func percentilesOf(h *hdr.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	us := func(v int64) Millis { return Millis(time.Duration(v) * time.Microsecond) }
	return Percentiles{
		Count: h.TotalCount(),
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
		Mean:  Millis(time.Duration(math.Round(h.Mean())) * time.Microsecond),
	}
}

// Requests counts requests by fate.
type Requests struct {
	// Total is every request that was due (open model) or started (closed
	// loop); each has exactly one outcome, so Total = OK + Failed.
	Total int64 `json:"total"`
	// Sent is the requests that started (Total minus dropped and aborted
	// before they started).
	Sent int64 `json:"sent"`
	OK   int64 `json:"ok"`
	// Failed is every outcome but ok, dropped included.
	Failed  int64 `json:"failed"`
	Dropped int64 `json:"dropped"`
	// Retried counts requests that Go's client silently sent again on a new
	// connection after a reused one failed; their outcome is the retry's.
	Retried int64 `json:"retried"`
}

// TargetInfo describes a lane in the report.
type TargetInfo struct {
	Label  string `json:"label"`
	Method string `json:"method"`
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// VersionCount is how many answers carried one version.
type VersionCount struct {
	Version string `json:"version"`
	Count   int64  `json:"count"`
}

// ErrorSample is one failure message, for diagnosis.
type ErrorSample struct {
	Outcome string  `json:"outcome"`
	T       float64 `json:"t"` // seconds since the start
	Message string  `json:"message"`
}

// Row is one step of the timeline: normally one second. When a run
// outlasts Config.TimelineRows, adjacent rows are merged pairwise, so a row
// may cover 2, 4, 8... seconds; its percentiles are then the worst of its
// seconds'.
type Row struct {
	// T is the row's start in whole seconds since the run started.
	T int64 `json:"t"`
	// Seconds is how many seconds the row covers.
	Seconds int64 `json:"seconds"`
	// Sent counts requests that started in the row; OK and Failed count
	// outcomes known in it (dropped ones when they were found late).
	Sent   int64 `json:"sent"`
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
	// Failures counts failed requests by outcome name.
	Failures map[string]int64 `json:"failures,omitempty"`
	// Latency percentiles (from due time) of the requests that ended in
	// the row.
	P50 Millis `json:"p50_ms"`
	P99 Millis `json:"p99_ms"`
	Max Millis `json:"max_ms"`
	// Versions counts answers by their version header.
	Versions map[string]int64 `json:"versions,omitempty"`
}

// Timeline is the bounded per-second history.
type Timeline struct {
	// MaxRows is the bound; RowSeconds the seconds each row covers (a
	// power of two; 1 until the run outlasts MaxRows seconds).
	MaxRows    int   `json:"max_rows"`
	RowSeconds int64 `json:"row_seconds"`
	Rows       []Row `json:"rows"`
}

// Event is something that happened during the run, such as a rollout step,
// shown on the time axis of the HTML report.
type Event struct {
	Time time.Time `json:"time"`
	// T is seconds since the run started (filled by Mark).
	T float64 `json:"t"`
	// Host the event is about, if any.
	Host string `json:"host,omitempty"`
	// Type such as detach, drained, activated, attached, rolled_back.
	Type   string `json:"type"`
	Detail string `json:"detail,omitempty"`
}

// Thresholds are pass/fail limits on a report. The zero value allows no
// failed and no dropped request and sets no latency or rate limit.
type Thresholds struct {
	// MaxFailed is the most failed requests (dropped included) allowed;
	// negative: no limit.
	MaxFailed int64
	// MaxDropped is the most dropped requests allowed; negative: no limit.
	MaxDropped int64
	// P99 is the highest p99 latency allowed; 0: no limit.
	P99 time.Duration
	// MinRate is the lowest achieved/target rate allowed (0.99 = 99%); 0:
	// no limit. Open model only.
	MinRate float64
}

// ThresholdResult is one evaluated threshold.
type ThresholdResult struct {
	// Name: max_failed, max_dropped, p99, min_rate.
	Name string `json:"name"`
	// Limit and Value in Unit: "requests", "ms" or "ratio".
	Limit float64 `json:"limit"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Pass  bool    `json:"pass"`
}

// RunInfo says which deploy run a report belongs to and how that run
// ended, so that the HTML report cannot show a green PASS for a deploy that
// was rolled back. A plain load run has none.
type RunInfo struct {
	// ID is the run's id.
	ID string `json:"id"`
	// Environment the run deployed to.
	Environment string `json:"environment,omitempty"`
	// Version is the release the run deployed; PreviousVersion what the
	// environment served before, when known.
	Version         string `json:"version,omitempty"`
	PreviousVersion string `json:"previous_version,omitempty"`
	// Outcome is the run's final status as the deploy engine names it:
	// "succeeded", "rolled_back", "failed" or "needs_attention"; empty
	// while unknown.
	Outcome string `json:"outcome,omitempty"`
	// Reason is why the run did not succeed (its first failure), if it
	// did not.
	Reason string `json:"reason,omitempty"`
}

// Report is the result of a run. Its JSON form is documented in
// docs/load.md and versioned by Schema.
type Report struct {
	Schema string `json:"schema"`
	// Run is the deploy run the load was fired during; nil for a plain
	// load run. The caller fills it in before writing the reports.
	Run *RunInfo `json:"run,omitempty"`
	// Mode is "open" (constant rate) or "closed" (--max).
	Mode   string `json:"mode"`
	Client string `json:"client"`
	// Started is when request 0 was due.
	Started time.Time `json:"started"`
	// Duration is the issuing window in seconds: until the last request was
	// due (open) or the run was stopped (closed), or the last request
	// started if that was later.
	Duration float64 `json:"duration_s"`
	// Interrupted is set when the run was stopped before its duration.
	Interrupted bool `json:"interrupted"`
	// TargetRate in requests per second (0 in closed mode); AchievedRate is
	// Sent / Duration (open) or Total / time to the last answer (closed).
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// Connections is the closed loop's worker count; MaxConcurrency the open
	// model's cap; PeakConcurrency the most requests in flight at once.
	Connections     int `json:"connections,omitempty"`
	MaxConcurrency  int `json:"max_concurrency,omitempty"`
	PeakConcurrency int `json:"peak_concurrency"`
	// Timeout and MaxLag as configured.
	Timeout Millis `json:"timeout_ms"`
	MaxLag  Millis `json:"max_lag_ms,omitempty"`

	Targets  []TargetInfo `json:"targets"`
	Requests Requests     `json:"requests"`
	// Outcomes has every outcome name, zero or not.
	Outcomes map[string]int64 `json:"outcomes"`
	// StatusCodes counts answers by status code (as a string key).
	StatusCodes map[string]int64 `json:"status_codes"`
	// Latency is measured from the due time (no coordinated omission);
	// Service from the actual start; StartLag is start minus due.
	Latency  Percentiles `json:"latency"`
	Service  Percentiles `json:"service"`
	StartLag Percentiles `json:"start_lag"`

	BytesReceived int64 `json:"bytes_received"`
	BytesSent     int64 `json:"bytes_sent"`

	// VersionHeader is the header counted; Versions its values in order of
	// first appearance ("(none)" when absent).
	VersionHeader string         `json:"version_header"`
	Versions      []VersionCount `json:"versions"`

	Errors   []ErrorSample `json:"errors"`
	Timeline Timeline      `json:"timeline"`
	Events   []Event       `json:"events"`
	// EventsDropped counts events beyond the bound of 10000.
	EventsDropped int `json:"events_dropped,omitempty"`

	// Thresholds and Pass are filled by Evaluate. Pass is the thresholds'
	// verdict alone: with a Run, its Outcome says how the deploy ended.
	Thresholds []ThresholdResult `json:"thresholds"`
	Pass       bool              `json:"pass"`
}

// Failed is the number of failed requests (dropped included).
func (r *Report) Failed() int64 { return r.Requests.Failed }

// Evaluate checks the thresholds, records them in r.Thresholds and r.Pass
// and returns r.Pass. MinRate is skipped in closed mode.
func (r *Report) Evaluate(t Thresholds) bool {
	r.Thresholds = r.Thresholds[:0]
	add := func(name string, limit, value float64, unit string, pass bool) {
		r.Thresholds = append(r.Thresholds, ThresholdResult{Name: name, Limit: limit, Value: value, Unit: unit, Pass: pass})
	}
	if t.MaxFailed >= 0 {
		add("max_failed", float64(t.MaxFailed), float64(r.Requests.Failed), "requests", r.Requests.Failed <= t.MaxFailed)
	}
	if t.MaxDropped >= 0 {
		add("max_dropped", float64(t.MaxDropped), float64(r.Requests.Dropped), "requests", r.Requests.Dropped <= t.MaxDropped)
	}
	if t.P99 > 0 {
		add("p99", msFloat(t.P99), msFloat(r.Latency.P99.Duration()), "ms", r.Latency.P99.Duration() <= t.P99)
	}
	if t.MinRate > 0 && r.Mode == modeOpen {
		ratio := 0.0
		if r.TargetRate > 0 {
			ratio = r.AchievedRate / r.TargetRate
		}
		add("min_rate", t.MinRate, math.Round(ratio*1e4)/1e4, "ratio", ratio >= t.MinRate)
	}
	r.Pass = true
	for _, th := range r.Thresholds {
		r.Pass = r.Pass && th.Pass
	}
	return r.Pass
}

func msFloat(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// fmtDuration rounds a duration for people: 3 significant digits.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < 100*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}
