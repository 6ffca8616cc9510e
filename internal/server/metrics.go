package server

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/store"
)

// metrics are the replica's Prometheus metrics, on a registry of its own.
// They count what this replica executed; sum them over replicas.
type metrics struct {
	reg       *prometheus.Registry
	runs      *prometheus.CounterVec
	running   prometheus.Gauge
	runTime   *prometheus.HistogramVec
	stepTime  *prometheus.HistogramVec
	failed    *prometheus.CounterVec
	takeovers prometheus.Counter

	mu      sync.Mutex
	started map[taskKey]store.TaskRecord // tasks running here, as started
}

type taskKey struct {
	run, stage, job string
	index           int
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodown_server_runs_total",
			Help: "Runs this replica executed to their end, by environment and status (succeeded, failed, rolled_back, needs_attention, aborted).",
		}, []string{"env", "status"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zerodown_server_runs_running",
			Help: "Runs this replica executes now.",
		}),
		runTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zerodown_server_run_seconds",
			Help:    "Time runs took on this replica, from start (or takeover) to end, by environment and status.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600},
		}, []string{"env", "status"}),
		stepTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zerodown_server_step_seconds",
			Help:    "Time tasks took, by kind (detach, deploy, attach, ...) and outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"kind", "status"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodown_server_verifier_failed_requests_total",
			Help: "Requests the load verifiers of this replica's runs saw fail, by environment.",
		}, []string{"env"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zerodown_server_lease_takeovers_total",
			Help: "Runs this replica took over from an executor whose lease ran out.",
		}),
		started: map[taskKey]store.TaskRecord{},
	}
	m.reg.MustRegister(m.runs, m.running, m.runTime, m.stepTime, m.failed, m.takeovers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// runEnded counts a run this replica executed to its end.
func (m *metrics) runEnded(o *deploy.Outcome, took time.Duration) {
	st := string(o.Run.Status)
	m.runs.WithLabelValues(o.Run.Env, st).Inc()
	m.runTime.WithLabelValues(o.Run.Env, st).Observe(took.Seconds())
	if o.Verify != nil && o.Verify.Report != nil {
		s := o.Verify.Summary()
		m.failed.WithLabelValues(o.Run.Env).Add(float64(s.Failed))
	}
}

// taskStarted remembers when a task of this replica's run started, for
// its duration at the end.
func (m *metrics) taskStarted(t store.TaskRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started[taskKey{t.RunID, t.Stage, t.Job, t.Index}] = t
}

// forgetRun drops what taskStarted kept of a run this replica no longer
// executes: a run lost to another replica finishes its tasks there.
func (m *metrics) forgetRun(runID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.started {
		if k.run == runID {
			delete(m.started, k)
		}
	}
}

// taskFinished observes a finished task's duration. A task started before
// this replica took the run over is started again here, so every task
// that ran here is known; one skipped or cancelled before it started is
// not a step that took time.
func (m *metrics) taskFinished(t store.TaskRecord, at time.Time) {
	k := taskKey{t.RunID, t.Stage, t.Job, t.Index}
	m.mu.Lock()
	start, ok := m.started[k]
	delete(m.started, k)
	m.mu.Unlock()
	if ok {
		m.stepTime.WithLabelValues(start.Kind, string(t.Status)).Observe(at.Sub(start.StartedAt).Seconds())
	}
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, c *caller) error {
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}
