package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// rolledBackRun is a deploy to three hosts that was rolled back when the
// third one failed its health check: no request failed, so the load
// thresholds held, and the report must still not say PASS. Its events are
// many and close together, its last second is partial, and the version
// mix goes from v2.2.9 to v2.3.0 and back.
func rolledBackRun() *Report {
	started := time.Date(2025, 6, 11, 14, 2, 3, 0, time.UTC)
	rep := &Report{
		Schema: SchemaVersion, Mode: modeOpen, Client: string(ClientGo), Started: started,
		Duration: 12.4, TargetRate: 200, AchievedRate: 200, MaxConcurrency: 1000, PeakConcurrency: 4,
		Timeout: Millis(10 * time.Second), MaxLag: Millis(time.Second),
		Targets:       []TargetInfo{{Label: "GET http://10.0.0.10/", Method: "GET", URL: "http://10.0.0.10/", Weight: 1}},
		Outcomes:      map[string]int64{},
		StatusCodes:   map[string]int64{"200": 2480},
		VersionHeader: DefaultVersionHeader,
		Timeline:      Timeline{MaxRows: DefaultTimelineRows, RowSeconds: 1},
		Run: &RunInfo{ID: "r-20250611-0042", Environment: "production", Version: "v2.3.0", PreviousVersion: "v2.2.9",
			Outcome: "rolled_back", Reason: "prod-3: health check failed: GET /healthz: 500 after 30s"},
	}
	var old, neu int64
	for sec := int64(0); sec <= 12; sec++ {
		sent := int64(200)
		if sec == 12 {
			sent = 80 // 0.4s of sending
		}
		row := Row{T: sec, Seconds: 1, Sent: sent, OK: sent, P50: Millis(2 * time.Millisecond),
			P99: Millis(time.Duration(6+sec%4) * time.Millisecond), Max: Millis(time.Duration(9+3*(sec%3)) * time.Millisecond)}
		// v2.3.0 serves one host's share from 3s to 8s, two hosts' from 5s.
		n := int64(0)
		switch {
		case sec >= 3 && sec < 5:
			n = sent / 3
		case sec >= 5 && sec < 8:
			n = 2 * sent / 3
		}
		row.Versions = map[string]int64{"v2.2.9": sent - n}
		if n > 0 {
			row.Versions["v2.3.0"] = n
		}
		old += sent - n
		neu += n
		rep.Timeline.Rows = append(rep.Timeline.Rows, row)
		rep.Requests.Total += sent
		rep.Requests.Sent += sent
		rep.Requests.OK += sent
	}
	rep.Outcomes["ok"] = rep.Requests.OK
	rep.Versions = []VersionCount{{"v2.2.9", old}, {"v2.3.0", neu}}
	rep.Latency = Percentiles{Count: rep.Requests.Total, P50: Millis(2 * time.Millisecond), P90: Millis(4 * time.Millisecond),
		P99: Millis(8 * time.Millisecond), P999: Millis(11 * time.Millisecond), Max: Millis(15 * time.Millisecond), Mean: Millis(2 * time.Millisecond)}
	rep.Service = rep.Latency
	rep.StartLag = Percentiles{Count: rep.Requests.Total, P50: Millis(300 * time.Microsecond), P90: Millis(600 * time.Microsecond),
		P99: Millis(time.Millisecond), P999: Millis(1500 * time.Microsecond), Max: Millis(2 * time.Millisecond), Mean: Millis(350 * time.Microsecond)}

	// 40 events in 10 seconds, some at the very same millisecond.
	mark := func(t float64, host, typ, detail string) {
		rep.Events = append(rep.Events, Event{Time: started.Add(time.Duration(t * float64(time.Second))), T: t, Host: host, Type: typ, Detail: detail})
	}
	mark(0.05, "", "stage", "update prod-1")
	step := func(t0 float64, host string) float64 {
		for _, s := range []string{"detaching", "draining", "drained", "deploying", "activated", "attaching", "checking-health", "healthy"} {
			mark(t0, host, s, "")
			t0 += 0.09
		}
		return t0
	}
	t := step(0.1, "prod-1")
	mark(t, "", "stage", "update prod-2")
	t = step(t+0.3, "prod-2")
	mark(t, "", "stage", "update prod-3")
	for _, s := range []string{"detaching", "draining", "drained", "deploying", "activated", "attaching", "checking-health"} {
		mark(t+0.5, "prod-3", s, "")
		t += 0.02
	}
	mark(8.0, "prod-3", "failed", "health check failed: GET /healthz: 500 after 30s")
	mark(8.0, "", "failed", "prod-3: health check failed")
	for i, h := range []string{"prod-3", "prod-2", "prod-1"} {
		t0 := 8.2 + float64(i)*0.55
		for _, s := range []string{"rolling-back", "detaching", "drained", "activated", "healthy"} {
			mark(t0, h, s, "back to v2.2.9")
			t0 += 0.1
		}
	}
	rep.Evaluate(Thresholds{})
	return rep
}

// versionlessRun is a plain load run against an app that sends no version
// header, with a few failures in its last, partial second.
func versionlessRun() *Report {
	rep := rolledBackRun()
	rep.Run, rep.Events = nil, nil
	rep.Versions = []VersionCount{{NoVersion, rep.Requests.OK}}
	for i := range rep.Timeline.Rows {
		row := &rep.Timeline.Rows[i]
		row.Versions = map[string]int64{NoVersion: row.OK}
	}
	last := &rep.Timeline.Rows[len(rep.Timeline.Rows)-1]
	last.OK -= 20
	last.Failed = 20
	last.Failures = map[string]int64{"http_5xx": 20}
	rep.Requests.OK -= 20
	rep.Requests.Failed = 20
	rep.Outcomes["ok"] -= 20
	rep.Outcomes["http_5xx"] = 20
	rep.StatusCodes["503"] = 20
	rep.Evaluate(Thresholds{})
	return rep
}

// A rolled-back run never gets a PASS; a plain load run gets PASS or FAIL
// from its thresholds alone.
func TestHTMLVerdict(t *testing.T) {
	t.Parallel()
	pass := []ThresholdResult{{Name: "max_failed", Unit: "requests", Pass: true}}
	fail := []ThresholdResult{{Name: "max_failed", Limit: 0, Value: 3, Unit: "requests", Pass: false}}
	for _, c := range []struct {
		outcome string
		noRun   bool
		th      []ThresholdResult
		pass    bool
		badge   string
		class   string
	}{
		{noRun: true, th: pass, pass: true, badge: "PASS", class: "pass"},
		{noRun: true, th: fail, badge: "FAIL", class: "fail"},
		{noRun: true},
		{outcome: "", th: pass, pass: true, badge: "PASS", class: "pass"},
		{outcome: "succeeded", th: pass, pass: true, badge: "PASS", class: "pass"},
		{outcome: "succeeded", th: fail, badge: "FAIL", class: "fail"},
		{outcome: "succeeded", badge: "SUCCEEDED", class: "unverified"},
		{outcome: "rolled_back", th: pass, pass: true, badge: "ROLLED BACK", class: "rolled-back"},
		{outcome: "rolled_back", th: fail, badge: "ROLLED BACK", class: "rolled-back"},
		{outcome: "failed", th: pass, pass: true, badge: "FAILED", class: "fail"},
		{outcome: "needs_attention", th: pass, pass: true, badge: "NEEDS ATTENTION", class: "attention"},
		{outcome: "aborted", th: pass, pass: true, badge: "ABORTED", class: "other"},
	} {
		rep := &Report{Thresholds: c.th, Pass: c.pass, Requests: Requests{Total: 100, Failed: 3}}
		if !c.noRun {
			rep.Run = &RunInfo{ID: "r1", Outcome: c.outcome, Reason: "prod-3: unhealthy\nmore lines"}
		}
		v := rep.verdict()
		if v.Badge != c.badge || v.Class != c.class {
			t.Errorf("run %v outcome %q pass %v: badge %q (%s), want %q (%s)", !c.noRun, c.outcome, c.pass, v.Badge, v.Class, c.badge, c.class)
		}
		if c.outcome == "rolled_back" && !strings.Contains(v.Why, "rolled back: prod-3: unhealthy.") {
			t.Errorf("why %q lacks the reason's first line", v.Why)
		}
		if len(c.th) > 0 && !c.pass && !strings.Contains(v.Why, "max_failed 3, limit 0") {
			t.Errorf("why %q does not name the threshold that failed", v.Why)
		}
	}
}

// The run's identity is in the JSON report only when set, and reads back.
func TestJSONReportRun(t *testing.T) {
	t.Parallel()
	rep := rolledBackRun()
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Run == nil || *back.Run != *rep.Run {
		t.Errorf("run %+v, want %+v", back.Run, rep.Run)
	}
	if !bytes.Contains(data, []byte(`"run":{"id":"r-20250611-0042","environment":"production","version":"v2.3.0","previous_version":"v2.2.9","outcome":"rolled_back"`)) {
		t.Errorf("JSON lacks the run: %.300s", data)
	}
	rep.Run = nil
	data, _ = json.Marshal(rep)
	if bytes.Contains(data, []byte(`"run"`)) {
		t.Error("a report without a run has a run field")
	}
}

// The last second of sending counts over the part of it that was sent in;
// a sliver too short for a steady rate joins the second before it; rows
// after sending ended hold answers only and draw no rate.
func TestPartialSecondIsARate(t *testing.T) {
	t.Parallel()
	rows := func(sent ...int64) []Row {
		var out []Row
		for i, n := range sent {
			out = append(out, Row{T: int64(i), Seconds: 1, Sent: n, OK: n})
		}
		return out
	}
	for _, c := range []struct {
		duration float64
		rows     []Row
		rates    []float64 // sent per second of each drawn span
		partial  string    // the partial span's name
	}{
		{10.4, rows(200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 80), []float64{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}, "10s–10.4s"},
		{2.1, rows(200, 200, 20), []float64{200, 200}, "1s–2.1s"},
		{3, rows(200, 200, 200, 0), []float64{200, 200, 200}, ""},
		{0.25, rows(50), []float64{200}, "0s–0.25s"},
	} {
		c.rows[len(c.rows)-1].OK += 3 // answers after sending ended
		rep := &Report{Duration: c.duration, TargetRate: 200, Timeline: Timeline{Rows: c.rows, RowSeconds: 1}}
		cd := newChartData(rep)
		var got []float64
		partial := ""
		for _, p := range cd.ratePoints(func(s span) int64 { return s.sent }) {
			got = append(got, math.Round(p.v))
		}
		for _, s := range cd.spans {
			if s.partial {
				partial = s.name()
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.rates) || partial != c.partial {
			t.Errorf("duration %v: rates %v partial %q, want %v %q", c.duration, got, partial, c.rates, c.partial)
		}
		var b strings.Builder
		if err := rep.WriteHTML(&b); err != nil {
			t.Fatal(err)
		}
		if c.partial != "" && !strings.Contains(b.String(), `id="axis-note"`) {
			t.Errorf("duration %v: no note on the partial second", c.duration)
		}
	}
}

// Event labels are laid out so that none overlaps another, even when many
// events share one instant.
func TestEventLabelsDoNotOverlap(t *testing.T) {
	t.Parallel()
	rep := rolledBackRun()
	for i := range 30 { // a burst on one host at one instant
		rep.Events = append(rep.Events, Event{T: 4, Host: "prod-9", Type: "info", Detail: strconv.Itoa(i)})
	}
	lanes := newChartData(rep).layoutEvents()
	shown := 0
	for _, l := range lanes {
		for i, a := range l.labels {
			if !a.visible {
				continue
			}
			shown++
			if a.cx-a.w/2 < marginL || a.cx+a.w/2 > marginL+plotW {
				t.Errorf("label %d sticks out of the plot", a.n)
			}
			for _, b := range l.labels[i+1:] {
				if b.visible && a.row == b.row && a.cx+a.w/2+evGap > b.cx-b.w/2 && b.cx+b.w/2+evGap > a.cx-a.w/2 {
					t.Errorf("labels %d and %d overlap in lane %s", a.n, b.n, l.name)
				}
			}
		}
		if l.rows > evMaxRows {
			t.Errorf("lane %s has %d rows", l.name, l.rows)
		}
	}
	if shown == len(rep.Events) || shown < len(rep.Events)-30 {
		t.Errorf("%d of %d labels shown: the burst should lose some, nothing else", shown, len(rep.Events))
	}
}

// chromium finds a Chromium or Chrome to run the page in.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const hint = "no chromium on this machine; install the Debian package chromium (apt-get install chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(hint + ": CI is set, so the HTML report must be checked in a browser")
	}
	t.Skip(hint)
	return ""
}

// labelBox is an element's box on the rendered page.
type labelBox struct {
	N                        string
	Left, Top, Right, Bottom float64
}

// pageFacts is what the browser test reads from a rendered report.
type pageFacts struct {
	Title, Badge, BadgeColor, Run, Why, VersionNote, AxisNote string
	Labels                                                    []labelBox
	Lanes                                                     []labelBox
	SentYs                                                    []float64
	Width                                                     float64
}

const readPage = `(() => {
	const text = sel => { const e = document.querySelector(sel); return e ? e.textContent : ""; };
	const box = e => { const b = e.getBoundingClientRect(); return {N: (e.querySelector("text") || e).textContent, Left: b.left, Top: b.top, Right: b.right, Bottom: b.bottom}; };
	const badge = document.querySelector("#verdict");
	const sent = document.querySelector('#chart-rate polyline[data-series="sent/s"]');
	return {
		Title: document.title,
		Badge: badge ? badge.textContent : "",
		BadgeColor: badge ? getComputedStyle(badge).backgroundColor : "",
		Run: text("#run"), Why: text("#why"), VersionNote: text("#version-note"), AxisNote: text("#axis-note"),
		Labels: [...document.querySelectorAll("#chart-events .event-label")].map(box),
		Lanes: [...document.querySelectorAll("#chart-events text.lane")].map(box),
		SentYs: sent ? sent.getAttribute("points").trim().split(/\s+/).map(p => +p.split(",")[1]) : [],
		Width: document.documentElement.scrollWidth,
	};
})()`

// The reports are opened in a real headless Chromium: the title and the
// heading name the run and its outcome, a rolled-back run does not say
// PASS, no two event labels overlap on the rendered page, the partial last
// second is drawn at the rate of the seconds before it, and an app without
// a version header is called out. Each page is saved as a screenshot
// beside the report; set ZERODOWN_HTML_OUT to a directory to keep them.
func TestHTMLReportInChromium(t *testing.T) {
	exe := chromium(t)
	dir := t.TempDir()
	if d := os.Getenv("ZERODOWN_HTML_OUT"); d != "" {
		dir = d
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// A real, passing run of the generator: 1.5s, so its last second is
	// half a second long.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", "v1")
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	plain := run(t, Config{Targets: []Target{{URL: srv.URL}}, Rate: 100, Duration: 1500 * time.Millisecond})
	if !plain.Evaluate(Thresholds{}) {
		t.Fatalf("the plain run failed: %+v", plain.Requests)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1100, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}

	open := func(t *testing.T, name string, rep *Report) pageFacts {
		t.Helper()
		path := filepath.Join(dir, name+".html")
		var b bytes.Buffer
		if err := rep.WriteHTML(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		tab, closeTab := chromedp.NewContext(browser)
		defer closeTab()
		if err := chromedp.Do(tab); err != nil {
			t.Fatal(err)
		}
		tctx, cancel := context.WithTimeout(tab, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.Navigate("file://"+path)); err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		facts, err := chromedp.Run(tctx, chromedp.Evaluate[pageFacts](readPage))
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", path, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s and its screenshot", name, path)
		if facts.Width > 1100 {
			t.Errorf("the page is %.0fpx wide in a 1100px window", facts.Width)
		}
		return facts
	}
	flat := func(t *testing.T, ys []float64) {
		t.Helper()
		if len(ys) < 2 {
			t.Fatalf("sent/s has %d points", len(ys))
		}
		for i, y := range ys {
			if math.Abs(y-ys[0]) > 6 { // px: a few percent of the chart's height
				t.Errorf("sent/s point %d at y=%.1f, the first at %.1f: a constant rate must draw a flat line, last second included (%v)", i, y, ys[0], ys)
			}
		}
	}

	t.Run("rolled back", func(t *testing.T) {
		rep := rolledBackRun()
		if !rep.Pass {
			t.Fatal("the thresholds should hold: this checks that the outcome still wins")
		}
		f := open(t, "rolled-back", rep)
		for _, want := range []string{"r-20250611-0042", "production", "v2.3.0", "rolled back"} {
			if !strings.Contains(f.Title, want) {
				t.Errorf("title %q lacks %q", f.Title, want)
			}
			if !strings.Contains(f.Run+f.Title, want) {
				t.Errorf("heading %q lacks %q", f.Run, want)
			}
		}
		if f.Badge != "ROLLED BACK" || strings.Contains(f.Title, "PASS") {
			t.Errorf("badge %q, title %q: want ROLLED BACK and no PASS", f.Badge, f.Title)
		}
		if f.BadgeColor == "rgb(44, 160, 44)" {
			t.Errorf("the ROLLED BACK badge is the green of PASS")
		}
		if !strings.Contains(f.Why, "health check failed") {
			t.Errorf("why %q does not say why", f.Why)
		}
		if len(f.Labels) != len(rep.Events) {
			t.Errorf("%d event labels on the page, %d events", len(f.Labels), len(rep.Events))
		}
		for i, a := range f.Labels {
			if a.Right-a.Left < 5 || a.Bottom-a.Top < 5 {
				t.Errorf("label %s is %.1f×%.1fpx", a.N, a.Right-a.Left, a.Bottom-a.Top)
			}
			for _, b := range append(f.Labels[i+1:], f.Lanes...) {
				if a.Left < b.Right && b.Left < a.Right && a.Top < b.Bottom && b.Top < a.Bottom {
					t.Errorf("label %s %+v overlaps %s %+v", a.N, a, b.N, b)
				}
			}
		}
		flat(t, f.SentYs)
		if !strings.Contains(f.AxisNote, "12s–12.4s") {
			t.Errorf("axis note %q does not explain the partial second", f.AxisNote)
		}
	})

	t.Run("plain load run", func(t *testing.T) {
		f := open(t, "plain", plain)
		if f.Badge != "PASS" || !strings.HasPrefix(f.Title, "PASS") {
			t.Errorf("badge %q title %q, want PASS", f.Badge, f.Title)
		}
		if f.Run != "" || len(f.Labels) != 0 || f.VersionNote != "" {
			t.Errorf("run %q, %d labels, version note %q: a plain run has none", f.Run, len(f.Labels), f.VersionNote)
		}
		flat(t, f.SentYs)
	})

	t.Run("no version header", func(t *testing.T) {
		f := open(t, "versionless", versionlessRun())
		if !strings.Contains(f.VersionNote, "no X-Version header") || !strings.Contains(f.VersionNote, "cannot be told apart") {
			t.Errorf("version note %q", f.VersionNote)
		}
		if f.Badge != "FAIL" {
			t.Errorf("badge %q, want FAIL", f.Badge)
		}
	})
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the browser checks did not finish in 40s")
	}
}
