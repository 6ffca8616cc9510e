package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	uploads     *prometheus.CounterVec
	uploadBytes prometheus.Counter
	activations *prometheus.CounterVec
	activation  prometheus.Histogram
	restarts    prometheus.Counter
	up          prometheus.Gauge
	healthy     prometheus.Gauge
	releases    prometheus.Gauge
	current     *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodown_agent_uploads_total",
			Help: "Uploads by result: stored, unchanged, refused (bad input, checksum, conflict, size) or failed.",
		}, []string{"result"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zerodown_agent_upload_bytes_total",
			Help: "Artifact bytes of stored uploads.",
		}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodown_agent_activations_total",
			Help: "Activations and rollbacks by result: ok, unchanged, failed (previous release restored) or broken (restore failed too).",
		}, []string{"kind", "result"}),
		activation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zerodown_agent_activation_seconds",
			Help:    "Time from an activation call to the release being healthy.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zerodown_agent_app_restarts_total",
			Help: "Restarts of the app after it exited on its own.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zerodown_agent_app_up",
			Help: "1 while the app's process runs.",
		}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zerodown_agent_app_healthy",
			Help: "1 when the app's last health check passed.",
		}),
		releases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zerodown_agent_releases",
			Help: "Releases stored on this host.",
		}),
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zerodown_agent_current_release",
			Help: "1 for the current release's version.",
		}, []string{"version"}),
	}
	m.reg.MustRegister(m.uploads, m.uploadBytes, m.activations, m.activation, m.restarts,
		m.up, m.healthy, m.releases, m.current,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setCurrent(version string) {
	m.current.Reset()
	if version != "" {
		m.current.WithLabelValues(version).Set(1)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
