package mimic

import (
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
		reg.MustRegister(m.requests, m.dissent, m.noConsensus, m.duration, m.learned, m.rebuilds, m.ejections, m.single)
	}
	return m
}
