package voter

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the series every voting adapter shares, named under one prefix
// (proteus_gateway for HTTP, proteus_dns for DNS). The executor label is its variant, not its
// ID: IDs change on every rotation, variants do not, so the number of series stays bounded
// (events on the bus carry the ID).
type Metrics struct {
	dissent     *prometheus.CounterVec
	noConsensus prometheus.Counter
	rebuilds    *prometheus.CounterVec
	ejections   *prometheus.CounterVec
}

// NewMetrics creates the shared series named prefix_dissent_total, prefix_no_consensus_total,
// prefix_rebuild_requests_total and prefix_ejections_total; Collectors registers them.
func NewMetrics(prefix string) *Metrics {
	return &Metrics{
		dissent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_dissent_total",
			Help: "Executor answers that disagreed with the decision (kind content) or did not arrive (kind availability), by executor variant.",
		}, []string{"backend", "kind"}),
		noConsensus: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_no_consensus_total",
			Help: "Requests refused because no quorum of equivalent answers arrived.",
		}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_rebuild_requests_total",
			Help: "Rebuilds asked for by the dissent policy, by executor variant.",
		}, []string{"backend"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_ejections_total",
			Help: "Executors left out of the picks for a while after consecutive availability failures (first ejections and failed probes), by executor variant.",
		}, []string{"backend"}),
	}
}

// Collectors returns the series, for a registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.dissent, m.noConsensus, m.rebuilds, m.ejections}
}
