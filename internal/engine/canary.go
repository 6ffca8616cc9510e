package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// ErrCanaryFailed is a canary analysis that found the canary worse than
// its baseline: the run stops, the canary leaves the load balancer at
// once, and it is rolled back.
var ErrCanaryFailed = errors.New("the canary failed its analysis")

// PromoteKey is how the journal records `zerodown promote RUN`: an
// approval under a key no stage name can take; the canary's analyses end
// at once and its remaining steps go by without waiting.
const PromoteKey = "promote:canary"

// Canary is what the engine knows of a run's canary, for the abort and the
// rollback: its hosts and every host's weight outside it.
type Canary struct {
	Hosts []string
	Base  int
}

// maxWeight is the highest weight the canary sets: HAProxy's limit
// (zerodown lb takes up to 1000).
const maxWeight = 256

// canaryWeights are the weight of each canary target and of each other
// target that give the canary share percent of the traffic, as close as
// whole weights up to maxWeight allow.
func canaryWeights(share, canary, others, base int) (wc, wb int) {
	switch {
	case share <= 0:
		return base, base
	case share >= 100 || others == 0:
		return base, 0
	}
	bestErr := math.Inf(1)
	for b := maxWeight; b >= 1; b-- {
		// Clamped, not skipped: a share no whole weights reach (99% of
		// four hosts) gets the closest one, never weight 0 everywhere.
		c := min(max(int(math.Round(float64(share*others*b)/float64((100-share)*canary))), 1), maxWeight)
		got := 100 * float64(c*canary) / float64(c*canary+b*others)
		if d := math.Abs(got - float64(share)); d < bestErr-1e-9 {
			bestErr, wc, wb = d, c, b
		}
	}
	return wc, wb
}

// setWeights gives the canary hosts share percent of the traffic.
func (e *Engine) setWeights(t pipeline.Task) error {
	w := t.Weights
	if w == nil {
		return errors.New("weights: no canary")
	}
	if sh, ok := e.LB.(lb.Sharer); ok {
		if err := e.applyShare(sh, w.Canary, w.Share); err != nil {
			return err
		}
		if w.Share == 0 {
			e.emit(Event{Type: EvInfo, Message: "every host back on an even share"})
		} else {
			e.emit(Event{Type: EvCanary, Message: fmt.Sprintf("canary at %d%% of the traffic: the listener weighs the canary's target group %d, the others' %d", w.Share, w.Share, 100-w.Share)})
		}
		return nil
	}
	isCanary := map[string]bool{}
	for _, h := range w.Canary {
		isCanary[h] = true
	}
	wc, wb := canaryWeights(w.Share, len(w.Canary), len(e.Hosts)-len(w.Canary), w.Base)
	if err := e.applyWeights(isCanary, wc, wb); err != nil {
		return err
	}
	if w.Share == 0 {
		e.emit(Event{Type: EvInfo, Message: fmt.Sprintf("every host back on weight %d", w.Base)})
	} else {
		e.emit(Event{Type: EvCanary, Message: fmt.Sprintf("canary at %d%% of the traffic: weight %d on the canary, %d on the others", w.Share, wc, wb)})
	}
	return nil
}

func (e *Engine) applyWeights(isCanary map[string]bool, wc, wb int) error {
	wt, ok := e.LB.(lb.Weighter)
	if !ok {
		return errors.New("weights: this load balancer's driver cannot set weights")
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	for name, h := range e.Hosts {
		weight := wb
		if isCanary[name] {
			weight = wc
		}
		if err := wt.SetWeight(ctx, h.Target, weight); err != nil {
			return fmt.Errorf("set the weight of %s (%s) to %d: %w", name, h.Target, weight, err)
		}
	}
	return nil
}

// applyShare gives the canary hosts share percent of the traffic where the
// balancer weighs them as one group.
func (e *Engine) applyShare(sh lb.Sharer, canary []string, share int) error {
	targets := make([]string, 0, len(canary))
	for _, name := range canary {
		h, err := e.hostOf(name)
		if err != nil {
			return err
		}
		targets = append(targets, h.Target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultLBCallTimeout)
	defer cancel()
	if err := sh.SetShare(ctx, targets, share); err != nil {
		return fmt.Errorf("give the canary %d%% of the traffic: %w", share, err)
	}
	return nil
}

// resetWeights puts every host back on the canary's base weight (or an
// even share): before a failed canary is taken out (the others may have
// weight 0) and after a rollback.
func (e *Engine) resetWeights() {
	if e.Canary == nil {
		return
	}
	if sh, ok := e.LB.(lb.Sharer); ok {
		if err := e.applyShare(sh, e.Canary.Hosts, 0); err != nil {
			e.emit(Event{Type: EvInfo, Message: "could not put the shares back: " + err.Error()})
		}
		return
	}
	if err := e.applyWeights(nil, e.Canary.Base, e.Canary.Base); err != nil {
		e.emit(Event{Type: EvInfo, Message: "could not put the weights back: " + err.Error()})
	}
}

// analysisEvery is how often a canary is compared with its baseline.
const analysisEvery = 500 * time.Millisecond

// p99Floor is how much slower than the baseline's a canary's p99 may be
// whatever the percentage: below it, latency differences are noise.
// p99MinAnswers is how many answers of the step each side needs for their
// p99s to be compared at the step's end; p99EarlyAnswers how many for them
// to be compared before it. A p99 of a few hundred answers is their third
// slowest or so, which a stalled scheduler sets: judged at every tick it
// would fail a good canary now and then, judged once it rarely does. With
// a thousand, ten answers above it, it is steady enough to act on at once.
const (
	p99Floor        = 10 * time.Millisecond
	p99MinAnswers   = 100
	p99EarlyAnswers = 1000
)

// figures are one side's answers in a comparison.
type figures struct {
	requests, errors int64
	p99              time.Duration
}

func (f figures) rate() float64 {
	if f.requests == 0 {
		return 0
	}
	return 100 * float64(f.errors) / float64(f.requests)
}

func (f figures) String() string {
	s := fmt.Sprintf("%.1f%% errors (%d of %d)", f.rate(), f.errors, f.requests)
	if f.p99 > 0 {
		s += ", p99 " + f.p99.Round(10*time.Microsecond).String()
	}
	return s
}

// analyze compares the canary with the other hosts for the task's time,
// on the balancer's per-target counts and the verifier's per-version
// answers, and fails as soon as the canary is worse than the thresholds
// allow. `zerodown promote RUN` ends it early.
func (e *Engine) analyze(stop context.Context, t pipeline.Task) error {
	a := t.Analyze
	if a == nil {
		return errors.New("analyze: no canary")
	}
	e.mu.Lock()
	if e.canarySince.IsZero() {
		e.canarySince = time.Now()
	}
	e.mu.Unlock()
	isCanary := map[string]bool{}
	for _, name := range a.Canary {
		if h, ok := e.Hosts[name]; ok {
			isCanary[h.Target] = true
		}
	}
	statser, _ := e.LB.(lb.TargetStatser)
	var before map[string]lb.TargetStat
	if statser != nil {
		ctx, cancel := context.WithTimeout(stop, defaultLBCallTimeout)
		var err error
		before, err = statser.TargetStats(ctx)
		cancel()
		if err != nil {
			e.emit(Event{Type: EvInfo, Message: "the canary is compared on the load verifier's figures only: the load balancer's per-target counts could not be read: " + err.Error()})
			statser = nil
		}
	}
	if statser == nil && e.VersionWindow == nil {
		return errors.New("analyze: neither the load balancer's per-target counts nor a load verifier (verify: in zerodown.yaml) to compare the canary on")
	}
	if _, counts := e.LB.(lb.TargetStatser); !counts {
		e.mu.Lock()
		said := e.saidNoCounts
		e.saidNoCounts = true
		e.mu.Unlock()
		if !said {
			e.emit(Event{Type: EvInfo, Message: "the canary is compared on the load verifier's figures only: this load balancer counts no answers per target"})
		}
	}
	var answered func() map[string]loadgen.VersionStat
	if e.VersionWindow != nil {
		answered = e.VersionWindow()
	}
	window := time.Duration(a.For)
	start := time.Now()
	tick := time.NewTicker(analysisEvery)
	defer tick.Stop()
	var lbC, lbB, vC, vB figures
	for {
		select {
		case <-stop.Done():
			return ErrAborted
		case <-tick.C:
		}
		if by, ok := e.promotedBy(); ok {
			e.emit(Event{Type: EvInfo, Message: "promoted by " + by + ": the rest of the canary's analysis is skipped"})
			return nil
		}
		if statser != nil {
			ctx, cancel := context.WithTimeout(stop, defaultLBCallTimeout)
			now, err := statser.TargetStats(ctx)
			cancel()
			if err == nil {
				lbC, lbB = splitStats(before, now, isCanary)
			}
		}
		if answered != nil {
			vC, vB = splitVersions(answered(), e.Release.Version)
		}
		final := time.Since(start) >= window
		for _, side := range []struct {
			what   string
			c, b   figures
			hasP99 bool
		}{{"load balancer", lbC, lbB, false}, {"load verifier", vC, vB, true}} {
			if err := judge(side.what, side.c, side.b, side.hasP99, a.MaxErrorRate, a.MaxP99Increase, int64(a.MinRequests), final); err != nil {
				return fmt.Errorf("%w %s after it began serving: %v", ErrCanaryFailed, time.Since(e.canaryStart()).Round(time.Millisecond), err)
			}
		}
		if final {
			// Say what was not judged, so a pass is read for what it is.
			min := int64(a.MinRequests)
			var sides []string
			if statser != nil {
				s := fmt.Sprintf("load balancer canary %s, baseline %s", lbC, lbB)
				if lbC.requests < min {
					s += fmt.Sprintf(" (not judged: fewer than %d canary answers)", min)
				}
				sides = append(sides, s)
			}
			if answered != nil {
				s := fmt.Sprintf("verifier canary %s, baseline %s", vC, vB)
				switch need := p99Answers(min, true); {
				case vC.requests < min:
					s += fmt.Sprintf(" (not judged: fewer than %d canary answers)", min)
				case vC.requests < need || vB.requests < need:
					s += fmt.Sprintf(" (p99s not compared: fewer than %d answers on a side)", need)
				}
				sides = append(sides, s)
			}
			e.emit(Event{Type: EvCanary, Message: fmt.Sprintf("canary analysis passed over %s: %s", window, strings.Join(sides, "; "))})
			return nil
		}
	}
}

// canaryServing notes when the first canary host with the new release
// began serving: the clock of the abort's "after it began serving".
func (e *Engine) canaryServing(host string) {
	if e.Canary == nil || !slices.Contains(e.Canary.Hosts, host) {
		return
	}
	e.mu.Lock()
	if e.canarySince.IsZero() {
		e.canarySince = time.Now()
	}
	e.mu.Unlock()
}

func (e *Engine) canaryStart() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.canarySince
}

func (e *Engine) promotedBy() (string, bool) {
	if e.Journal == nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	by, ok, err := e.Journal.Approved(ctx, PromoteKey)
	return by, ok && err == nil
}

// p99Answers is how many answers each side needs for their p99s to be
// compared: at the step's end (final) or before it. A p99 of a few answers
// is their slowest one, which a fresh process's first requests set.
func p99Answers(min int64, final bool) int64 {
	if final {
		return max(min, p99MinAnswers)
	}
	return max(min, p99EarlyAnswers)
}

// judge fails the canary when, with enough answers, its error rate is
// more than maxRate points above the baseline's, or its p99 more than
// maxP99 percent (and p99Floor) above it: at the step's end (final) with
// p99MinAnswers on each side, before it with p99EarlyAnswers.
func judge(what string, c, b figures, hasP99 bool, maxRate, maxP99 float64, min int64, final bool) error {
	if c.requests < min {
		return nil
	}
	if c.rate() > b.rate()+maxRate {
		return fmt.Errorf("%s: the canary's error rate is %.1f%% (%d of %d), the baseline's %.1f%% (%d of %d): more than %g points above",
			what, c.rate(), c.errors, c.requests, b.rate(), b.errors, b.requests, maxRate)
	}
	if need := p99Answers(min, final); hasP99 && c.requests >= need && b.requests >= need && c.p99 > b.p99 {
		limit := time.Duration(float64(b.p99) * (1 + maxP99/100))
		if c.p99 > limit && c.p99-b.p99 > p99Floor {
			return fmt.Errorf("%s: the canary's p99 is %s, the baseline's %s: more than %g%% above", what, c.p99.Round(10*time.Microsecond), b.p99.Round(10*time.Microsecond), maxP99)
		}
	}
	return nil
}

// splitStats adds up what the balancer counted since before, for the
// canary's targets and for the others.
func splitStats(before, now map[string]lb.TargetStat, isCanary map[string]bool) (c, b figures) {
	for addr, n := range now {
		was := before[addr]
		if n.Requests < was.Requests { // the balancer restarted
			was = lb.TargetStat{}
		}
		side := &b
		if isCanary[addr] {
			side = &c
		}
		side.requests += int64(n.Requests - was.Requests)
		side.errors += int64(n.Errors - min(n.Errors, was.Errors))
	}
	return c, b
}

// splitVersions is the verifier's answers of the canary's version and of
// every other version; the baseline's p99 is the worst of the others'.
func splitVersions(stats map[string]loadgen.VersionStat, version string) (c, b figures) {
	for v, s := range stats {
		if v == version {
			c = figures{requests: s.Answers, errors: s.Errors, p99: s.P99}
			continue
		}
		b.requests += s.Answers
		b.errors += s.Errors
		b.p99 = max(b.p99, s.P99)
	}
	return c, b
}
