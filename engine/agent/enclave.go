package agent

import (
	"context"
	"fmt"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/enclave"
)

// startEnclave runs the enclave node when enclave.enabled: reports from members are acted on
// through the agent's own countermeasure manager (the gateway blocklist answers 403 to a
// blocked address; vigilance for defer), and `proteus enclave peers|publish|trust|...` talk
// to the agent through the enclave control API (DATA-DIR/enclave-control.json).
func (a *agent) startEnclave(ctx context.Context) error {
	if !a.cfg.Enclave.Enabled {
		return nil
	}
	n, err := enclave.New(ctx, enclave.Options{Config: a.cfg.Enclave, DataDir: a.o.DataDir, Manager: a.cms.Manager,
		BlockActuator: countermeasure.BlocklistID, VigilanceActuator: countermeasure.VigilanceID, Bus: a.bus, Logger: a.log})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	addr, err := n.ServeControl(cctx, a.cfg.Enclave.Control)
	if err != nil {
		cancel()
		_ = n.Close()
		return fmt.Errorf("enclave: %w", err)
	}
	a.log.Info("enclave node running", "component", "enclave", "peer", n.ID(), "control", addr, "addrs", n.Addrs())
	a.stops = append(a.stops, func() {
		cancel()
		if err := n.Close(); err != nil {
			a.log.Warn("enclave close", "component", "enclave", "err", err)
		}
	})
	return nil
}
