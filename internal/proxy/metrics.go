package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the load balancer's Prometheus metrics. Per-target counters
// live as atomics on the targets and are read at scrape time, so the
// request path never touches a label map.
type metrics struct {
	reg      *prometheus.Registry
	latency  *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	noTarget *prometheus.CounterVec
	srv      *Server

	requestsDesc, errorsDesc, cutDesc, inFlightDesc, stateDesc, weightDesc, failOpenDesc *prometheus.Desc
}

var classLabels = [classCount + 1]string{"1xx", "2xx", "3xx", "4xx", "5xx", "proxy_error"}

var stateLabels = []targetState{stateInitial, stateHealthy, stateUnhealthy, stateDraining, stateUnused}

func newMetrics(srv *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		srv: srv,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zerodown_lb_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its answer, by pool.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"pool"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodown_lb_retries_total",
			Help: "Requests sent again to another target after a failure the target could not have acted on.",
		}, []string{"pool"}),
		noTarget: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zerodown_lb_no_target_total",
			Help: "Requests answered 503 because the pool had no routable target.",
		}, []string{"pool"}),
		requestsDesc: prometheus.NewDesc("zerodown_lb_requests_total",
			"Requests answered, by pool, target and status class (proxy_error: the proxy answered because the target failed).",
			[]string{"pool", "target", "class"}, nil),
		errorsDesc: prometheus.NewDesc("zerodown_lb_target_errors_total",
			"Connection failures, resets and timeouts toward a target.", []string{"pool", "target"}, nil),
		cutDesc: prometheus.NewDesc("zerodown_lb_target_cut_total",
			"Requests cut because the deregistration delay ran out.", []string{"pool", "target"}, nil),
		inFlightDesc: prometheus.NewDesc("zerodown_lb_target_in_flight",
			"Requests in flight to a target, WebSockets included.", []string{"pool", "target"}, nil),
		stateDesc: prometheus.NewDesc("zerodown_lb_target_state",
			"1 for the state a target is in, 0 for the others.", []string{"pool", "target", "state"}, nil),
		weightDesc: prometheus.NewDesc("zerodown_lb_target_weight",
			"Weight of a target.", []string{"pool", "target"}, nil),
		failOpenDesc: prometheus.NewDesc("zerodown_lb_pool_fail_open",
			"1 while a pool sends traffic to unhealthy targets because none is healthy.", []string{"pool"}, nil),
	}
	m.reg.MustRegister(m.latency, m.retries, m.noTarget, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.requestsDesc, m.errorsDesc, m.cutDesc, m.inFlightDesc, m.stateDesc, m.weightDesc, m.failOpenDesc} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, p := range m.srv.poolList() {
		failOpen := 0.0
		if p.routes.Load().failOpen {
			failOpen = 1
		}
		ch <- prometheus.MustNewConstMetric(m.failOpenDesc, prometheus.GaugeValue, failOpen, p.name)
		for _, t := range p.list() {
			for i := range t.requests {
				ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.CounterValue,
					float64(t.requests[i].Load()), p.name, t.addr, classLabels[i])
			}
			ch <- prometheus.MustNewConstMetric(m.errorsDesc, prometheus.CounterValue, float64(t.errors.Load()), p.name, t.addr)
			ch <- prometheus.MustNewConstMetric(m.cutDesc, prometheus.CounterValue, float64(t.cut.Load()), p.name, t.addr)
			ch <- prometheus.MustNewConstMetric(m.inFlightDesc, prometheus.GaugeValue, float64(t.inFlight.Load()), p.name, t.addr)
			ch <- prometheus.MustNewConstMetric(m.weightDesc, prometheus.GaugeValue, float64(t.weight.Load()), p.name, t.addr)
			cur := t.loadState()
			for _, st := range stateLabels {
				v := 0.0
				if st == cur {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(m.stateDesc, prometheus.GaugeValue, v, p.name, t.addr, string(st.lbState()))
			}
		}
	}
}
