package agent

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/engine"
	"github.com/proteus-defense/proteus/mtd"
)

// vigilance is the consumer of the agent's vigilance level: while it is raised the voting
// gateway asks more executors per request and rebuilds a dissenting one sooner, and the
// rotation scheduler rotates faster, within engine.vigilance's bounds; when the level decays
// (the vigilance actions expire and the Manager reverts them) everything returns to the
// configured behaviour.
type vigilance struct {
	level  *countermeasure.Vigilance
	cfg    config.Vigilance
	k, thr int       // the voting front's configured k and rebuild threshold
	gw     tightener // the voting front (HTTP gateway or DNS front); nil with the proxy frontend
	sched  *mtd.Scheduler
	policy mtd.Policy // the configured rotation policy
	log    *slog.Logger
	now    atomic.Pointer[engine.Tightening]
}

// tightener is a voting front the vigilance level tightens (mimic.Gateway, dnsgw.Gateway).
type tightener interface{ Tighten(k, threshold int) }

// current is what the level asks now.
func (v *vigilance) current() engine.Tightening {
	if t := v.now.Load(); t != nil {
		return *t
	}
	return engine.TightenFor(0, v.cfg, v.k, v.thr)
}

// apply tightens (or relaxes) the gateway and the scheduler for level.
func (v *vigilance) apply(level int) {
	t := engine.TightenFor(level, v.cfg, v.k, v.thr)
	if prev := v.now.Load(); prev != nil && *prev == t {
		return
	}
	v.now.Store(&t)
	if v.gw != nil {
		if level == 0 {
			v.gw.Tighten(0, 0)
		} else {
			v.gw.Tighten(t.K, t.RebuildThreshold)
		}
	}
	v.sched.SetPolicy(v.policy.Scaled(t.RotationScale, v.cfg.MinInterval))
	v.log.Info("vigilance", "component", "agent", "level", level, "k", t.K, "rebuild_threshold", t.RebuildThreshold,
		"rotation_scale", t.RotationScale)
}

// run follows the level on b until ctx ends. It subscribes before it reads the level, so a
// change between the two is not lost (a level restored from the journal at start counts).
func (v *vigilance) run(ctx context.Context, b *bus.Bus) {
	ch, cancel := b.Subscribe(64, bus.KindPrefix(countermeasure.EventVigilance))
	defer cancel()
	if v.now.Load() == nil { // level 0 is what the gateway and the scheduler already do
		t := engine.TightenFor(0, v.cfg, v.k, v.thr)
		v.now.Store(&t)
	}
	v.apply(v.level.Level())
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			for len(ch) > 0 { // a burst is one change
				<-ch
			}
			v.apply(v.level.Level())
		}
	}
}

// agentState is the status the API shows beside the pool's: the vigilance level with what it
// tightens, and the engine's sensors.
type agentState struct {
	vig    *vigilance
	engine atomic.Pointer[engine.Running]
}

var _ api.AgentState = (*agentState)(nil)

// Vigilance implements api.AgentState.
func (s *agentState) Vigilance() *api.VigilanceStatus {
	if s.vig == nil {
		return nil
	}
	t := s.vig.current()
	return &api.VigilanceStatus{Level: t.Level, K: t.K, RebuildThreshold: t.RebuildThreshold, RotationScale: t.RotationScale,
		Rotation: s.vig.sched.Policy().String()}
}

// Sensors implements api.AgentState.
func (s *agentState) Sensors() []api.SensorStatus {
	r := s.engine.Load()
	if r == nil {
		return nil
	}
	states := r.Sensors()
	out := make([]api.SensorStatus, len(states))
	for i, st := range states {
		out[i] = api.SensorStatus{Name: st.Name, State: st.State.State, Restarts: st.Restarts, LastError: st.LastError,
			Since: st.Since, Counters: st.Counters}
	}
	return out
}
