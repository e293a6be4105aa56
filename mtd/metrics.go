package mtd

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

// PoolView is what the metrics read from the pool at scrape time.
type PoolView interface {
	CStar() int
	RotationRate() float64
	Members() []executor.MemberStatus
}

// Metrics exports the MTD figures. Gauges (c*, rate, ages, in-flight counts) are read from
// the pool at scrape time; counters and the rotation-duration histogram are fed from the bus,
// so every transition any component publishes is counted.
type Metrics struct {
	pool        PoolView
	cstar       *prometheus.Desc
	rate        *prometheus.Desc
	age         *prometheus.Desc
	inFlight    *prometheus.Desc
	count       *prometheus.Desc
	transitions *prometheus.CounterVec
	rotations   *prometheus.CounterVec
	rotFailures prometheus.Counter
	tampered    prometheus.Counter
	duration    prometheus.Histogram
}

// NewMetrics registers the MTD metrics with reg.
func NewMetrics(pool PoolView, reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		pool:     pool,
		cstar:    prometheus.NewDesc("proteus_mtd_cstar", "Maximum number of concurrent reconfigurations (c*).", nil, nil),
		rate:     prometheus.NewDesc("proteus_mtd_reconfiguration_rate", "Measured reconfigurations (rotations and replacements) per second over the last minute.", nil, nil),
		age:      prometheus.NewDesc("proteus_executor_age_seconds", "Time since the executor instance started.", []string{"id", "variant", "state"}, nil),
		inFlight: prometheus.NewDesc("proteus_executor_in_flight_requests", "Requests currently acquired on the executor instance.", []string{"id", "variant"}, nil),
		count:    prometheus.NewDesc("proteus_executors", "Executor instances by state.", []string{"state"}, nil),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_executor_transitions_total", Help: "Executor state transitions, by target state.",
		}, []string{"to"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proteus_mtd_rotations_total", Help: "Completed rotations, by trigger (interval, max_lifetime, cron, api, ...).",
		}, []string{"reason"}),
		rotFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proteus_mtd_rotation_failures_total", Help: "Rotations whose replacement never became healthy (the old instance stayed).",
		}),
		tampered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "proteus_executor_tampered_images_total", Help: "Starts refused because the image did not match its manifest.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proteus_mtd_rotation_duration_seconds",
			Help:    "Time from rotation start to the old instance stopped.",
			Buckets: []float64{.025, .05, .1, .2, .4, .8, 1.6, 3.2, 6.4, 12.8},
		}),
	}
	for _, c := range []prometheus.Collector{m, m.transitions, m.rotations, m.rotFailures, m.tampered, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector for the scrape-time gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.cstar
	ch <- m.rate
	ch <- m.age
	ch <- m.inFlight
	ch <- m.count
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.cstar, prometheus.GaugeValue, float64(m.pool.CStar()))
	ch <- prometheus.MustNewConstMetric(m.rate, prometheus.GaugeValue, m.pool.RotationRate())
	byState := map[executor.State]int{}
	for _, s := range []executor.State{executor.StateStarting, executor.StateHealthy, executor.StateDraining, executor.StateQuarantined} {
		byState[s] = 0
	}
	for _, st := range m.pool.Members() {
		byState[st.State]++
		ch <- prometheus.MustNewConstMetric(m.age, prometheus.GaugeValue, st.Age.Seconds(), st.Instance.ID, st.Instance.Variant, string(st.State))
		ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(st.InFlight), st.Instance.ID, st.Instance.Variant)
	}
	for s, n := range byState {
		ch <- prometheus.MustNewConstMetric(m.count, prometheus.GaugeValue, float64(n), string(s))
	}
}

// Observe updates the counters from one bus event.
func (m *Metrics) Observe(e bus.Event) {
	switch e.Kind {
	case executor.EventTransition:
		if to, ok := e.Attrs["to"].(string); ok {
			m.transitions.WithLabelValues(to).Inc()
		}
	case executor.EventRotation:
		reason, _ := e.Attrs["reason"].(string)
		m.rotations.WithLabelValues(reason).Inc()
		if d, ok := e.Attrs["duration_s"].(float64); ok {
			m.duration.Observe(d)
		}
	case executor.EventRotationFailed:
		m.rotFailures.Inc()
	case executor.EventTamperedImage:
		m.tampered.Inc()
	}
}

// Follow feeds Observe from b until ctx ends. It subscribes before returning, so no event
// published after Follow returns is missed (unless the buffer overflows, which the bus counts).
func (m *Metrics) Follow(ctx context.Context, b *bus.Bus) {
	events, cancel := b.Subscribe(4096, bus.KindPrefix("executor."))
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-events:
				m.Observe(e)
			}
		}
	}()
}
