package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// versionServer answers in turn as v1 and v2, as a balancer spreading
// requests over a baseline and a canary would: v2 is slower by v2Delay
// and answers 500 to every tenth of its requests; v1 answers 404 to every
// seventh of its own, a client error that is not the server's. It counts
// what it answered.
type versionServer struct {
	v2Delay time.Duration

	mu                    sync.Mutex
	n                     int
	v1, v2, v1NotFound    int
	v2Errors, unversioned int
}

func (s *versionServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.n++
	n := s.n
	version, status := "", http.StatusOK
	switch {
	case n%50 == 0:
		// Without the header: not any version's.
		s.unversioned++
	case n%2 == 1:
		version = "v1"
		s.v1++
		if s.v1%7 == 0 {
			status = http.StatusNotFound
			s.v1NotFound++
		}
	default:
		version = "v2"
		s.v2++
		if s.v2%10 == 0 {
			status = http.StatusInternalServerError
			s.v2Errors++
		}
	}
	s.mu.Unlock()
	if version == "v2" {
		time.Sleep(s.v2Delay) // v2's latency, not synchronisation
	}
	if version != "" {
		w.Header().Set("X-Version", version)
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("answer " + strconv.Itoa(n) + "\n"))
}

func TestVersionStats(t *testing.T) {
	// enough answers of each version that a few slow ones (a connection's
	// first, a stalled scheduler) stay under 1%: p99 compares the versions.
	const v2Delay, enough = 8 * time.Millisecond, 400
	tests := []struct {
		name string
		cfg  Config
	}{
		{"closed loop, raw client", Config{Connections: 4, Client: ClientRaw}},
		{"closed loop, Go client", Config{Connections: 4, Client: ClientGo}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &versionServer{v2Delay: v2Delay}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			cfg := tt.cfg
			cfg.Targets = []Target{{URL: ts.URL + "/"}}
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.versionTotals().since(nil); len(got) != 0 {
				t.Errorf("before the run: %+v", got)
			}
			rep := runUntil(t, g, func() bool {
				srv.mu.Lock()
				defer srv.mu.Unlock()
				return srv.v1 >= enough && srv.v2 >= enough
			})
			stats := g.versionTotals().since(nil)
			srv.mu.Lock()
			defer srv.mu.Unlock()
			t.Logf("server: v1 %d (%d 404s), v2 %d (%d 500s), %d without a version; stats %+v", srv.v1, srv.v1NotFound, srv.v2, srv.v2Errors, srv.unversioned, stats)
			if len(stats) != 2 {
				t.Fatalf("versions %v, want v1 and v2 only (answers without the header are no version's)", stats)
			}
			v1, v2 := stats["v1"], stats["v2"]
			if v1.Answers != int64(srv.v1) || v2.Answers != int64(srv.v2) {
				t.Errorf("answers v1 %d, v2 %d; the server gave %d and %d", v1.Answers, v2.Answers, srv.v1, srv.v2)
			}
			if v1.Errors != 0 {
				t.Errorf("v1 has %d errors: its 404s are not errors", v1.Errors)
			}
			if v2.Errors != int64(srv.v2Errors) {
				t.Errorf("v2 has %d errors, the server answered %d 500s", v2.Errors, srv.v2Errors)
			}
			if v2.P99 < v2Delay || v2.P99 <= v1.P99 {
				t.Errorf("p99 v1 %s, v2 %s: want v2's at least %s and above v1's", v1.P99, v2.P99, v2Delay)
			}
			// The report counts the same answers.
			if rep.StatusCodes["500"] != int64(srv.v2Errors) {
				t.Errorf("report: %d 500s, want %d", rep.StatusCodes["500"], srv.v2Errors)
			}
		})
	}
}

// runUntil runs g until enough holds, then stops it, waiting for the
// requests in flight; both within deadlines.
func runUntil(t *testing.T, g *Generator, enough func() bool) *Report {
	t.Helper()
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 30*time.Second, "enough answers", enough)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := g.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the requests in flight did not end within 30s")
	}
	checkInvariants(t, rep)
	return rep
}

// recordVersion's rules, answer by answer: only answers that carry the
// version and started count; only 5xx are errors; at most maxRunVersions
// versions are kept.
func TestRecordVersion(t *testing.T) {
	start := time.Unix(1700000000, 0)
	answer := func(version string, outcome Outcome, took time.Duration) *result {
		return &result{start: start, end: start.Add(took), version: version, hasVer: version != "", outcome: outcome}
	}
	tests := []struct {
		name    string
		results []*result
		want    map[string]VersionStat
	}{
		{
			name: "5xx and cut-off answers are errors; 4xx are not",
			results: []*result{
				answer("v1", OK, 2*time.Millisecond), answer("v1", HTTP4xx, time.Millisecond),
				answer("v2", HTTP5xx, 30*time.Millisecond), answer("v2", OK, 4*time.Millisecond), answer("v2", Truncated, 5*time.Millisecond),
			},
			want: map[string]VersionStat{
				"v1": {Answers: 2, Errors: 0, P99: 2 * time.Millisecond},
				"v2": {Answers: 3, Errors: 2, P99: 30 * time.Millisecond}, // the 500 and the cut-off answer
			},
		},
		{
			name: "without the header or never started: not counted",
			results: []*result{
				answer("", HTTP5xx, time.Millisecond),
				{version: "v1", hasVer: true, outcome: HTTP5xx},
				answer("v1", OK, time.Millisecond),
			},
			want: map[string]VersionStat{"v1": {Answers: 1, P99: time.Millisecond}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Generator{highest: int64(time.Minute / time.Microsecond), shards: []*shard{newShard(int64(time.Minute / time.Microsecond)), newShard(int64(time.Minute / time.Microsecond))}}
			for i, r := range tt.results {
				s := g.shards[i%2] // spread over shards: versionTotals merges them
				s.mu.Lock()
				s.recordVersion(r, g.highest)
				s.mu.Unlock()
			}
			got := g.versionTotals().since(nil)
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for v, w := range tt.want {
				gv := got[v]
				// The histogram keeps two significant digits.
				if gv.Answers != w.Answers || gv.Errors != w.Errors || gv.P99 < w.P99*99/100 || gv.P99 > w.P99*101/100 {
					t.Errorf("%s: got %+v, want %+v", v, gv, w)
				}
			}
		})
	}

	t.Run("at most maxRunVersions versions", func(t *testing.T) {
		highest := int64(time.Minute / time.Microsecond)
		g := &Generator{highest: highest, shards: []*shard{newShard(highest)}}
		for i := range maxRunVersions + 5 {
			g.shards[0].recordVersion(answer("v"+strconv.Itoa(i), OK, time.Millisecond), highest)
		}
		if got := g.versionTotals().since(nil); len(got) != maxRunVersions {
			t.Errorf("%d versions kept, want %d", len(got), maxRunVersions)
		}
	})
}

// A window holds only the answers recorded after it opened: their counts
// and a p99 that the slow answers before it do not raise.
func TestVersionWindow(t *testing.T) {
	start := time.Unix(1700000000, 0)
	answer := func(version string, outcome Outcome, took time.Duration) *result {
		return &result{start: start, end: start.Add(took), version: version, hasVer: true, outcome: outcome}
	}
	highest := int64(time.Minute / time.Microsecond)
	g := &Generator{highest: highest, shards: []*shard{newShard(highest), newShard(highest)}}
	record := func(n int, version string, outcome Outcome, took time.Duration) {
		for i := range n {
			s := g.shards[i%2]
			s.mu.Lock()
			s.recordVersion(answer(version, outcome, took), highest)
			s.mu.Unlock()
		}
	}
	record(50, "v1", OK, 2*time.Millisecond)
	record(20, "v2", HTTP5xx, 900*time.Millisecond) // a fresh process's slow, failing start
	answered := g.VersionWindow()
	if got := answered(); len(got) != 0 {
		t.Fatalf("a window just opened holds %+v, want nothing", got)
	}
	record(200, "v2", OK, 3*time.Millisecond)
	record(5, "v2", HTTP5xx, 4*time.Millisecond)
	record(100, "v3", OK, time.Millisecond)
	got := answered()
	if _, ok := got["v1"]; ok || len(got) != 2 {
		t.Fatalf("window %+v, want v2 and v3 only (v1 answered nothing since it opened)", got)
	}
	if v2 := got["v2"]; v2.Answers != 205 || v2.Errors != 5 || v2.P99 < 3*time.Millisecond || v2.P99 > 5*time.Millisecond {
		t.Errorf("v2 in the window %+v, want 205 answers, 5 errors, p99 3-5ms (not the 900ms before it)", v2)
	}
	if v3 := got["v3"]; v3.Answers != 100 || v3.Errors != 0 {
		t.Errorf("v3 in the window %+v, want 100 answers, no errors", v3)
	}
	all := g.versionTotals().since(nil)
	if v2 := all["v2"]; v2.Answers != 225 || v2.Errors != 25 || v2.P99 < 800*time.Millisecond {
		t.Errorf("v2 since the run began %+v, want 225 answers, 25 errors and the slow start in its p99", v2)
	}
}
