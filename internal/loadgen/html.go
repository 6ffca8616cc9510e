package loadgen

import (
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The HTML report is one self-contained file: inline CSS and inline SVG
// charts, no script, no external resource. Hovering a point, bar or event
// shows its numbers (SVG <title>).

const (
	chartW   = 960
	chartH   = 200
	marginL  = 64
	marginR  = 16
	marginT  = 12
	marginB  = 28
	plotW    = chartW - marginL - marginR
	plotH    = chartH - marginT - marginB
	maxLabel = 80
)

var versionColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"}

var outcomeColors = map[Outcome]string{
	Refused: "#d62728", Reset: "#9467bd", EOF: "#8c564b", Timeout: "#ff7f0e",
	HTTP5xx: "#e41a1c", HTTP4xx: "#fdae61", HTTP3xx: "#abd9e9", BodyMismatch: "#e377c2",
	Truncated: "#7f7f7f", Dropped: "#000000", Aborted: "#bcbd22", Error: "#17becf",
}

// eventColor colors rollout events by type.
func eventColor(typ string) string {
	t := strings.ToLower(typ)
	switch {
	case strings.Contains(t, "roll") || strings.Contains(t, "fail") || strings.Contains(t, "abort") ||
		strings.Contains(t, "left") || strings.Contains(t, "strand"):
		return "#d62728"
	case strings.Contains(t, "detach") || strings.Contains(t, "drain"):
		return "#ff7f0e"
	case strings.Contains(t, "attach") || strings.Contains(t, "healthy"):
		return "#2ca02c"
	case strings.Contains(t, "deploy") || strings.Contains(t, "activat"):
		return "#1f77b4"
	}
	return "#7f7f7f"
}

// WriteHTML writes the report as a self-contained HTML page: which run it
// is about and how that ended (Run), the verdict, the summary, and charts of
// the request rate, failures, latency and version mix over time, under a
// chart of the run's events (Mark) on the same time axis.
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	esc := html.EscapeString
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	v := r.verdict()
	p(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h1 code{font-size:20px}h2{font-size:17px;margin:28px 0 6px}
.sub{color:#666}.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:600;color:#fff;margin-left:8px;vertical-align:2px;font-size:16px}
.pass{background:#2ca02c}.fail{background:#d62728}.rolled-back{background:#6a3d9a}.attention{background:#e6550d}
.unverified{background:#7f7f7f}.other{background:#444}
.run{font-size:15px;margin:2px 0}.run b{font-weight:600}.why{margin:6px 0;font-size:15px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{font-weight:600;background:#fafafa}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:target{background:#fff3bf}
.chart{margin:4px 0 2px}.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;border-radius:2px}
svg text{font:11px system-ui,sans-serif;fill:#555}
.ok{color:#2ca02c}.bad{color:#d62728}code{font-size:12px}.note{color:#8a4b00}
</style></head><body>
`, esc(r.pageTitle(v)))
	switch {
	case r.Run != nil && r.Run.ID != "":
		p(`<h1>zerodown deploy run <code>%s</code>`, esc(r.Run.ID))
	case r.Run != nil:
		p(`<h1>zerodown deploy run`)
	default:
		p(`<h1>zerodown load report`)
	}
	if v.Badge != "" {
		p(`<span id="verdict" class="verdict %s">%s</span>`, v.Class, esc(v.Badge))
	}
	p("</h1>\n")
	if r.Run != nil {
		var parts []string
		if r.Run.Environment != "" {
			parts = append(parts, "environment <b>"+esc(r.Run.Environment)+"</b>")
		}
		if r.Run.Version != "" {
			s := "version <b>" + esc(r.Run.Version) + "</b>"
			if r.Run.PreviousVersion != "" {
				s += " (from " + esc(r.Run.PreviousVersion) + ")"
			}
			parts = append(parts, s)
		}
		outcome := "unknown"
		if r.Run.Outcome != "" {
			outcome = outcomeWords(r.Run.Outcome)
		}
		parts = append(parts, "outcome <b>"+esc(outcome)+"</b>")
		p(`<div class="run" id="run">%s</div>`+"\n", strings.Join(parts, " · "))
	}
	p(`<p class="why" id="why">%s</p>`+"\n", esc(v.Why))
	mode := fmt.Sprintf("open model at %s requests/s", fmtRate(r.TargetRate))
	if r.Mode == modeClosed {
		mode = fmt.Sprintf("closed loop with %d connections", r.Connections)
	}
	p(`<div class="sub">load: %s, %s, %s client, started %s`, esc(mode), esc(fmtDuration(time.Duration(r.Duration*float64(time.Second)))),
		esc(r.Client), esc(r.Started.Format("2006-01-02 15:04:05 MST")))
	if r.Interrupted {
		p(", stopped early")
	}
	p("</div>\n")

	// Summary.
	q := r.Requests
	p("<h2>Summary</h2>\n<table>\n")
	row := func(k, v string) { p("<tr><th>%s</th><td>%s</td></tr>\n", esc(k), v) }
	failClass := "ok"
	if q.Failed > 0 {
		failClass = "bad"
	}
	row("requests", fmt.Sprintf(`%d total, %d sent, %d ok, <b class="%s">%d failed</b> (%d dropped), %d retried by the Go client`,
		q.Total, q.Sent, q.OK, failClass, q.Failed, q.Dropped, q.Retried))
	if r.Mode == modeClosed {
		row("throughput", esc(fmtRate(r.AchievedRate)+"/s"))
	} else {
		row("rate", esc(fmt.Sprintf("%s/s target, %s/s achieved", fmtRate(r.TargetRate), fmtRate(r.AchievedRate))))
	}
	perc := func(x Percentiles) string {
		if x.Count == 0 {
			return "–"
		}
		return esc(fmt.Sprintf("p50 %s · p90 %s · p99 %s · p99.9 %s · max %s", x.P50, x.P90, x.P99, x.P999, x.Max))
	}
	row("latency (from due time)", perc(r.Latency))
	if r.Mode == modeOpen {
		row("service time (from start)", perc(r.Service))
		row("start lag", perc(r.StartLag))
	}
	row("outcomes", esc(r.OutcomeLine()))
	if len(r.Versions) > 0 {
		if r.versionless() {
			row("versions", `<span class="note">`+esc(r.noVersionNote())+`</span>`)
		} else {
			var vs []string
			for _, v := range r.Versions {
				vs = append(vs, fmt.Sprintf("%s %d", r.versionName(v.Version), v.Count))
			}
			row("versions ("+r.VersionHeader+")", esc(strings.Join(vs, ", ")))
			if mix := versionMix(r.Timeline, 20); mix != "" {
				row("version mix", esc(mix))
			}
		}
	}
	var targets []string
	for _, t := range r.Targets {
		targets = append(targets, esc(fmt.Sprintf("%s %s (weight %d)", t.Method, t.URL, t.Weight)))
	}
	row("targets", strings.Join(targets, "<br>"))
	p("</table>\n")

	if len(r.Thresholds) > 0 {
		p("<h2>Thresholds</h2>\n<table>\n")
		for _, t := range r.Thresholds {
			mark, cls := "✓", "ok"
			if !t.Pass {
				mark, cls = "✗", "bad"
			}
			p(`<tr><td class="%s">%s</td><th>%s</th><td>%s</td></tr>`+"\n", cls, mark, esc(t.Name), esc(thresholdText(t)))
		}
		p("</table>\n")
	}

	// Charts.
	c := newChartData(r)
	if len(r.Events) > 0 {
		p("<h2>Rollout events</h2>\n")
		b.WriteString(c.eventChart())
	}
	p("<h2>Requests per second</h2>\n")
	b.WriteString(c.rateChart())
	p("<h2>Failed requests per second, by outcome</h2>\n")
	b.WriteString(c.failureChart())
	p("<h2>Latency from due time (log scale)</h2>\n")
	b.WriteString(c.latencyChart())
	p("<h2>Version mix (share of answers)</h2>\n")
	b.WriteString(c.versionChart())
	if r.Timeline.RowSeconds > 1 {
		p(`<p class="sub">The run outlasted %d rows: each point covers %d seconds, with the worst latency of those seconds.</p>`+"\n",
			r.Timeline.MaxRows, r.Timeline.RowSeconds)
	}
	if note := c.axisNote(); note != "" {
		p(`<p class="sub" id="axis-note">%s</p>`+"\n", esc(note))
	}

	if len(r.Events) > 0 {
		p("<h2>Events</h2>\n<table>\n<tr><th>#</th><th>t</th><th>time</th><th>host</th><th>event</th><th>detail</th></tr>\n")
		for i, e := range r.Events {
			p(`<tr id="ev-%d"><td class="n">%d</td><td class="n">%.3fs</td><td>%s</td><td>%s</td><td><i style="color:%s">■</i> %s</td><td>%s</td></tr>`+"\n",
				i+1, i+1, e.T, esc(e.Time.Format("15:04:05.000")), esc(e.Host), eventColor(e.Type), esc(e.Type), esc(e.Detail))
		}
		p("</table>\n")
		if r.EventsDropped > 0 {
			p(`<p class="sub">%d more events were not kept.</p>`+"\n", r.EventsDropped)
		}
	}

	if len(r.StatusCodes) > 0 {
		p("<h2>Status codes</h2>\n<table>\n")
		codes := slices.Sorted(maps.Keys(r.StatusCodes))
		for _, k := range codes {
			p(`<tr><th>%s</th><td class="n">%d</td></tr>`+"\n", esc(k), r.StatusCodes[k])
		}
		p("</table>\n")
	}
	if len(r.Errors) > 0 {
		p("<h2>Failures (first of each kind)</h2>\n<table>\n<tr><th>outcome</th><th>t</th><th>message</th></tr>\n")
		for _, e := range r.Errors {
			p(`<tr><td>%s</td><td class="n">%.3fs</td><td><code>%s</code></td></tr>`+"\n", esc(e.Outcome), e.T, esc(e.Message))
		}
		p("</table>\n")
	}
	p(`<p class="sub">Generated by zerodown load (report schema %s).</p>`+"\n</body></html>\n", esc(r.Schema))
	_, err := io.WriteString(w, b.String())
	return err
}

// pageTitle names the run, its environment, version and outcome, and the
// verdict, so that a list of tabs or files already tells them apart.
func (r *Report) pageTitle(v verdict) string {
	var parts []string
	if v.Badge != "" {
		parts = append(parts, v.Badge)
	}
	if r.Run == nil {
		parts = append(parts, "zerodown load report "+r.Started.Format(time.RFC3339))
		return strings.Join(parts, " · ")
	}
	parts = append(parts, strings.TrimSpace("zerodown run "+r.Run.ID))
	for _, s := range []string{r.Run.Environment, r.Run.Version} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if r.Run.Outcome != "" {
		parts = append(parts, outcomeWords(r.Run.Outcome))
	}
	return strings.Join(parts, " · ")
}

// versionless reports whether no answer carried the version header.
func (r *Report) versionless() bool {
	return len(r.Versions) == 1 && r.Versions[0].Version == NoVersion
}

func (r *Report) noVersionNote() string {
	return fmt.Sprintf("answers carry no %s header: versions cannot be told apart", r.versionHeader())
}

func (r *Report) versionHeader() string {
	if r.VersionHeader == "" {
		return DefaultVersionHeader
	}
	return r.VersionHeader
}

// versionName is how a version is shown: the placeholders spelled out.
func (r *Report) versionName(v string) string {
	switch v {
	case NoVersion:
		return "no " + r.versionHeader() + " header"
	case OtherVersion:
		return "other versions"
	}
	return v
}

// fmtSeconds formats seconds for an axis note: "10.3s".
func fmtSeconds(s float64) string {
	return strconv.FormatFloat(math.Round(s*1000)/1000, 'f', -1, 64) + "s"
}

// chartData is the timeline laid out on a common time axis.
type chartData struct {
	r     *Report
	rows  []Row
	spans []span
	total float64 // seconds on the x axis
	// end is when sending ended (the report's Duration); answers counted
	// after it are to requests already in flight.
	end float64
}

// span is a stretch of the time axis with the counts of its rows, to be
// drawn as rates: counts divided by the span's length. A row is one span,
// except that the last row of sending covers only the part of its second
// before sending ended, and is merged into the row before it when that
// part is too short to give a steady rate.
type span struct {
	t0, t1           float64
	sent, ok, failed int64
	failures         map[string]int64
	// after: the span lies wholly after sending ended.
	after bool
	// partial: the span ends where sending ended, inside a row.
	partial bool
}

// minSpan is the shortest partial second drawn on its own: over less,
// the start lag of a single request moves the rate by a lot.
const minSpan = 0.25

func newChartData(r *Report) *chartData {
	c := &chartData{r: r, rows: r.Timeline.Rows}
	for _, row := range c.rows {
		c.total = max(c.total, float64(row.T+row.Seconds))
	}
	for _, e := range r.Events {
		c.total = max(c.total, e.T)
	}
	c.total = max(c.total, r.Duration, 1)
	c.end = c.total
	if r.Duration > 0 {
		c.end = r.Duration
	}
	c.spans = c.makeSpans()
	return c
}

func (c *chartData) makeSpans() []span {
	var out []span
	for _, row := range c.rows {
		s := span{t0: float64(row.T), t1: float64(row.T + row.Seconds), sent: row.Sent, ok: row.OK, failed: row.Failed}
		for k, n := range row.Failures {
			if s.failures == nil {
				s.failures = map[string]int64{}
			}
			s.failures[k] += n
		}
		switch {
		case s.t0 >= c.end:
			s.after = true
		case s.t1 > c.end:
			s.t1, s.partial = c.end, true
			if n := len(out); s.t1-s.t0 < minSpan && n > 0 && !out[n-1].after && out[n-1].t1 == s.t0 {
				last := &out[n-1]
				last.t1, last.partial = s.t1, true
				last.sent += s.sent
				last.ok += s.ok
				last.failed += s.failed
				for k, n := range s.failures {
					if last.failures == nil {
						last.failures = map[string]int64{}
					}
					last.failures[k] += n
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// axisNote explains the end of the time axis: the rate of a partial last
// second, and the grey stretch after sending ended.
func (c *chartData) axisNote() string {
	var parts []string
	for _, s := range c.spans {
		if s.partial {
			parts = append(parts, fmt.Sprintf("Sending ended at %s: the rates of %s count over those %s only, not over whole seconds.",
				fmtSeconds(c.end), s.name(), fmtSeconds(s.secs())))
		}
	}
	if c.end < c.total {
		parts = append(parts, fmt.Sprintf("The grey stretch after %s holds only answers to requests that were already in flight.", fmtSeconds(c.end)))
	}
	return strings.Join(parts, " ")
}

func (s span) secs() float64 { return s.t1 - s.t0 }

// name is how a hover text names the span: "12s", "10s–10.3s".
func (s span) name() string {
	if !s.partial && s.t1-s.t0 == 1 {
		return fmtSeconds(s.t0)
	}
	return fmtSeconds(s.t0) + "–" + fmtSeconds(s.t1)
}

func (c *chartData) x(t float64) float64 { return marginL + t/c.total*plotW }

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// frame draws the chart's box, y grid, time axis, the stretch after
// sending ended and the event lines, around body.
func (c *chartData) frame(id string, yTicks []float64, yOf func(float64) float64, yLabel func(float64) string, body string, legend string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<div class="chart"><svg id="%s" viewBox="0 0 %d %d" width="100%%" role="img">`, id, chartW, chartH)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#ccc"/>`, marginL, marginT, plotW, plotH)
	if c.end < c.total {
		x0 := c.x(c.end)
		fmt.Fprintf(&b, `<rect class="after" x="%s" y="%d" width="%s" height="%d" fill="#ececec"><title>after %s: sending had ended; only answers to requests in flight</title></rect>`,
			f1(x0), marginT, f1(float64(marginL+plotW)-x0), plotH, fmtSeconds(c.end))
	}
	for _, v := range yTicks {
		y := yOf(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="#eee"/>`, marginL, marginL+plotW, f1(y), f1(y))
		fmt.Fprintf(&b, `<text x="%d" y="%s" text-anchor="end">%s</text>`, marginL-6, f1(y+4), html.EscapeString(yLabel(v)))
	}
	for _, t := range timeTicks(c.total) {
		x := c.x(t)
		fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%d" y2="%d" stroke="#ccc"/>`, f1(x), f1(x), marginT+plotH, marginT+plotH+4)
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`, f1(x), chartH-8, fmtTick(t))
	}
	// Events as thin lines, numbered only in the events chart, where their
	// labels have room.
	for i, e := range c.r.Events {
		x := c.x(max(e.T, 0))
		fmt.Fprintf(&b, `<g class="event"><title>%s</title><line x1="%s" x2="%s" y1="%d" y2="%d" stroke="%s" stroke-opacity="0.35"/></g>`,
			html.EscapeString(eventTip(i+1, e)), f1(x), f1(x), marginT, marginT+plotH, eventColor(e.Type))
	}
	b.WriteString(body)
	b.WriteString(`</svg>`)
	if legend != "" {
		b.WriteString(`<div class="legend">` + legend + `</div>`)
	}
	b.WriteString("</div>\n")
	return b.String()
}

func legendItem(color, name string) string {
	return fmt.Sprintf(`<span><i style="background:%s"></i>%s</span>`, color, html.EscapeString(name))
}

func (c *chartData) linearY(top float64) func(float64) float64 {
	return func(v float64) float64 { return marginT + plotH - v/top*plotH }
}

// point is one value of a series at time t; ok false breaks the line.
type point struct {
	t, v float64
	ok   bool
}

// polyline draws one series.
func (c *chartData) polyline(color string, pts []point, yOf func(float64) float64, name string) string {
	var line []string
	var b strings.Builder
	flush := func() {
		if len(line) == 1 {
			line = append(line, line[0])
		}
		if len(line) > 1 {
			fmt.Fprintf(&b, `<polyline class="series" data-series="%s" fill="none" stroke="%s" stroke-width="1.5" points="%s"><title>%s</title></polyline>`,
				html.EscapeString(name), color, strings.Join(line, " "), html.EscapeString(name))
		}
		line = line[:0]
	}
	for _, p := range pts {
		if !p.ok {
			flush()
			continue
		}
		line = append(line, f1(c.x(p.t))+","+f1(yOf(p.v)))
	}
	flush()
	return b.String()
}

// rowPoints puts a row's value at the row's middle.
func (c *chartData) rowPoints(val func(Row) (float64, bool)) []point {
	pts := make([]point, len(c.rows))
	for i, row := range c.rows {
		v, ok := val(row)
		pts[i] = point{float64(row.T) + float64(row.Seconds)/2, v, ok}
	}
	return pts
}

// ratePoints puts a span's count per second at the span's middle; spans
// after sending ended are left out.
func (c *chartData) ratePoints(count func(span) int64) []point {
	pts := make([]point, 0, len(c.spans))
	for _, s := range c.spans {
		if s.after {
			continue
		}
		pts = append(pts, point{(s.t0 + s.t1) / 2, float64(count(s)) / s.secs(), s.secs() > 0})
	}
	return pts
}

func (c *chartData) rateChart() string {
	top := c.r.TargetRate
	for _, s := range c.spans {
		if !s.after && s.secs() > 0 {
			top = max(top, float64(s.sent)/s.secs(), float64(s.ok)/s.secs())
		}
	}
	yt := axisTicks(top * 1.05)
	yOf := c.linearY(yt[len(yt)-1])
	var body strings.Builder
	if c.r.TargetRate > 0 {
		y := yOf(c.r.TargetRate)
		fmt.Fprintf(&body, `<line x1="%d" x2="%s" y1="%s" y2="%s" stroke="#999" stroke-dasharray="6 4"><title>target %s/s</title></line>`,
			marginL, f1(c.x(c.end)), f1(y), f1(y), fmtRate(c.r.TargetRate))
	}
	body.WriteString(c.polyline("#1f77b4", c.ratePoints(func(s span) int64 { return s.sent }), yOf, "sent/s"))
	body.WriteString(c.polyline("#2ca02c", c.ratePoints(func(s span) int64 { return s.ok }), yOf, "ok/s"))
	body.WriteString(c.hoverSpans(func(s span) string {
		if s.after {
			return fmt.Sprintf("%s, after sending ended: %d ok, %d failed answers to requests in flight", s.name(), s.ok, s.failed)
		}
		return fmt.Sprintf("%s: %d sent (%s/s), %d ok, %d failed", s.name(), s.sent, fmtRate(math.Round(float64(s.sent)/s.secs()*10)/10), s.ok, s.failed)
	}))
	legend := legendItem("#1f77b4", "sent/s") + legendItem("#2ca02c", "ok/s")
	if c.r.TargetRate > 0 {
		legend += legendItem("#999", "target")
	}
	return c.frame("chart-rate", yt, yOf, fmtTickValue, body.String(), legend)
}

// hoverRows lays an invisible column over every row carrying its numbers.
func (c *chartData) hoverRows(text func(Row) string) string {
	if len(c.rows) > 1200 {
		return "" // keep the file small for very long runs
	}
	var b strings.Builder
	for _, row := range c.rows {
		b.WriteString(c.hoverColumn(float64(row.T), float64(row.T+row.Seconds), text(row)))
	}
	return b.String()
}

// hoverSpans does the same for spans.
func (c *chartData) hoverSpans(text func(span) string) string {
	if len(c.spans) > 1200 {
		return ""
	}
	var b strings.Builder
	for _, s := range c.spans {
		b.WriteString(c.hoverColumn(s.t0, s.t1, text(s)))
	}
	return b.String()
}

func (c *chartData) hoverColumn(t0, t1 float64, text string) string {
	x0, x1 := c.x(t0), c.x(t1)
	return fmt.Sprintf(`<rect x="%s" y="%d" width="%s" height="%d" fill="transparent"><title>%s</title></rect>`,
		f1(x0), marginT, f1(max(x1-x0, 0.5)), plotH, html.EscapeString(text))
}

func (c *chartData) failureChart() string {
	top := 0.0
	for _, s := range c.spans {
		if s.secs() > 0 {
			top = max(top, float64(s.failed)/s.secs())
		}
	}
	if top == 0 {
		top = 5
	}
	yt := axisTicks(top * 1.05)
	yOf := c.linearY(yt[len(yt)-1])
	var body strings.Builder
	seen := map[Outcome]bool{}
	for _, s := range c.spans {
		if s.failed == 0 || s.secs() <= 0 {
			continue
		}
		x0, x1 := c.x(s.t0), c.x(s.t1)
		wdt := max(x1-x0-0.5, 1)
		acc := 0.0
		var tip []string
		for _, o := range Outcomes()[1:] {
			n := s.failures[o.String()]
			if n == 0 {
				continue
			}
			seen[o] = true
			v := float64(n) / s.secs()
			y0, y1 := yOf(acc), yOf(acc+v)
			fmt.Fprintf(&body, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>`, f1(x0), f1(y1), f1(wdt), f1(max(y0-y1, 0.5)), outcomeColors[o])
			acc += v
			tip = append(tip, fmt.Sprintf("%s %d", o, n))
		}
		fmt.Fprintf(&body, `<rect x="%s" y="%d" width="%s" height="%d" fill="transparent"><title>%s: %s</title></rect>`,
			f1(x0), marginT, f1(wdt), plotH, s.name(), html.EscapeString(strings.Join(tip, ", ")))
	}
	if len(seen) == 0 {
		fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="middle" style="fill:#2ca02c;font-size:14px">no failed request</text>`,
			marginL+plotW/2, marginT+plotH/2)
	}
	var legend strings.Builder
	for _, o := range Outcomes()[1:] {
		if seen[o] {
			legend.WriteString(legendItem(outcomeColors[o], o.String()))
		}
	}
	return c.frame("chart-failures", yt, yOf, fmtTickValue, body.String(), legend.String())
}

func (c *chartData) latencyChart() string {
	lo, hi := math.Inf(1), 0.0
	for _, row := range c.rows {
		for _, v := range []Millis{row.P50, row.P99, row.Max} {
			if ms := float64(v) / 1e6; ms > 0 {
				lo, hi = min(lo, ms), max(hi, ms)
			}
		}
	}
	if hi == 0 {
		lo, hi = 0.1, 1000
	}
	lo = math.Pow(10, math.Floor(math.Log10(max(lo, 0.01))))
	hi = math.Pow(10, math.Ceil(math.Log10(hi*1.0001)))
	if hi <= lo {
		hi = lo * 10
	}
	l0, l1 := math.Log10(lo), math.Log10(hi)
	yOf := func(ms float64) float64 {
		ms = min(max(ms, lo), hi)
		return marginT + plotH - (math.Log10(ms)-l0)/(l1-l0)*plotH
	}
	var yt []float64
	for v := lo; v <= hi*1.0001; v *= 10 {
		yt = append(yt, v)
	}
	ms := func(f func(Row) Millis) []point {
		return c.rowPoints(func(r Row) (float64, bool) {
			v := float64(f(r)) / 1e6
			return v, v > 0
		})
	}
	var body strings.Builder
	body.WriteString(c.polyline("#bbb", ms(func(r Row) Millis { return r.Max }), yOf, "max"))
	body.WriteString(c.polyline("#d62728", ms(func(r Row) Millis { return r.P99 }), yOf, "p99"))
	body.WriteString(c.polyline("#1f77b4", ms(func(r Row) Millis { return r.P50 }), yOf, "p50"))
	body.WriteString(c.hoverRows(func(r Row) string {
		return fmt.Sprintf("%ds: p50 %s, p99 %s, max %s", r.T, r.P50, r.P99, r.Max)
	}))
	legend := legendItem("#1f77b4", "p50") + legendItem("#d62728", "p99") + legendItem("#bbb", "max")
	return c.frame("chart-latency", yt, yOf, func(v float64) string { return fmtDuration(time.Duration(v * 1e6)) }, body.String(), legend)
}

func (c *chartData) versionChart() string {
	yOf := c.linearY(1)
	yTicks := []float64{0, 0.25, 0.5, 0.75, 1}
	yLabel := func(v float64) string { return strconv.Itoa(int(v*100)) + "%" }
	note := func(text string) string {
		return fmt.Sprintf(`<text id="version-note" class="note" x="%d" y="%d" text-anchor="middle" style="fill:#8a4b00;font-size:14px">%s</text>`,
			marginL+plotW/2, marginT+plotH/2, html.EscapeString(text))
	}
	if len(c.r.Versions) == 0 {
		return c.frame("chart-versions", yTicks, yOf, yLabel, note("no answer arrived: no version to show"), "")
	}
	if c.r.versionless() {
		// One solid band of "(none)" would look like one version serving
		// throughout; say instead that the answers cannot tell.
		body := note(c.r.noVersionNote()) + c.hoverRows(func(r Row) string {
			return fmt.Sprintf("%ds: %d answers without %s", r.T, r.Versions[NoVersion], c.r.versionHeader())
		})
		return c.frame("chart-versions", yTicks, yOf, yLabel, body, "")
	}
	// Versions by overall count, the largest first; the rest as "(other)".
	names := make([]string, 0, len(c.r.Versions))
	for _, v := range c.r.Versions {
		names = append(names, v.Version)
	}
	if len(names) > len(versionColors) {
		counts := map[string]int64{}
		for _, v := range c.r.Versions {
			counts[v.Version] = v.Count
		}
		slices.SortStableFunc(names, func(a, b string) int { return int(min(max(counts[b]-counts[a], -1), 1)) })
		names = names[:len(versionColors)-1]
	}
	color := map[string]string{}
	next := 0
	for _, n := range names {
		switch n {
		case NoVersion:
			color[n] = "#999999"
		case OtherVersion:
			color[n] = "#cccccc"
		default:
			color[n] = versionColors[next%len(versionColors)]
			next++
		}
	}
	var body strings.Builder
	// One stacked band per version: cumulative share below and above it.
	// Versions beyond the palette share one grey band.
	const rest = "\x00rest"
	below := make([]float64, len(c.rows))
	bands := slices.Clone(names)
	if len(c.r.Versions) > len(names) {
		bands = append(bands, rest)
	}
	var legend strings.Builder
	for _, name := range bands {
		var top, bottom []string
		any := false
		for i, row := range c.rows {
			var total, n int64
			for k, v := range row.Versions {
				total += v
				if k == name || (name == rest && color[k] == "") {
					n += v
				}
			}
			share := 0.0
			if total > 0 {
				share = float64(n) / float64(total)
			}
			if n > 0 {
				any = true
			}
			x0, x1 := c.x(float64(row.T)), c.x(float64(row.T+row.Seconds))
			y0, y1 := yOf(below[i]), yOf(below[i]+share)
			bottom = append(bottom, f1(x0)+","+f1(y0), f1(x1)+","+f1(y0))
			top = append(top, f1(x0)+","+f1(y1), f1(x1)+","+f1(y1))
			below[i] += share
		}
		if !any {
			continue
		}
		col, label := color[name], c.r.versionName(name)
		if name == rest {
			col, label = "#cccccc", "other versions"
		}
		slices.Reverse(bottom)
		fmt.Fprintf(&body, `<polygon fill="%s" fill-opacity="0.85" stroke="none" points="%s %s"><title>%s</title></polygon>`,
			col, strings.Join(top, " "), strings.Join(bottom, " "), html.EscapeString(label))
		legend.WriteString(legendItem(col, label))
	}
	body.WriteString(c.hoverRows(func(r Row) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Versions)) {
			parts = append(parts, fmt.Sprintf("%s %d", c.r.versionName(k), r.Versions[k]))
		}
		return fmt.Sprintf("%ds: %s", r.T, strings.Join(parts, ", "))
	}))
	return c.frame("chart-versions", yTicks, yOf, yLabel, body.String(), legend.String())
}

// axisTicks returns round ticks from 0 up to v or just above: 4 to 6
// steps of 1, 2, 2.5 or 5 times a power of ten.
func axisTicks(v float64) []float64 {
	if v <= 0 {
		v = 1
	}
	raw := v / 5
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * e
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*e >= raw {
			step = m * e
			break
		}
	}
	n := int(math.Ceil(v/step - 1e-9))
	out := make([]float64, n+1)
	for i := range out {
		out[i] = float64(i) * step
	}
	return out
}

// fmtTickValue formats a y tick: 250, 62.5, 0.25.
func fmtTickValue(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// timeTicks returns about 10 round times (seconds) across the axis.
func timeTicks(total float64) []float64 {
	steps := []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if total/s <= 10 {
			step = s
			break
		}
	}
	var out []float64
	for t := 0.0; t <= total+1e-9; t += step {
		out = append(out, t)
	}
	return out
}

func fmtTick(t float64) string {
	d := time.Duration(t) * time.Second
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(t)) + "s"
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}
