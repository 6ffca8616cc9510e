package loadgen

import (
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
)

// The rollout's events get a chart of their own, on the same time axis as
// the others: one lane per host (events without a host in a "run" lane),
// each event a numbered label centred on its time. Labels that would touch
// go to the next row of their lane, so no two ever overlap however close
// the events are; hovering one shows the event, clicking it goes to its
// row in the events table. The other charts show the events as thin
// unlabelled lines.

const (
	evRowH     = 16 // a label row: a label and the gap below it
	evLabelH   = 13
	evLanePad  = 3  // above and below a lane's rows
	evGap      = 3  // the least room between two labels of a row
	evMaxRows  = 8  // label rows a lane may take; further labels are left out
	evDigitW   = 7  // generous, so that the real text fits its box
	evLabelPad = 8  // width of a label beyond its digits
	evTextSize = 10 // px
)

// evLane is one host's events laid out in rows.
type evLane struct {
	name   string
	labels []evLabel
	rows   int // label rows used
	hidden int // events without a label: their lane was full around them
}

// evLabel is one placed label.
type evLabel struct {
	n       int // event number, from 1
	e       Event
	cx, w   float64
	row     int
	visible bool
}

// layoutEvents assigns every event a lane and a label row: a label goes to
// the first row of its lane whose last label ends at least evGap before it
// begins. Events are placed in time order, so this needs one pass.
func (c *chartData) layoutEvents() []*evLane {
	var lanes []*evLane
	byName := map[string]*evLane{}
	order := make([]int, len(c.r.Events))
	for i := range order {
		order[i] = i
	}
	// Stable by time: events are marked in order, but a caller may append
	// its own.
	slices.SortStableFunc(order, func(a, b int) int { return compareFloats(c.r.Events[a].T, c.r.Events[b].T) })
	lane := func(host string) *evLane {
		name := host
		if name == "" {
			name = "run"
		}
		if l := byName[name]; l != nil {
			return l
		}
		l := &evLane{name: name}
		byName[name] = l
		lanes = append(lanes, l)
		return l
	}
	ends := map[*evLane][]float64{} // right edge of each row's last label
	for _, i := range order {
		e := c.r.Events[i]
		l := lane(e.Host)
		n := i + 1
		w := float64(len(strconv.Itoa(n))*evDigitW + evLabelPad)
		lo, hi := float64(marginL)+w/2, float64(marginL+plotW)-w/2
		cx := min(max(c.x(max(e.T, 0)), lo), hi)
		lb := evLabel{n: n, e: e, cx: cx, w: w}
		rows := ends[l]
		for k := 0; k < evMaxRows; k++ {
			if k == len(rows) {
				rows = append(rows, cx+w/2)
				lb.row, lb.visible = k, true
				break
			}
			if rows[k]+evGap <= cx-w/2 {
				rows[k] = cx + w/2
				lb.row, lb.visible = k, true
				break
			}
		}
		ends[l] = rows
		l.rows = max(l.rows, len(rows))
		if !lb.visible {
			l.hidden++
		}
		l.labels = append(l.labels, lb)
	}
	return lanes
}

// eventChart draws the events' lanes, or nothing when there are none.
func (c *chartData) eventChart() string {
	if len(c.r.Events) == 0 {
		return ""
	}
	lanes := c.layoutEvents()
	height := marginT + marginB
	for _, l := range lanes {
		height += max(l.rows, 1)*evRowH + 2*evLanePad
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<div class="chart"><svg id="chart-events" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="rollout events by host">`, chartW, height)
	y := marginT
	hidden := 0
	for i, l := range lanes {
		lh := max(l.rows, 1)*evRowH + 2*evLanePad
		fill := "#fff"
		if i%2 == 0 {
			fill = "#f6f6f6"
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, marginL, y, plotW, lh, fill)
		name := l.name
		if r := []rune(name); len(r) > 13 {
			name = string(r[:12]) + "…"
		}
		fmt.Fprintf(&b, `<text class="lane" x="%d" y="%d" text-anchor="end"><title>%s</title>%s</text>`,
			marginL-6, y+lh/2+4, html.EscapeString(l.name), html.EscapeString(name))
		for _, lb := range l.labels {
			if !lb.visible {
				continue
			}
			e := lb.e
			top := float64(y + evLanePad + lb.row*evRowH)
			col := eventColor(e.Type)
			fmt.Fprintf(&b, `<a href="#ev-%d"><g class="event-label"><title>%s</title>`, lb.n, html.EscapeString(eventTip(lb.n, e)))
			fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%d" rx="3" fill="%s"/>`, f1(lb.cx-lb.w/2), f1(top), f1(lb.w), evLabelH, col)
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle" style="fill:#fff;font-size:%dpx;font-weight:600">%d</text></g></a>`,
				f1(lb.cx), f1(top+float64(evLabelH)-3), evTextSize, lb.n)
		}
		hidden += l.hidden
		y += lh
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`, marginL, marginT, plotW, y-marginT)
	for _, t := range timeTicks(c.total) {
		x := c.x(t)
		fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%d" y2="%d" stroke="#ccc"/>`, f1(x), f1(x), y, y+4)
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`, f1(x), y+marginB-8, fmtTick(t))
	}
	b.WriteString(`</svg><div class="legend">`)
	// One legend entry per colour, naming every type drawn in it.
	var colors []string
	types := map[string][]string{}
	for _, e := range c.r.Events {
		col := eventColor(e.Type)
		if _, ok := types[col]; !ok {
			colors = append(colors, col)
		}
		if !slices.Contains(types[col], e.Type) {
			types[col] = append(types[col], e.Type)
		}
	}
	for _, col := range colors {
		b.WriteString(legendItem(col, strings.Join(types[col], ", ")))
	}
	b.WriteString(`</div>`)
	if hidden > 0 {
		fmt.Fprintf(&b, `<p class="sub">%d events came too close together to number here; the table lists every event.</p>`, hidden)
	}
	b.WriteString("</div>\n")
	return b.String()
}

// eventTip is an event's hover text.
func eventTip(n int, e Event) string {
	s := fmt.Sprintf("#%d at %.3fs", n, e.T)
	if !e.Time.IsZero() {
		s += " (" + e.Time.Format("15:04:05.000") + ")"
	}
	s += ": " + eventLabel(e)
	return s
}

// eventLabel is "host type: detail", cut to maxLabel characters.
func eventLabel(e Event) string {
	label := e.Type
	if e.Host != "" {
		label = e.Host + " " + e.Type
	}
	if e.Detail != "" {
		label += ": " + e.Detail
	}
	if r := []rune(label); len(r) > maxLabel {
		label = string(r[:maxLabel]) + "…"
	}
	return label
}
