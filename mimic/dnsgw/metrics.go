package dnsgw

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// Metrics are the DNS front's Prometheus series: the voter core's under proteus_dns_ (the
// names the HTTP gateway has under proteus_gateway_) and the front's own.
type Metrics struct {
	core     *voter.Metrics
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	invalid  *prometheus.CounterVec
	// the series of the common outcomes, looked up once
	hot map[[2]string]prometheus.Counter
	dur map[string]prometheus.Observer
}

// outcomes are the outcome labels of proteus_dns_requests_total.
var outcomes = []string{"ok", "truncated", "no-consensus", "refused", "rate-limited", "overloaded", "blocked"}

// count records one answered (or dropped) query.
func (m *Metrics) count(transport, outcome string, took time.Duration) {
	if c, ok := m.hot[[2]string{transport, outcome}]; ok {
		c.Inc()
	} else {
		m.requests.WithLabelValues(transport, outcome).Inc()
	}
	if o, ok := m.dur[transport]; ok {
		o.Observe(took.Seconds())
	} else {
		m.duration.WithLabelValues(transport).Observe(took.Seconds())
	}
}

// NewMetrics creates the series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		core: voter.NewMetrics("proteus_dns"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_dns_requests_total",
			Help: "Client queries by transport and outcome (ok, no-consensus, refused, rate-limited, overloaded, truncated, blocked).",
		}, []string{"transport", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proteus_dns_request_duration_seconds",
			Help:    "Time from receiving a query to answering it, by transport.",
			Buckets: []float64{.0001, .0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"transport"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_dns_invalid_total",
			Help: "Messages refused before any executor was asked (from clients: malformed, oversized) or answers refused (from executors: malformed, mismatched, stray), by reason.",
		}, []string{"from", "reason"}),
	}
	m.hot, m.dur = map[[2]string]prometheus.Counter{}, map[string]prometheus.Observer{}
	for _, t := range []string{"udp", "tcp"} {
		m.dur[t] = m.duration.WithLabelValues(t)
		for _, o := range outcomes {
			m.hot[[2]string{t, o}] = m.requests.WithLabelValues(t, o)
		}
	}
	if reg != nil {
		reg.MustRegister(m.core.Collectors()...)
		reg.MustRegister(m.requests, m.duration, m.invalid)
	}
	return m
}

// counters are the front's own tallies, also kept for tests and Status.
type counters struct {
	malformed    atomic.Uint64 // client messages that could not be parsed
	strayAnswers atomic.Uint64 // executor datagrams with no query in flight for their ID
}
