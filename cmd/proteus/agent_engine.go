package main

import (
	"context"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/engine"
)

// The agent runs the inference engine when engine.model is set: sensors, decisions, the
// audit store (DATA-DIR/audit.db, read by `proteus decisions`).
func init() { addAgentExtension(startAgentEngine) }

func startAgentEngine(ctx context.Context, a *agent) (func(), error) {
	if !a.cfg.Engine.Enabled() {
		return nil, nil
	}
	r, err := engine.Start(ctx, engine.AgentOptions{Config: a.cfg, ConfigFile: a.configFile, DataDir: a.dataDir,
		Manager: a.countermeasures, BlockActuators: a.blockActuators, VigilanceActuator: countermeasure.VigilanceID,
		Pool: a.pool, Members: a.pool, Bus: a.bus, Logger: a.log, Metrics: a.metrics})
	if err != nil {
		return nil, err
	}
	isolate := func(id string) {
		if c := r.Engine.Isolate(ctx, id, "dissent"); c.Error != "" {
			a.log.Warn("isolating a dissenting executor", "component", "engine", "executor", id, "err", c.Error)
		}
	}
	a.isolate.Store(&isolate)
	a.log.Info("engine running", "component", "engine", "sensors", len(r.Supervisor.States()), "block", a.blockActuators)
	return func() { a.isolate.Store(nil); r.Stop() }, nil
}
