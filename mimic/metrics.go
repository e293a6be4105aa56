package mimic

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus series. The backend label of the dissent counter is the
// executor's variant, not its ID: IDs change on every rotation, variants do not, so the number
// of series stays bounded (events on the bus carry the ID).
type Metrics struct {
	requests    *prometheus.CounterVec
	dissent     *prometheus.CounterVec
	noConsensus prometheus.Counter
	duration    *prometheus.HistogramVec
	learned     prometheus.Counter
	rebuilds    *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	single      *prometheus.CounterVec
	// spool is the gateway's response buffers (set by New), which the buffer gauges read.
	spool atomic.Pointer[spooler]
}

// bufferGauge reads one figure of the gateway's response buffers (0 before New set them).
func (m *Metrics) bufferGauge(name, help string, labels prometheus.Labels, read func(*spooler) int64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 {
		if s := m.spool.Load(); s != nil {
			return float64(read(s))
		}
		return 0
	})
}

// NewMetrics creates the gateway series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_requests_total",
			Help: "Client requests by route policy and outcome (ok, no-consensus, blocked, rejected, unavailable).",
		}, []string{"policy", "outcome"}),
		dissent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_dissent_total",
			Help: "Executor responses that disagreed with the decision (kind content) or did not arrive (kind availability), by executor variant.",
		}, []string{"backend", "kind"}),
		noConsensus: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proteus_gateway_no_consensus_total",
			Help: "Requests refused because no quorum of equivalent responses arrived.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proteus_gateway_request_duration_seconds",
			Help:    "Time from receiving a request to answering it, by route policy.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"policy"}),
		learned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proteus_gateway_noise_learned_total",
			Help: "Fields (headers, JSON pointers) learned as noise.",
		}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_rebuild_requests_total",
			Help: "Rebuilds asked for by the dissent policy, by executor variant.",
		}, []string{"backend"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_ejections_total",
			Help: "Executors left out of the picks for a while after consecutive availability failures (first ejections and failed probes), by executor variant.",
		}, []string{"backend"}),
		single: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_single_requests_total",
			Help: "Requests that single routes sent to one executor, unvoted, by executor variant.",
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.dissent, m.noConsensus, m.duration, m.learned, m.rebuilds, m.ejections, m.single,
			m.bufferGauge("proteus_gateway_buffered_bytes", "Bytes of request and executor response bodies the gateway holds, in memory or spooled to disk (see buffers.memory_budget and spool_budget).",
				prometheus.Labels{"where": "memory"}, func(s *spooler) int64 { return s.mem.used.Load() }),
			m.bufferGauge("proteus_gateway_buffered_bytes", "Bytes of request and executor response bodies the gateway holds, in memory or spooled to disk (see buffers.memory_budget and spool_budget).",
				prometheus.Labels{"where": "spool"}, func(s *spooler) int64 { return s.disk.used.Load() }),
			m.bufferGauge("proteus_gateway_spool_files", "Spool files open (unlinked: each is gone once closed).",
				nil, func(s *spooler) int64 { return s.files.Load() }))
	}
	return m
}
