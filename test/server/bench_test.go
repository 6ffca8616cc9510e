package server

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestTakeoverBench measures lease takeovers (bench/server-takeover.sh runs
// it with ZERODOWN_BENCH_TAKEOVER=N, and ZERODOWN_BENCH_LEASE for a lease
// other than the tests' 3s): N rounds, each a run with no kill
// (the peer: how long a run takes here) and a run whose replica is
// SIGKILLed while a host drains, taken over by the other. Each round prints
// one "bench:" line; the last line has the medians.
func TestTakeoverBench(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ZERODOWN_BENCH_TAKEOVER"))
	if n <= 0 {
		t.Skip("set ZERODOWN_BENCH_TAKEOVER=N to measure N takeovers (bench/server-takeover.sh)")
	}
	lease := testLease
	if v := os.Getenv("ZERODOWN_BENCH_LEASE"); v != "" {
		var err error
		if lease, err = time.ParseDuration(v); err != nil {
			t.Fatalf("ZERODOWN_BENCH_LEASE: %v", err)
		}
	}
	h := startHA(t, 3, lease, lease, 0)
	h.deploy(t, h.a, "v1")
	ld := startLoad(t, h.lb, 2, 6, 1500*time.Millisecond, time.Duration(n)*time.Minute+time.Minute)
	var lock, first, end, killed, peer []time.Duration
	version := 1
	for round := 1; round <= n; round++ {
		version++
		p := h.deploy(t, h.a, fmt.Sprintf("v%d", version))
		version++
		k := h.killOn(t, fmt.Sprintf("v%d", version), "draining", syscall.SIGKILL)
		if k.run.Status != "succeeded" {
			t.Fatalf("round %d: run %s ended %s: %s", round, k.run.ID, k.run.Status, k.run.Error)
		}
		took := p.EndedAt.Sub(p.StartedAt)
		lock, first, end = append(lock, k.toLock()), append(first, k.toFirst()), append(end, k.toEnd())
		killed, peer = append(killed, k.took()), append(peer, took)
		t.Logf("bench: round %d lease %g lock %.3f first %.3f end %.3f killed-run %.3f peer-run %.3f",
			round, lease.Seconds(), k.toLock().Seconds(), k.toFirst().Seconds(), k.toEnd().Seconds(), k.took().Seconds(), took.Seconds())
		// A comes back, as a supervisor restarts it, for the next round.
		h.a = startServer(t, "replica A", h.a.cfg, h.a.url)
	}
	ld.check(t, 0, 0)
	t.Logf("bench: load %d GETs %d POSTs %d failed", ld.gets.Load(), ld.posts.Load(), ld.failed.Load())
	t.Logf("bench: median lease %g lock %.3f first %.3f end %.3f killed-run %.3f peer-run %.3f",
		lease.Seconds(), median(lock).Seconds(), median(first).Seconds(), median(end).Seconds(), median(killed).Seconds(), median(peer).Seconds())
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
