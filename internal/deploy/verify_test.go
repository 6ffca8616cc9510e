package deploy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/proctest"
)

// oneHealthy is a balancer with one healthy target, for the verifier.
type oneHealthy struct{}

func (oneHealthy) Targets(context.Context) ([]lb.Target, error) {
	return []lb.Target{{Address: "127.0.0.1:1", State: lb.StateHealthy}}, nil
}
func (oneHealthy) Attach(context.Context, string) error { return nil }
func (oneHealthy) Detach(context.Context, string) error { return nil }

// TestVerifierSamplesEndWithTheWatch checks what the run's end relies on:
// once the watch is stopped after finish, every second of the load —
// the last one too — has been handed to onSample, and nothing comes after.
// A sample journaled after the run's end is one a client following the
// run never sees: its stream ends with the run.
func TestVerifierSamplesEndWithTheWatch(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer app.Close()
	v, err := newVerifier(&config.Verify{URL: app.URL + "/", Rate: 50}, oneHealthy{}, t.TempDir(), "r-test")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var rows []loadgen.Row
	stopped := false
	v.onSample = func(r loadgen.Row) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			t.Errorf("a sample after the watch was stopped: %+v", r)
		}
		rows = append(rows, r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := v.start(ctx); err != nil {
		t.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); v.watch(watchCtx, func(error) {}) }()
	// One whole second of load sampled while the watch runs; finish then
	// hands over the part-second after it.
	proctest.Eventually(t, 10*time.Second, "the verifier's first one-second sample", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(rows) > 0
	})
	ver, err := v.finish()
	if err != nil {
		t.Fatal(err)
	}
	stopWatch()
	<-watched
	mu.Lock()
	stopped = true
	var sent int64
	for _, r := range rows {
		sent += r.Sent
	}
	mu.Unlock()
	if len(rows) == 0 || sent != ver.Report.Requests.Total {
		t.Fatalf("the samples handed over count %d requests in %d rows; the load sent %d", sent, len(rows), ver.Report.Requests.Total)
	}
}
