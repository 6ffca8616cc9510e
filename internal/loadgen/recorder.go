package loadgen

import (
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms count microseconds. The whole-run histograms keep 3
// significant digits (0.1% error); the per-second ones, which exist only
// for the seconds still being collected, keep 2 (1%).
const (
	runDigits = 3
	rowDigits = 2
	// samplesPerOutcome is how many error messages are kept per outcome.
	samplesPerOutcome = 3
)

func newHist(highestMicros int64, digits int) *hdr.Histogram {
	return hdr.New(1, highestMicros, digits)
}

// recordMicros records d in h, clamped to the histogram's range.
func recordMicros(h *hdr.Histogram, d time.Duration) {
	v := d.Microseconds()
	if v < 1 {
		v = 1
	}
	if hi := h.HighestTrackableValue(); v > hi {
		v = hi
	}
	_ = h.RecordValue(v) // in range: cannot fail
}

// result is one request's measurements.
type result struct {
	lane     *lane
	due      time.Time // when it was due (open) or started (closed)
	start    time.Time // zero when it never started (dropped, aborted)
	end      time.Time // last byte, error, or the drop decision
	ttfb     time.Time // first byte of the answer, zero if none
	connect  time.Duration
	outcome  Outcome
	code     int
	version  string
	hasVer   bool
	bytesIn  int64
	bytesOut int64
	retried  bool
	err      error
	worker   int
}

// errSample is one failure message kept for the report.
type errSample struct {
	at  time.Time
	msg string
}

// shard is a recorder: the histograms and counters one group of workers
// writes to. Each worker records into its own shard (worker id modulo the
// number of shards) under the shard's lock, which is all but uncontended;
// the collector merges shards every second and at the end. Memory does not
// grow with the number of workers or the length of the run.
type shard struct {
	mu sync.Mutex

	latency *hdr.Histogram // end - due
	service *hdr.Histogram // end - start
	lag     *hdr.Histogram // start - due

	outcomes [numOutcomes]int64
	codes    [1000]int64 // by status code
	retried  int64
	sent     int64
	bytesIn  int64
	bytesOut int64
	versions boundedCounts
	// byVersion is for VersionWindow (canary analysis); lastVersion caches
	// the last one used.
	byVersion      map[string]*versionStat
	lastVersion    *versionStat
	lastVersionKey string
	samples        [numOutcomes][]errSample
	firstAt        time.Time
	lastEnd        time.Time
	lastSent       time.Time

	rows  []*shardRow // seconds not yet collected
	spare []*shardRow

	jtl []byte
}

// shardRow is one second of one shard, until the collector takes it.
type shardRow struct {
	sec      int64
	sent     int64
	outcomes [numOutcomes]int64
	hist     *hdr.Histogram
	versions boundedCounts
}

func newShard(highestMicros int64) *shard {
	return &shard{
		latency:  newHist(highestMicros, runDigits),
		service:  newHist(highestMicros, runDigits),
		lag:      newHist(highestMicros, runDigits),
		versions: newBoundedCounts(maxRunVersions),
	}
}

// row returns the shard's row for second sec, creating it. Called with
// s.mu held.
func (s *shard) row(sec int64, highestMicros int64) *shardRow {
	for i := len(s.rows) - 1; i >= 0; i-- {
		if s.rows[i].sec == sec {
			return s.rows[i]
		}
	}
	var r *shardRow
	if n := len(s.spare); n > 0 {
		r = s.spare[n-1]
		s.spare = s.spare[:n-1]
	} else {
		r = &shardRow{hist: newHist(highestMicros, rowDigits), versions: newBoundedCounts(maxRowVersions)}
	}
	r.sec = sec
	s.rows = append(s.rows, r)
	return r
}

// recycle resets a collected row for reuse. Called with s.mu held.
func (s *shard) recycle(r *shardRow) {
	r.sent = 0
	r.outcomes = [numOutcomes]int64{}
	r.hist.Reset()
	r.versions.reset()
	if len(s.spare) < 4 {
		s.spare = append(s.spare, r)
	}
}

// boundedCounts counts strings, at most max distinct ones; further strings
// are counted under OtherVersion. Order of first appearance is kept. The
// last key's counter is cached: answers mostly repeat the last version.
type boundedCounts struct {
	max    int
	counts map[string]*int64
	order  []string
	lastK  string
	lastP  *int64
}

func newBoundedCounts(max int) boundedCounts {
	return boundedCounts{max: max, counts: map[string]*int64{}}
}

func (b *boundedCounts) add(k string, n int64) {
	if n == 0 {
		return
	}
	if b.lastP != nil && k == b.lastK {
		*b.lastP += n
		return
	}
	p, ok := b.counts[k]
	if !ok {
		if len(b.order) >= b.max-1 && k != OtherVersion {
			k = OtherVersion
			p, ok = b.counts[k]
		}
		if !ok {
			p = new(int64)
			b.counts[k] = p
			b.order = append(b.order, k)
		}
	}
	*p += n
	b.lastK, b.lastP = k, p
}

func (b *boundedCounts) merge(o *boundedCounts) {
	for _, k := range o.order {
		b.add(k, *o.counts[k])
	}
}

func (b *boundedCounts) reset() {
	clear(b.counts)
	b.order = b.order[:0]
	b.lastK, b.lastP = "", nil
}

func (b *boundedCounts) list() []VersionCount {
	out := make([]VersionCount, 0, len(b.order))
	for _, k := range b.order {
		out = append(out, VersionCount{Version: k, Count: *b.counts[k]})
	}
	return out
}

func (b *boundedCounts) asMap() map[string]int64 {
	if len(b.order) == 0 {
		return nil
	}
	m := make(map[string]int64, len(b.order))
	for _, k := range b.order {
		m[k] = *b.counts[k]
	}
	return m
}
