package loadgen

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Histograms from several recorders merge into the same percentiles as
// one histogram that saw every value.
func TestHistogramMerge(t *testing.T) {
	t.Parallel()
	const top = int64(60e6)
	all := newHist(top, runDigits)
	parts := []*shard{newShard(top), newShard(top), newShard(top)}
	for i := 1; i <= 30000; i++ {
		d := time.Duration(i*i%997+1) * 37 * time.Microsecond
		if i%1000 == 0 {
			d = time.Duration(i) * time.Millisecond / 10 // a few slow ones
		}
		recordMicros(all, d)
		recordMicros(parts[i%3].latency, d)
	}
	merged := newHist(top, runDigits)
	for _, p := range parts {
		merged.Merge(p.latency)
	}
	want, got := percentilesOf(all), percentilesOf(merged)
	if got != want {
		t.Errorf("merged %+v, want %+v", got, want)
	}
	if got.Count != 30000 || got.Max < Millis(2900*time.Millisecond) || got.P50 <= 0 || got.P999 < got.P99 || got.P99 < got.P90 {
		t.Errorf("percentiles %+v", got)
	}
	// Out-of-range values are clamped, not lost.
	h := newHist(top, runDigits)
	recordMicros(h, time.Hour)
	recordMicros(h, 0)
	if h.TotalCount() != 2 {
		t.Errorf("clamped values lost: %d recorded", h.TotalCount())
	}
}

// smallRun is a short run with a mix of outcomes.
func smallRun(t *testing.T, jtl io.Writer) *Report {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		w.Header().Set("X-Version", "v"+strconv.Itoa(1+i/20))
		if i%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, "hello, \"world\"")
	}))
	t.Cleanup(srv.Close)
	g, err := New(Config{
		Targets: []Target{
			{URL: srv.URL + "/a,b", Label: `GET "a,b"`},
			{URL: closedPort(t), Method: "POST", Body: []byte("x")},
		},
		Rate: 200, Duration: 250 * time.Millisecond, JTL: jtl,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Mark(Event{Host: "staging-1", Type: "detach"})
	rep, err := g.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, rep)
	return rep
}

// The JTL file has JMeter 5's default header and one parseable row per
// request.
func TestJTL(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	rep := smallRun(t, &buf)
	const header = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"
	first, _, _ := strings.Cut(buf.String(), "\n")
	if first != header {
		t.Fatalf("header\n%s\nwant\n%s", first, header)
	}
	records, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("JTL is not valid CSV: %v", err)
	}
	rows := records[1:]
	if int64(len(rows)) != rep.Requests.Total {
		t.Fatalf("%d rows, %d requests", len(rows), rep.Requests.Total)
	}
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	var ok, refused, s503 int
	start := rep.Started.UnixMilli()
	for _, r := range rows {
		if len(r) != 17 {
			t.Fatalf("row has %d columns: %q", len(r), r)
		}
		ts, err := strconv.ParseInt(r[col["timeStamp"]], 10, 64)
		if err != nil || ts < start-1 || ts > start+10000 {
			t.Errorf("timeStamp %q, run started at %d", r[col["timeStamp"]], start)
		}
		for _, c := range []string{"elapsed", "bytes", "sentBytes", "grpThreads", "allThreads", "Latency", "IdleTime", "Connect"} {
			if _, err := strconv.ParseInt(r[col[c]], 10, 64); err != nil {
				t.Errorf("%s %q is not a number", c, r[col[c]])
			}
		}
		switch {
		case r[col["responseCode"]] == "200" && r[col["success"]] == "true":
			ok++
			if r[col["label"]] != `GET "a,b"` || r[col["responseMessage"]] != "OK" || r[col["dataType"]] != "text" ||
				!strings.HasPrefix(r[col["threadName"]], "zerodown 1-") || !strings.HasSuffix(r[col["URL"]], "/a,b") {
				t.Errorf("ok row %q", r)
			}
		case r[col["responseCode"]] == "503" && r[col["success"]] == "false":
			s503++
		case r[col["responseCode"]] == "Non HTTP response code: refused" && r[col["success"]] == "false":
			refused++
			if !strings.HasPrefix(r[col["responseMessage"]], "Non HTTP response message: ") {
				t.Errorf("refused row %q", r)
			}
		default:
			t.Errorf("unexpected row %q", r)
		}
	}
	if int64(ok) != rep.Requests.OK || int64(refused) != rep.Outcomes["refused"] || int64(s503) != rep.Outcomes["http_5xx"] {
		t.Errorf("rows: %d ok, %d refused, %d 503; report %v", ok, refused, s503, nonZero(rep.Outcomes))
	}
	if s503 == 0 || refused == 0 {
		t.Errorf("want both failure kinds in the run: %v", nonZero(rep.Outcomes))
	}
}

// The JSON report has the documented, stable shape.
func TestJSONReportSchema(t *testing.T) {
	t.Parallel()
	rep := smallRun(t, nil)
	rep.Evaluate(Thresholds{P99: time.Second, MinRate: 0.5})
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"schema", "mode", "client", "started", "duration_s", "interrupted", "target_rate", "achieved_rate",
		"max_concurrency", "peak_concurrency", "timeout_ms", "max_lag_ms", "targets", "requests", "outcomes", "status_codes",
		"latency", "service", "start_lag", "bytes_received", "bytes_sent", "version_header", "versions", "errors",
		"timeline", "events", "thresholds", "pass"}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sort.Strings(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("top-level keys\n%v\nwant\n%v", keys, wantKeys)
	}
	if doc["schema"] != SchemaVersion || doc["mode"] != "open" {
		t.Errorf("schema %v mode %v", doc["schema"], doc["mode"])
	}
	sub := func(name string, keys ...string) {
		m, ok := doc[name].(map[string]any)
		if !ok {
			t.Errorf("%s is not an object: %v", name, doc[name])
			return
		}
		for _, k := range keys {
			if _, ok := m[k].(float64); !ok {
				t.Errorf("%s.%s is not a number: %v", name, k, m[k])
			}
		}
	}
	sub("requests", "total", "sent", "ok", "failed", "dropped", "retried")
	sub("latency", "count", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "mean_ms")
	sub("outcomes", "ok", "refused", "reset", "eof", "timeout", "http_5xx", "http_4xx", "http_3xx",
		"body_mismatch", "truncated", "dropped", "aborted", "error")
	sub("timeline", "max_rows", "row_seconds")
	tl := doc["timeline"].(map[string]any)
	rows := tl["rows"].([]any)
	row := rows[0].(map[string]any)
	for _, k := range []string{"t", "seconds", "sent", "ok", "failed", "p50_ms", "p99_ms", "max_ms"} {
		if _, ok := row[k].(float64); !ok {
			t.Errorf("timeline row %s: %v", k, row[k])
		}
	}
	th := doc["thresholds"].([]any)
	if len(th) != 4 {
		t.Fatalf("thresholds %v", th)
	}
	for _, x := range th {
		m := x.(map[string]any)
		if _, ok := m["pass"].(bool); !ok || m["name"] == "" || m["unit"] == "" {
			t.Errorf("threshold %v", m)
		}
	}
	ev := doc["events"].([]any)[0].(map[string]any)
	if ev["host"] != "staging-1" || ev["type"] != "detach" {
		t.Errorf("event %v", ev)
	}
	// It decodes back into a Report.
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Requests != rep.Requests || back.Latency != rep.Latency || len(back.Timeline.Rows) != len(rep.Timeline.Rows) {
		t.Errorf("round trip: %+v vs %+v", back.Requests, rep.Requests)
	}
}

// The HTML report needs nothing from the network and has the four charts
// with the events drawn on them.
func TestHTMLReportIsSelfContained(t *testing.T) {
	t.Parallel()
	rep := smallRun(t, nil)
	rep.Events = append(rep.Events, Event{T: 0.1, Host: "staging-2", Type: "rolled_back", Detail: `<script>alert("x")</script>`})
	rep.Evaluate(Thresholds{})
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	external := regexp.MustCompile(`(?i)(src|href|xlink:href)\s*=\s*["']?\s*(https?:|//)|@import|url\(\s*["']?(https?:|//)|<script[^>]*src`)
	if m := external.FindString(page); m != "" {
		t.Errorf("external reference %q", m)
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("event text is not escaped")
	}
	for _, want := range []string{`id="chart-rate"`, `id="chart-failures"`, `id="chart-latency"`, `id="chart-versions"`,
		"<polyline", `class="event"`, "staging-2 rolled_back", "staging-1 detach", "FAIL", "http_5xx", "refused", "</html>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, "<svg"); n != 5 {
		t.Errorf("%d charts, want 4 and the events", n)
	}
}

// The text summary shows every threshold with ✓ or ✗ and its value.
func TestTextSummary(t *testing.T) {
	t.Parallel()
	rep := smallRun(t, nil)
	rep.Evaluate(Thresholds{P99: time.Hour, MinRate: 0.5})
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"✗ max_failed", "✓ max_dropped  0 ≤ 0", "✓ p99", "✓ min_rate", "FAIL: 1 of 4", "http_5xx",
		"503: ", "refused", "versions", "latency", "start lag"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// The timeline never holds more than its bound: past it, rows merge
// pairwise and still cover the whole run, with nothing lost.
func TestTimelineIsBounded(t *testing.T) {
	t.Parallel()
	tl := newTimeline(16)
	var sent int64
	for sec := range int64(1000) {
		r := Row{T: sec, Seconds: 1, Sent: sec, OK: sec, P99: Millis(sec), Versions: map[string]int64{"v" + strconv.FormatInt(sec%40, 10): 1}}
		tl.push(r)
		sent += sec
		if len(tl.rows) > 16 {
			t.Fatalf("second %d: %d rows", sec, len(tl.rows))
		}
	}
	var got, secs int64
	for i, r := range tl.rows {
		got += r.Sent
		secs += r.Seconds
		if r.T != int64(i)*tl.width {
			t.Errorf("row %d starts at %d, width %d", i, r.T, tl.width)
		}
		if len(r.Versions) > maxRowVersions {
			t.Errorf("row %d has %d versions", i, len(r.Versions))
		}
	}
	if got != sent || secs != 1000 || tl.width != 64 {
		t.Errorf("sent %d (want %d), seconds %d, width %d", got, sent, secs, tl.width)
	}
	if last := tl.rows[len(tl.rows)-1]; last.P99 != Millis(999) {
		t.Errorf("merged p99 %d, want the worst (999)", last.P99)
	}
	// Late counts land in the row that covers their second.
	sr := &shardRow{sent: 5, versions: newBoundedCounts(maxRowVersions)}
	sr.outcomes[Reset] = 2
	tl.addLate(130, sr)
	if r := tl.rows[130/64]; r.Failures["reset"] != 2 {
		t.Errorf("late failures not added: %+v", r.Failures)
	}
}

// Lanes take turns in proportion to their weights, interleaved.
func TestLaneCycle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		weights []int
		want    []int
	}{
		{[]int{1}, []int{0}},
		{[]int{1, 1}, []int{0, 1}},
		{[]int{2, 2}, []int{0, 1}},
		{[]int{3, 1}, []int{0, 0, 1, 0}},
		{[]int{1, 2, 1}, []int{1, 0, 2, 1}},
	}
	for _, tc := range tests {
		var lanes []*lane
		for _, w := range tc.weights {
			lanes = append(lanes, &lane{Target: Target{Weight: w}})
		}
		got, err := laneCycle(lanes)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("laneCycle(%v) = %v, %v; want %v", tc.weights, got, err, tc.want)
		}
	}
	big := []*lane{{Target: Target{Weight: 9999}}, {Target: Target{Weight: 10000}}}
	if _, err := laneCycle(big); err == nil {
		t.Error("a 19999-step cycle was accepted")
	}
}

// The body check finds a substring across read boundaries.
func TestMatcher(t *testing.T) {
	t.Parallel()
	body := []byte("the quick brown fox jumps over the lazy dog")
	for _, sub := range []string{"fox", "the", "dog", "t", "quick brown fox", "cat", "dogs", string(body)} {
		for split := 1; split <= len(body); split++ {
			var m matcher
			m.reset(&lane{Target: Target{ExpectBody: sub}})
			for i := 0; i < len(body); i += split {
				m.feed(body[i:min(i+split, len(body))])
			}
			if want := bytes.Contains(body, []byte(sub)); m.ok() != want {
				t.Errorf("sub %q in reads of %d: %v, want %v", sub, split, m.ok(), want)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ok := []Target{{URL: "http://127.0.0.1:1/"}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no mode", Config{Targets: ok}, "set a rate"},
		{"both modes", Config{Targets: ok, Rate: 1, Connections: 1}, "not both"},
		{"negative rate", Config{Targets: ok, Rate: -1}, "rate must be"},
		{"no targets", Config{Rate: 1}, "no target"},
		{"relative URL", Config{Targets: []Target{{URL: "/x"}}, Rate: 1}, "absolute"},
		{"ftp", Config{Targets: []Target{{URL: "ftp://x/"}}, Rate: 1}, "absolute"},
		{"bad method", Config{Targets: []Target{{URL: "http://x/", Method: "GE T"}}, Rate: 1}, "method"},
		{"bad header", Config{Targets: []Target{{URL: "http://x/", Header: http.Header{"A": {"x\ny"}}}}, Rate: 1}, "control"},
		{"raw https", Config{Targets: []Target{{URL: "https://x/"}}, Connections: 1, Client: ClientRaw}, "plain http"},
		{"no request", Config{Targets: ok, Rate: 0.5, Duration: time.Second}, "sends no request"},
		{"bad client", Config{Targets: ok, Rate: 1, Client: "curl"}, "client"},
		{"bad version header", Config{Targets: ok, Rate: 1, VersionHeader: "a b"}, "version header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
