package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/engine/enginetest"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// BenchmarkRollingOverhead measures the engine's own cost per host: a
// rolling run one host at a time against in-memory drivers whose drains and
// health checks complete at once, so all time spent is the engine's
// (planning, journaling, events, polling, bookkeeping). Target: under 1 ms
// per host.
func BenchmarkRollingOverhead(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("hosts=%d/journal=memory", n), func(b *testing.B) {
			benchRolling(b, n, func(*testing.B) engine.Journal { return enginetest.NewJournal() })
		})
	}
	// The real journal: SQLite in WAL mode, a commit per task start, task end
	// and event.
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("hosts=%d/journal=sqlite", n), func(b *testing.B) {
			benchRolling(b, n, func(b *testing.B) engine.Journal {
				st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "state.db"), sqlite.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				run, err := st.CreateRun(context.Background(), store.Run{Env: "prod", Version: "v2"})
				if err != nil {
					b.Fatal(err)
				}
				return engine.StoreJournal{Store: st, RunID: run.ID}
			})
		})
	}
}

func benchRolling(b *testing.B, n int, journal func(*testing.B) engine.Journal) {
	{
		{
			var perHost time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				env := &config.Environment{Name: "prod", Strategy: config.Strategy{Rolling: &config.Rolling{}}}
				hosts := map[string]engine.Host{}
				var addrs []string
				for h := 0; h < n; h++ {
					name, addr := fmt.Sprintf("prod-%d", h), fmt.Sprintf("10.0.%d.%d:8080", h/250, h%250)
					env.Hosts = append(env.Hosts, config.Host{Name: name, Target: addr})
					hosts[name] = engine.Host{Name: name, Target: addr, Deployer: enginetest.NewHost("v1")}
					addrs = append(addrs, addr)
				}
				eng := &engine.Engine{
					LB: enginetest.NewLB(addrs...), Hosts: hosts, Journal: journal(b),
					MinHealthy: 1, Release: host.Release{Version: "v2"}, Rollback: config.RollbackAuto,
				}
				b.StartTimer()
				start := time.Now()
				p, err := pipeline.Rolling(env, nil)
				if err != nil {
					b.Fatal(err)
				}
				res := eng.Run(context.Background(), p, nil)
				perHost += time.Since(start) / time.Duration(n)
				if res.Status != engine.StatusSucceeded {
					b.Fatalf("status %s: %v", res.Status, res.Err)
				}
			}
			b.ReportMetric(float64(perHost.Microseconds())/float64(b.N), "µs/host")
		}
	}
}
