// Package loadgen is zerodown's load verifier: it fires HTTP requests at a
// constant rate (open model) or as fast as N connections allow (closed
// loop), gives every request exactly one outcome, and reports latency
// percentiles, a bounded per-second timeline with the serving versions,
// pass/fail thresholds, and JSON, JTL (JMeter CSV) and HTML reports.
//
// In the open model request i is due at start + i/Rate whatever the
// answers do, and its latency counts from that due time, so a stalled
// server shows as latency instead of being hidden (no coordinated
// omission); start lag is reported separately, and a request that cannot
// start within MaxLag of its due time is dropped, which is a failure.
//
// Use it as a library:
//
//	g, err := loadgen.New(loadgen.Config{
//		Targets: []loadgen.Target{{URL: "http://127.0.0.1:8080/"}},
//		Rate:    200,
//	})
//	if err != nil { ... }
//	g.Start()
//	g.Mark(loadgen.Event{Host: "staging-1", Type: "detach"})
//	rep, err := g.Stop(ctx)
//	pass := rep.Evaluate(loadgen.Thresholds{}) // no failed, no dropped request
//	rep.WriteHTML(f)
//
// or with Run, which stops by itself after Config.Duration.
package loadgen
