package loadgen

import (
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// VersionStat is what the answers carrying one version looked like over a
// window: a canary step is compared with its baseline on these.
type VersionStat struct {
	// Answers counts answers with the version header; Errors those of
	// them that failed: a 5xx status, or cut off after the header (a 3xx
	// or 4xx is not counted: the client's doing).
	Answers, Errors int64
	// P99 is the 99th percentile of their service time (start to last
	// byte), so a backlog at the client does not count against a version.
	P99 time.Duration
}

// versionStat accumulates one version's answers in a shard.
type versionStat struct {
	answers, errors int64
	service         *hdr.Histogram
}

// recordVersion counts an answer that carried version v. Called with s.mu
// held; at most maxRunVersions versions are kept, as in the report.
func (s *shard) recordVersion(r *result, highest int64) {
	if !r.hasVer || r.start.IsZero() {
		return
	}
	vs := s.lastVersion
	if vs == nil || s.lastVersionKey != r.version {
		vs = s.byVersion[r.version]
	}
	if vs == nil {
		if len(s.byVersion) >= maxRunVersions {
			return
		}
		if s.byVersion == nil {
			s.byVersion = map[string]*versionStat{}
		}
		vs = &versionStat{service: newHist(highest, rowDigits)}
		s.byVersion[r.version] = vs
	}
	s.lastVersion, s.lastVersionKey = vs, r.version // answers mostly repeat the last version
	vs.answers++
	switch r.outcome {
	case OK, HTTP3xx, HTTP4xx: // a client's own mistakes are not the version's
	default:
		vs.errors++
	}
	recordMicros(vs.service, r.end.Sub(r.start))
}

// VersionWindow opens a window on the answers by version: the function it
// returns gives what was answered from the window's opening until the call.
// A canary step is judged on its own answers, not on what came before it
// (a fresh process's first, slow requests; an earlier, smaller share).
func (g *Generator) VersionWindow() func() map[string]VersionStat {
	opened := g.versionTotals()
	return func() map[string]VersionStat { return g.versionTotals().since(opened) }
}

// versionTotals merges the shards' counts by version into a copy.
func (g *Generator) versionTotals() versionTotals {
	merged := versionTotals{}
	for _, s := range g.shards {
		s.mu.Lock()
		for v, vs := range s.byVersion {
			m := merged[v]
			if m == nil {
				m = &versionStat{service: newHist(g.highest, rowDigits)}
				merged[v] = m
			}
			m.answers += vs.answers
			m.errors += vs.errors
			m.service.Merge(vs.service)
		}
		s.mu.Unlock()
	}
	return merged
}

// versionTotals are the answers by version up to one moment.
type versionTotals map[string]*versionStat

// since is what t holds beyond earlier, an earlier reading of the same
// generator: counts only grow, so each histogram bucket subtracts.
func (t versionTotals) since(earlier versionTotals) map[string]VersionStat {
	out := make(map[string]VersionStat, len(t))
	for v, m := range t {
		answers, errs, service := m.answers, m.errors, m.service
		if was := earlier[v]; was != nil {
			answers -= was.answers
			errs -= was.errors
			now, before := m.service.Export(), was.service.Export()
			for i := range min(len(now.Counts), len(before.Counts)) {
				now.Counts[i] -= before.Counts[i]
			}
			service = hdr.Import(now)
		}
		if answers == 0 {
			continue
		}
		out[v] = VersionStat{Answers: answers, Errors: errs, P99: time.Duration(service.ValueAtQuantile(99)) * time.Microsecond}
	}
	return out
}
