package loadgen

import (
	"slices"
	"strconv"
	"time"
)

// buildReport merges the shards into the final report. Called once, after
// every worker has ended.
func (g *Generator) buildReport() *Report {
	latency := newHist(g.highest, runDigits)
	service := newHist(g.highest, runDigits)
	lag := newHist(g.highest, runDigits)
	var outcomes [numOutcomes]int64
	codes := map[int]int64{}
	versions := newBoundedCounts(maxRunVersions)
	var samples []ErrorSample
	rep := &Report{
		Schema:          SchemaVersion,
		Mode:            modeOpen,
		Client:          string(g.client),
		Started:         g.t0,
		TargetRate:      g.cfg.Rate,
		Timeout:         Millis(g.cfg.Timeout),
		VersionHeader:   g.verKey,
		PeakConcurrency: int(g.peak.Load()),
	}
	if g.closed {
		rep.Mode = modeClosed
		rep.Connections = g.cfg.Connections
	} else {
		rep.MaxConcurrency = g.cfg.MaxConcurrency
		rep.MaxLag = Millis(g.cfg.MaxLag)
	}
	var lastSent, lastEnd time.Time
	for _, s := range g.shards {
		s.mu.Lock()
		latency.Merge(s.latency)
		service.Merge(s.service)
		lag.Merge(s.lag)
		for i, n := range s.outcomes {
			outcomes[i] += n
		}
		for c, n := range s.codes {
			if n > 0 {
				codes[c] += n
			}
		}
		versions.merge(&s.versions)
		rep.Requests.Sent += s.sent
		rep.Requests.Retried += s.retried
		rep.BytesReceived += s.bytesIn
		rep.BytesSent += s.bytesOut
		for o, list := range s.samples {
			for _, e := range list {
				samples = append(samples, ErrorSample{
					Outcome: Outcome(o).String(),
					T:       roundSeconds(e.at.Sub(g.t0)),
					Message: e.msg,
				})
			}
		}
		if s.lastSent.After(lastSent) {
			lastSent = s.lastSent
		}
		if s.lastEnd.After(lastEnd) {
			lastEnd = s.lastEnd
		}
		s.mu.Unlock()
	}
	rep.Latency = percentilesOf(latency)
	rep.Service = percentilesOf(service)
	if g.closed {
		rep.Service = rep.Latency
	}
	rep.StartLag = percentilesOf(lag)

	rep.Outcomes = make(map[string]int64, numOutcomes)
	for i, n := range outcomes {
		rep.Outcomes[Outcome(i).String()] = n
		rep.Requests.Total += n
		if Outcome(i) == OK {
			rep.Requests.OK = n
		} else {
			rep.Requests.Failed += n
		}
	}
	rep.Requests.Dropped = outcomes[Dropped]
	rep.StatusCodes = make(map[string]int64, len(codes))
	for c, n := range codes {
		rep.StatusCodes[strconv.Itoa(c)] = n
	}
	rep.Versions = versions.list()

	// Samples: the earliest few of each outcome.
	slices.SortStableFunc(samples, func(a, b ErrorSample) int {
		if a.Outcome != b.Outcome {
			return outcomeIndex(a.Outcome) - outcomeIndex(b.Outcome)
		}
		return compareFloats(a.T, b.T)
	})
	rep.Errors = []ErrorSample{}
	for i, e := range samples {
		if i >= samplesPerOutcome && samples[i-samplesPerOutcome].Outcome == e.Outcome {
			continue
		}
		rep.Errors = append(rep.Errors, e)
	}

	g.mu.Lock()
	window := g.stopAt.Sub(g.t0)
	rep.Interrupted = !g.natural
	rep.Timeline = g.tl.snapshot(g.cfg.TimelineRows)
	rep.Events = make([]Event, len(g.events))
	for i, e := range g.events {
		e.T = roundSeconds(e.Time.Sub(g.t0))
		rep.Events[i] = e
	}
	rep.EventsDropped = g.eventsDropped
	g.mu.Unlock()

	if g.closed {
		span := lastEnd.Sub(g.t0)
		rep.Duration = roundSeconds(window)
		if span > 0 {
			rep.AchievedRate = roundRate(float64(rep.Requests.Total) / span.Seconds())
		}
	} else {
		if d := lastSent.Sub(g.t0); d > window {
			window = d
		}
		rep.Duration = roundSeconds(window)
		if window > 0 {
			rep.AchievedRate = roundRate(float64(rep.Requests.Sent) / window.Seconds())
		}
	}
	rep.Targets = make([]TargetInfo, len(g.lanes))
	for i, l := range g.lanes {
		rep.Targets[i] = TargetInfo{Label: l.Label, Method: l.method, URL: l.URL, Weight: l.Weight}
	}
	rep.Thresholds = []ThresholdResult{}
	return rep
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

func roundRate(r float64) float64 {
	return float64(int64(r*100+0.5)) / 100
}

// outcomeIndex is the report order of an outcome name.
func outcomeIndex(name string) int {
	for i, n := range outcomeNames {
		if n == name {
			return i
		}
	}
	return len(outcomeNames)
}

func compareFloats(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
