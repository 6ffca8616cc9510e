package loadgen

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func okServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Version", "v1")
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// The open model sends at the rate asked for, whatever the client. The rate
// is far below what the machine can do, even under -race beside other
// packages' tests: this checks the scheduler, not the machine (the
// benchmarks measure how fast it can go).
func TestRateAccuracy(t *testing.T) {
	t.Parallel()
	url := okServer(t)
	for _, client := range []ClientKind{ClientGo, ClientRaw} {
		t.Run(string(client), func(t *testing.T) {
			t.Parallel()
			const rate, secs = 100, 2
			rep := run(t, Config{Targets: []Target{{URL: url}}, Rate: rate, Duration: secs * time.Second, Client: client})
			if rep.Requests.Total != rate*secs || rep.Requests.OK != rate*secs {
				t.Errorf("total %d ok %d, want %d", rep.Requests.Total, rep.Requests.OK, rate*secs)
			}
			if got := rep.AchievedRate; math.Abs(got-rate)/rate > 0.03 {
				t.Errorf("achieved %.1f/s, want %d/s within 3%%", got, rate)
			}
			if rep.Interrupted {
				t.Error("a run that reached its duration is marked interrupted")
			}
			if rep.StartLag.Count != rate*secs || rep.StartLag.P50 > Millis(50*time.Millisecond) {
				t.Errorf("start lag %+v", rep.StartLag)
			}
			if !rep.Evaluate(Thresholds{MinRate: 0.97}) {
				t.Errorf("thresholds failed: %+v", rep.Thresholds)
			}
			for i, row := range rep.Timeline.Rows[:secs] {
				if row.Sent < rate*8/10 || row.Sent > rate*12/10 {
					t.Errorf("second %d: sent %d, want about %d", i, row.Sent, rate)
				}
			}
		})
	}
}

// stallServer answers at once, except that requests arriving in the stall
// window wait until it ends: the server is stalled for that long.
func stallServer(t *testing.T, stallAt, stallFor time.Duration) string {
	t.Helper()
	t0 := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Since(t0)
		if now >= stallAt && now < stallAt+stallFor {
			timer := time.NewTimer(stallAt + stallFor - now) // the stall being simulated
			select {
			case <-timer.C:
			case <-r.Context().Done():
			}
			timer.Stop()
		}
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// A server that stalls for 500ms shows as 500ms of latency: requests keep
// being sent on schedule during the stall and each one's latency counts
// from when it was due. A closed-loop client would have waited and hidden
// it (coordinated omission).
func TestStallShowsAsLatencyFromDueTime(t *testing.T) {
	t.Parallel()
	url := stallServer(t, 300*time.Millisecond, 500*time.Millisecond)
	g, err := New(Config{Targets: []Target{{URL: url}}, Rate: 200, Duration: 1200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	<-g.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := g.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, rep)
	if rep.Requests.Total != 240 || rep.Requests.OK != 240 {
		t.Fatalf("requests %+v, want 240 ok", rep.Requests)
	}
	if p99 := rep.Latency.P99.Duration(); p99 < 400*time.Millisecond {
		t.Errorf("p99 %s, want at least 400ms: the stall is hidden", p99)
	}
	if max := rep.Latency.Max.Duration(); max < 450*time.Millisecond {
		t.Errorf("max %s, want about 500ms", max)
	}
	// About 100 requests were due during the stall: all were sent on time.
	if rep.PeakConcurrency < 50 {
		t.Errorf("peak concurrency %d: requests were not sent during the stall", rep.PeakConcurrency)
	}
	// The latency is the server's stall, not the generator's own lateness.
	if rep.Requests.Dropped != 0 || rep.StartLag.P99 > rep.Latency.P99/2 {
		t.Errorf("dropped %d, start lag p99 %s: the generator fell behind", rep.Requests.Dropped, rep.StartLag.P99)
	}
	if rep.Service.Max.Duration() < 400*time.Millisecond {
		t.Errorf("service time max %s: the server did not stall", rep.Service.Max)
	}
	if rep.Evaluate(Thresholds{P99: 250 * time.Millisecond}) {
		t.Error("a 500ms stall passed a 250ms p99 threshold")
	}
}

// With concurrency capped, requests that cannot start within MaxLag are
// dropped and count as failed.
func TestDropsWhenConcurrencyIsCapped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		timer := time.NewTimer(100 * time.Millisecond) // a slow server: 100ms per answer
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(srv.Close)
	rep := run(t, Config{
		Targets:        []Target{{URL: srv.URL}},
		Rate:           100,
		Duration:       time.Second,
		MaxConcurrency: 2,
		MaxLag:         50 * time.Millisecond,
	})
	q := rep.Requests
	if q.Total != 100 {
		t.Fatalf("total %d, want 100", q.Total)
	}
	// Two workers at 100ms each serve about 20 of the 100.
	if q.Dropped < 50 || q.OK < 10 || q.Dropped+q.OK != 100 {
		t.Errorf("requests %+v: want most dropped, the rest ok", q)
	}
	if q.Failed != q.Dropped || rep.Outcomes["dropped"] != q.Dropped {
		t.Errorf("failed %d, dropped %d: dropped requests must count as failed", q.Failed, q.Dropped)
	}
	if rep.PeakConcurrency > 2 {
		t.Errorf("peak concurrency %d above the cap of 2", rep.PeakConcurrency)
	}
	if rep.Evaluate(Thresholds{MaxFailed: -1, MaxDropped: 0}) {
		t.Error("drops passed max_dropped 0")
	}
}

// The version header is counted per second: the mix moves from v1 to v2.
func TestVersionsCountedPerSecond(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := "v1"
		if n.Add(1) > 150 {
			v = "v2"
		}
		w.Header().Set("X-Served-By", v)
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	rep := run(t, Config{Targets: []Target{{URL: srv.URL}}, Rate: 100, Duration: 3 * time.Second, VersionHeader: "x-served-by"})
	if want := []VersionCount{{"v1", 150}, {"v2", 150}}; len(rep.Versions) != 2 || rep.Versions[0] != want[0] || rep.Versions[1] != want[1] {
		t.Fatalf("versions %v, want %v", rep.Versions, want)
	}
	rows := rep.Timeline.Rows
	var sum [2]int64
	both := false
	for _, r := range rows {
		sum[0] += r.Versions["v1"]
		sum[1] += r.Versions["v2"]
		both = both || (r.Versions["v1"] > 0 && r.Versions["v2"] > 0)
	}
	if sum != [2]int64{150, 150} {
		t.Errorf("per-second counts add up to %v, want [150 150]", sum)
	}
	if first := rows[0].Versions; first["v2"] != 0 || first["v1"] < 50 {
		t.Errorf("first second %v, want only v1", first)
	}
	last := rows[len(rows)-1].Versions
	if len(last) == 0 {
		last = rows[len(rows)-2].Versions
	}
	if last["v1"] != 0 || last["v2"] == 0 {
		t.Errorf("last second %v, want only v2", last)
	}
	if !both {
		t.Error("no second saw both versions")
	}
	if mix := versionMix(rep.Timeline, 12); mix == "" {
		t.Error("no version mix")
	}
}

// Start, Mark and Stop: the deploy engine's way. Stop ends the run early;
// events come back on the report's time axis.
func TestStartMarkStop(t *testing.T) {
	t.Parallel()
	url := okServer(t)
	seconds := make(chan Row, 100)
	g, err := New(Config{Targets: []Target{{URL: url}}, Rate: 100, OnSecond: func(r Row) { seconds <- r }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Stop(context.Background()); err == nil {
		t.Error("Stop before Start did not fail")
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err == nil {
		t.Error("second Start did not fail")
	}
	g.Mark(Event{Host: "staging-1", Type: "detach"})
	first := <-seconds // the first second has finished
	if first.T != 0 || first.Sent < 50 {
		t.Errorf("first second %+v", first)
	}
	if s := g.Snapshot(); s.Sent < 50 || s.Failed != 0 {
		t.Errorf("snapshot %+v", s)
	}
	g.Mark(Event{Host: "staging-1", Type: "attached", Detail: "healthy"})
	rep, err := g.Stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, rep)
	if !rep.Interrupted {
		t.Error("a run ended by Stop is not marked interrupted")
	}
	if len(rep.Events) != 2 || rep.Events[0].Type != "detach" || rep.Events[1].T < 1 || rep.Events[1].Host != "staging-1" {
		t.Errorf("events %+v", rep.Events)
	}
	if rep.Requests.Failed != 0 || rep.Requests.Total < 100 || rep.Duration < 1 {
		t.Errorf("requests %+v in %.3fs", rep.Requests, rep.Duration)
	}
	again, _ := g.Stop(context.Background())
	if again != rep {
		t.Error("a second Stop returned another report")
	}
	select {
	case <-g.Done():
	default:
		t.Error("Done not closed after Stop")
	}
}

// When Stop's context ends, requests in flight are aborted: each still gets
// one outcome, and Stop returns promptly.
func TestStopAbortsRequestsInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	for _, client := range []ClientKind{ClientGo, ClientRaw} {
		t.Run(string(client), func(t *testing.T) {
			g, err := New(Config{Targets: []Target{{URL: srv.URL}}, Rate: 50, Timeout: time.Minute, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Start(); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				<-arrived
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			begin := time.Now()
			rep, err := g.Stop(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(begin); d > 5*time.Second {
				t.Errorf("Stop took %s", d)
			}
			checkInvariants(t, rep)
			if rep.Outcomes["aborted"] < 3 || rep.Requests.OK != 0 {
				t.Errorf("outcomes %v, want the requests in flight aborted", nonZero(rep.Outcomes))
			}
		})
	}
}

// The closed loop keeps N connections busy.
func TestClosedLoop(t *testing.T) {
	t.Parallel()
	url := okServer(t)
	for _, client := range []ClientKind{ClientGo, ClientRaw} {
		t.Run(string(client), func(t *testing.T) {
			t.Parallel()
			rep := run(t, Config{Targets: []Target{{URL: url}, {URL: url, Method: "POST", Body: []byte("b")}},
				Connections: 4, Duration: 300 * time.Millisecond, Client: client})
			if rep.Mode != modeClosed || rep.Connections != 4 || rep.PeakConcurrency > 4 {
				t.Errorf("mode %s connections %d peak %d", rep.Mode, rep.Connections, rep.PeakConcurrency)
			}
			if rep.Requests.OK < 100 || rep.Requests.Failed != 0 || rep.AchievedRate <= 0 {
				t.Errorf("requests %+v rate %.0f", rep.Requests, rep.AchievedRate)
			}
			if rep.StartLag.Count != 0 {
				t.Errorf("start lag recorded in closed loop: %+v", rep.StartLag)
			}
			if rep.Evaluate(Thresholds{MinRate: 0.99}); len(rep.Thresholds) != 2 {
				t.Errorf("thresholds %+v: min_rate must be skipped in closed loop", rep.Thresholds)
			}
		})
	}
}
