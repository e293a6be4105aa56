package agent

import (
	"context"
	"fmt"

	"github.com/proteus-defense/proteus/engine"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/enclave"
)

// startEnclave runs the enclave node when enclave.enabled. `proteus enclave
// peers|publish|trust|...` talk to it through the agent's API (api.EnclaveNodePrefix); the
// node's own control API (DATA-DIR/enclave-control.json) is served too, for tools that dial
// a node directly (`proteus enclave bench`, a node of `proteus enclave run`).
//
// With the engine running, the node decides nothing on its own: it records and weighs
// reports (trust, quorum, relevance, the protect list) and its decisions come to the engine
// as evidence (enclave.decision on the bus), which decides for local and peer evidence alike
// and shares its own confident detections through the node (agent.share). Without the
// engine, the node acts on reports through the agent's countermeasure manager itself (the
// gateway blocklist answers 403 to a blocked address; vigilance for defer).
func (a *agent) startEnclave(ctx context.Context) error {
	if !a.cfg.Enclave.Enabled {
		return nil
	}
	o := enclave.Options{Config: a.cfg.Enclave, DataDir: a.o.DataDir, Bus: a.bus, Logger: a.log}
	if !a.cfg.Engine.Enabled() {
		o.Manager, o.BlockActuator, o.VigilanceActuator = a.cms.Manager, countermeasure.BlocklistID, countermeasure.VigilanceID
	}
	n, err := enclave.New(ctx, o)
	if err != nil {
		return err
	}
	a.node.Store(n)
	cctx, cancel := context.WithCancel(ctx)
	addr, err := n.ServeControl(cctx, a.cfg.Enclave.Control)
	if err != nil {
		cancel()
		_ = n.Close()
		return fmt.Errorf("enclave: %w", err)
	}
	a.log.Info("enclave node running", "component", "enclave", "peer", n.ID(), "control", addr, "addrs", n.Addrs())
	a.stops = append(a.stops, func() {
		a.node.Store(nil)
		cancel()
		if err := n.Close(); err != nil {
			a.log.Warn("enclave close", "component", "enclave", "err", err)
		}
	})
	return nil
}

// share publishes the engine's detection s to the enclave as a signed sighting (block, TTL
// within enclave.max_ttl); without a running node it does nothing.
func (a *agent) share(ctx context.Context, s engine.Sighting) error {
	n := a.node.Load()
	if n == nil {
		return nil
	}
	_, rec, err := n.Publish(ctx, enclave.PublishRequest{Target: s.Source.String(), Confidence: s.Confidence,
		TTL: min(s.TTL, a.cfg.Enclave.MaxTTL), Description: s.Description})
	if err != nil {
		return err
	}
	a.log.Info("detection shared with the enclave", "component", "engine", "source", s.Source, "confidence", s.Confidence,
		"indicator", rec.Indicator, "enclave_decision", rec.Decision)
	return nil
}
