package loadgen

import (
	"maps"
	"slices"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// openRow is one second of the whole run while the collector still merges
// shards into it.
type openRow struct {
	sent     int64
	outcomes [numOutcomes]int64
	hist     *hdr.Histogram
	versions boundedCounts
}

func (o *openRow) add(r *shardRow) {
	o.sent += r.sent
	for i, n := range r.outcomes {
		o.outcomes[i] += n
	}
	o.hist.Merge(r.hist)
	o.versions.merge(&r.versions)
}

// finish turns an open row into a timeline row of one second.
func (o *openRow) finish(sec int64) Row {
	row := Row{T: sec, Seconds: 1, Sent: o.sent}
	addOutcomes(&row, &o.outcomes)
	if o.hist.TotalCount() > 0 {
		p := percentilesOf(o.hist)
		row.P50, row.P99, row.Max = p.P50, p.P99, p.Max
	}
	row.Versions = o.versions.asMap()
	return row
}

func addOutcomes(row *Row, outcomes *[numOutcomes]int64) {
	for i, n := range outcomes {
		if n == 0 {
			continue
		}
		if Outcome(i) == OK {
			row.OK += n
			continue
		}
		row.Failed += n
		if row.Failures == nil {
			row.Failures = map[string]int64{}
		}
		row.Failures[Outcome(i).String()] += n
	}
}

// timeline keeps at most max rows covering the whole run: when full, rows
// are merged pairwise and each new row covers twice as many seconds.
type timeline struct {
	max   int // even
	width int64
	rows  []Row
}

func newTimeline(max int) *timeline {
	if max%2 == 1 {
		max++
	}
	return &timeline{max: max, width: 1}
}

// push appends the row of second r.T; seconds come in order, none missing.
func (t *timeline) push(r Row) {
	if n := len(t.rows); n > 0 {
		last := &t.rows[n-1]
		if r.T < last.T+t.width {
			mergeRow(last, &r)
			return
		}
	}
	if len(t.rows) == t.max {
		t.compact()
	}
	r.T -= r.T % t.width
	t.rows = append(t.rows, r)
}

func (t *timeline) compact() {
	n := len(t.rows) / 2
	for i := range n {
		a := t.rows[2*i]
		mergeRow(&a, &t.rows[2*i+1])
		t.rows[i] = a
	}
	clear(t.rows[n:])
	t.rows = t.rows[:n]
	t.width *= 2
}

// addLate adds counts that reached the collector after their second's row
// was finished (the latency of such requests is in the run's histograms
// but not in the row's percentiles).
func (t *timeline) addLate(sec int64, sr *shardRow) {
	i := int(sec / t.width)
	if sec < 0 || i >= len(t.rows) {
		return
	}
	row := &t.rows[i]
	row.Sent += sr.sent
	addOutcomes(row, &sr.outcomes)
	if len(sr.versions.order) > 0 {
		bc := newBoundedCounts(maxRowVersions)
		for _, k := range slices.Sorted(maps.Keys(row.Versions)) {
			bc.add(k, row.Versions[k])
		}
		bc.merge(&sr.versions)
		row.Versions = bc.asMap()
	}
}

// mergeRow adds b into a; percentiles become the worse of the two.
func mergeRow(a, b *Row) {
	a.Seconds += b.Seconds
	a.Sent += b.Sent
	a.OK += b.OK
	a.Failed += b.Failed
	for k, n := range b.Failures {
		if a.Failures == nil {
			a.Failures = map[string]int64{}
		}
		a.Failures[k] += n
	}
	a.P50 = max(a.P50, b.P50)
	a.P99 = max(a.P99, b.P99)
	a.Max = max(a.Max, b.Max)
	if len(b.Versions) > 0 {
		bc := newBoundedCounts(maxRowVersions)
		for _, k := range slices.Sorted(maps.Keys(a.Versions)) {
			bc.add(k, a.Versions[k])
		}
		for _, k := range slices.Sorted(maps.Keys(b.Versions)) {
			bc.add(k, b.Versions[k])
		}
		a.Versions = bc.asMap()
	}
}

func (t *timeline) snapshot(maxRows int) Timeline {
	rows := make([]Row, len(t.rows))
	for i, r := range t.rows {
		rows[i] = cloneRow(r)
	}
	return Timeline{MaxRows: maxRows, RowSeconds: t.width, Rows: rows}
}

// cloneRow copies r so that later merges do not touch the copy's maps.
func cloneRow(r Row) Row {
	if r.Failures != nil {
		m := make(map[string]int64, len(r.Failures))
		for k, v := range r.Failures {
			m[k] = v
		}
		r.Failures = m
	}
	if r.Versions != nil {
		m := make(map[string]int64, len(r.Versions))
		for k, v := range r.Versions {
			m[k] = v
		}
		r.Versions = m
	}
	return r
}
