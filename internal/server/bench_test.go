package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/postgres"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// benchRuns is the history the API benchmarks read.
const benchRuns = 10_000

// seedHistory writes n runs over four environments and five statuses, the
// newest with 40 tasks and 300 events, as a server's journal holds them.
func seedHistory(tb testing.TB, st store.Store, n int) (newest string) {
	tb.Helper()
	ctx := context.Background()
	envs := []string{"staging", "production", "qa", "canary"}
	statuses := []store.RunStatus{store.RunSucceeded, store.RunSucceeded, store.RunSucceeded, store.RunRolledBack, store.RunFailed}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plan := []byte(`{"name":"rolling","stages":[]}`)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Minute)
		r, err := st.CreateRun(ctx, store.Run{ID: store.NewRunID(at), Env: envs[i%len(envs)], Pipeline: "rolling", Version: fmt.Sprintf("v%d", i),
			Artifact: "/srv/a.tar.gz", SHA256: strings.Repeat("a", 64), Owner: "bench", Plan: plan, Status: statuses[i%len(statuses)],
			StartedAt: at, EndedAt: at.Add(90 * time.Second)})
		if err != nil {
			tb.Fatal(err)
		}
		newest = r.ID
	}
	for i := range 40 {
		t := store.TaskRecord{RunID: newest, Stage: fmt.Sprintf("batch-%d", i/4+1), Job: fmt.Sprintf("web-%d", i%4+1), Index: i % 4, Kind: "detach", Host: fmt.Sprintf("web-%d", i%4+1)}
		if _, err := st.StartTask(ctx, t); err != nil {
			tb.Fatal(err)
		}
		t.Status = store.TaskPassed
		if err := st.FinishTask(ctx, t); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range 300 {
		if _, err := st.AppendEvent(ctx, store.Event{RunID: newest, Type: "draining", Host: "web-1", Message: fmt.Sprintf("event %d", i)}); err != nil {
			tb.Fatal(err)
		}
	}
	return newest
}

// BenchmarkAPI measures GET /api/v1/runs (a page of 50, and a filtered
// page) and GET /api/v1/runs/{id} over HTTP on loopback with 10,000 runs
// in history, on SQLite and on PostgreSQL; the peer is the same read
// straight from the store, in the same run. Each sub-benchmark reports
// p50 and p99 in microseconds.
func BenchmarkAPI(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"sqlite", func(b *testing.B) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "state.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"postgres", func(b *testing.B) store.Store {
			pg := proctest.StartPostgres(b)
			st, err := postgres.Open(context.Background(), pg.NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			defer st.Close()
			f := fixtureOn(b, st)
			newest := seedHistory(b, st, benchRuns)
			// A page from the middle of the history: the cursor is the
			// 5,000th run.
			half, err := st.QueryRuns(context.Background(), store.RunQuery{Limit: benchRuns / 2, Brief: true})
			if err != nil || len(half) == 0 {
				b.Fatal(err)
			}
			middle := half[len(half)-1].ID
			token := f.tokens[RoleViewer]
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for _, c := range []struct {
				name  string
				path  string
				store func(ctx context.Context) error
			}{
				{"list", "/api/v1/runs", func(ctx context.Context) error {
					_, err := st.QueryRuns(ctx, store.RunQuery{Limit: 51, Brief: true})
					return err
				}},
				{"list-filtered", "/api/v1/runs?env=production&status=succeeded&before=" + middle, func(ctx context.Context) error {
					_, err := st.QueryRuns(ctx, store.RunQuery{Env: "production", Status: store.RunSucceeded, Before: middle, Limit: 51, Brief: true})
					return err
				}},
				{"get", "/api/v1/runs/" + newest, func(ctx context.Context) error {
					if _, err := st.GetRun(ctx, newest); err != nil {
						return err
					}
					_, err := st.Tasks(ctx, newest)
					return err
				}},
			} {
				b.Run(c.name+"/api", func(b *testing.B) {
					h := hdr.New(1, int64(10*time.Second/time.Microsecond), 3)
					req, _ := http.NewRequest("GET", f.ts.URL+c.path, nil)
					req.Header.Set("Authorization", "Bearer "+token)
					for b.Loop() {
						t0 := time.Now()
						resp, err := client.Do(req)
						if err != nil {
							b.Fatal(err)
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Fatalf("%s: %d", c.path, resp.StatusCode)
						}
						_ = h.RecordValue(time.Since(t0).Microseconds())
					}
					b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs")
					b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs")
				})
				b.Run(c.name+"/store", func(b *testing.B) {
					h := hdr.New(1, int64(10*time.Second/time.Microsecond), 3)
					ctx := context.Background()
					for b.Loop() {
						t0 := time.Now()
						if err := c.store(ctx); err != nil {
							b.Fatal(err)
						}
						_ = h.RecordValue(time.Since(t0).Microseconds())
					}
					b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs")
					b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs")
				})
			}
		})
	}
}

// fixtureOn is newFixture on a given store.
func fixtureOn(tb testing.TB, st store.Store) *fixture {
	return newFixtureWith(tb, func(string) store.Store { return st })
}
