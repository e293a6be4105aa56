package dnsgw

import (
	"sync/atomic"

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
}

// NewMetrics creates the series and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		core: voter.NewMetrics("proteus_dns"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_dns_requests_total",
			Help: "Client queries by transport and outcome (ok, no-consensus, refused, rate-limited, overloaded, truncated).",
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
