package mimic

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// Metrics are the gateway's Prometheus series: the voter core's under proteus_gateway_ and the
// HTTP gateway's own. An executor label is its variant, not its ID: IDs change on every
// rotation, variants do not, so the number of series stays bounded (events carry the ID).
type Metrics struct {
	core     *voter.Metrics // dissent, no-consensus, rebuild and ejection series
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	learned  prometheus.Counter
	single   *prometheus.CounterVec
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
		core: voter.NewMetrics("proteus_gateway"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_requests_total",
			Help: "Client requests by route policy and outcome (ok, no-consensus, blocked, rejected, unavailable).",
		}, []string{"policy", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proteus_gateway_request_duration_seconds",
			Help:    "Time from receiving a request to answering it, by route policy.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"policy"}),
		learned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proteus_gateway_noise_learned_total",
			Help: "Fields (headers, JSON pointers) learned as noise.",
		}),
		single: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_gateway_single_requests_total",
			Help: "Requests that single routes sent to one executor, unvoted, by executor variant.",
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.core.Collectors()...)
		reg.MustRegister(m.requests, m.duration, m.learned, m.single,
			m.bufferGauge("proteus_gateway_buffered_bytes", "Bytes of request and executor response bodies the gateway holds, in memory or spooled to disk (see buffers.memory_budget and spool_budget).",
				prometheus.Labels{"where": "memory"}, func(s *spooler) int64 { return s.mem.used.Load() }),
			m.bufferGauge("proteus_gateway_buffered_bytes", "Bytes of request and executor response bodies the gateway holds, in memory or spooled to disk (see buffers.memory_budget and spool_budget).",
				prometheus.Labels{"where": "spool"}, func(s *spooler) int64 { return s.disk.used.Load() }),
			m.bufferGauge("proteus_gateway_spool_files", "Spool files open (unlinked: each is gone once closed).",
				nil, func(s *spooler) int64 { return s.files.Load() }))
	}
	return m
}
