package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/proteus-defense/proteus/config"
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
	a.log.Info("engine running", "component", "engine", "sensors", len(r.Supervisor.States()), "block", a.blockActuators)
	return r.Stop, nil
}

// kernelBlocker returns the nftables actuator the engine blocks with besides the gateway
// blocklist: engine.nftables auto uses it when the agent is root and nftables works, on
// requires it, off (or no engine) never.
func kernelBlocker(c config.Engine, log *slog.Logger) (countermeasure.Actuator, func(), error) {
	none := func() {}
	if !c.Enabled() || c.NFTables == "off" {
		return nil, none, nil
	}
	if os.Geteuid() != 0 {
		if c.NFTables == "on" {
			return nil, none, fmt.Errorf("agent: engine.nftables is on: %w", countermeasure.ErrNotRoot)
		}
		log.Info("not root: blocking at the gateway only", "component", "agent")
		return nil, none, nil
	}
	nft, err := countermeasure.NewNFTables(countermeasure.NFTablesOptions{})
	if err != nil {
		if c.NFTables == "on" {
			return nil, none, fmt.Errorf("agent: engine.nftables is on: %w", err)
		}
		log.Warn("nftables unavailable: blocking at the gateway only", "component", "agent", "err", err)
		return nil, none, nil
	}
	return nft, func() { _ = nft.Close() }, nil
}
