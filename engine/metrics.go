package engine

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/sensor"
)

// counterSource is a sensor that counts what it read (sensor/eve).
type counterSource interface {
	Counters() map[string]uint64
}

// registerMetrics exports the engine's counters, each sensor's restarts and the counters of
// sensors that keep them.
func registerMetrics(reg prometheus.Registerer, e *Engine, sup *sensor.Supervisor, srcs []sensor.Source) error {
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	cs := []prometheus.Collector{
		counter("proteus_engine_events_total", "Evidence events the engine handled.", nil, func() float64 { return float64(e.Stats().Events) }),
		counter("proteus_engine_events_dropped_total", "Evidence events lost to a full engine queue.", nil, func() float64 { return float64(e.Stats().Dropped) }),
		counter("proteus_engine_events_unmatched_total", "Evidence events no rule matched.", nil, func() float64 { return float64(e.Stats().Unmatched) }),
		counter("proteus_engine_decisions_total", "Decisions taken.", nil, func() float64 { return float64(e.Stats().Decisions) }),
		counter("proteus_engine_store_dropped_total", "Decisions the audit store's queue could not take.", nil, func() float64 { return float64(e.Stats().StoreDrops) }),
	}
	for i, src := range srcs {
		name := src.Name()
		cs = append(cs, counter("proteus_sensor_restarts_total", "Restarts of a failed sensor.", prometheus.Labels{"sensor": name},
			func() float64 { return float64(sup.States()[i].Restarts) }))
		if c, ok := src.(counterSource); ok {
			for k := range c.Counters() {
				cs = append(cs, counter("proteus_sensor_records_total", "What a sensor read, by outcome.",
					prometheus.Labels{"sensor": name, "outcome": k}, func() float64 { return float64(c.Counters()[k]) }))
			}
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("engine: metrics: %w", err)
		}
	}
	return nil
}
