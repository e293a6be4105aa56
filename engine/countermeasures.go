package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
)

// Countermeasures is the agent's countermeasure stack: the gateway Blocklist (the frontend
// answers 403 to a blocked client address before any fan-out), the Vigilance level, the
// nftables actuator when engine.nftables lets it run, and the Manager that applies, journals
// (DATA-DIR/countermeasures.json) and reverts through them.
type Countermeasures struct {
	Manager   *countermeasure.Manager
	Blocklist *countermeasure.Blocklist
	Vigilance *countermeasure.Vigilance
	// Redirects are the clients the voting gateway serves from the decoy executor.
	Redirects *countermeasure.Redirects
	// BlockActuators are the actuator IDs a block goes to: the blocklist, and nftables when
	// it runs.
	BlockActuators []string
	// NetRedirectActuator is nftables' ID when it redirects engine.redirect.ports, else "".
	NetRedirectActuator string

	kernel countermeasure.Actuator
	stop   context.CancelFunc
	done   chan struct{}
}

// StartCountermeasures builds the stack, restores the journal (a block made before a restart
// holds before any client is served) and runs the Manager's revert loop until Stop.
func StartCountermeasures(ctx context.Context, cfg *config.Config, dataDir string, b *bus.Bus, log *slog.Logger) (*Countermeasures, error) {
	c := &Countermeasures{Blocklist: countermeasure.NewBlocklist(), Vigilance: countermeasure.NewVigilance(b), Redirects: countermeasure.NewRedirects(),
		BlockActuators: []string{countermeasure.BlocklistID}, done: make(chan struct{})}
	kernel, err := kernelBlocker(cfg.Engine, log)
	if err != nil {
		return nil, err
	}
	actuators := []countermeasure.Actuator{c.Blocklist, c.Vigilance, c.Redirects}
	if kernel != nil {
		c.kernel = kernel
		actuators = append(actuators, kernel)
		c.BlockActuators = append(c.BlockActuators, kernel.ID())
		if len(redirectedPorts(cfg.Engine)) > 0 {
			c.NetRedirectActuator = kernel.ID()
		}
	}
	var blockable []netip.Addr
	for _, a := range cfg.Engine.BlockableLoopback {
		if ip, err := netip.ParseAddr(a); err == nil { // validated with the config
			blockable = append(blockable, ip)
		}
	}
	c.Manager, err = countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dataDir, Bus: b, Logger: log, Actuators: actuators,
		BlockableLoopback: blockable})
	if err == nil {
		err = c.Manager.Start(ctx)
	}
	if err != nil {
		c.closeKernel()
		return nil, fmt.Errorf("agent: %w", err)
	}
	rctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go func() { _ = c.Manager.Run(rctx); close(c.done) }()
	return c, nil
}

// Stop ends the revert loop (the journal is flushed) and removes the nftables table; the
// journal re-arms what is still active at the next start.
func (c *Countermeasures) Stop() {
	c.stop()
	<-c.done
	c.closeKernel()
}

func (c *Countermeasures) closeKernel() {
	if cl, ok := c.kernel.(countermeasure.Closer); ok {
		_ = cl.Close()
	}
}

// kernelBlocker returns the nftables actuator the engine blocks with besides the gateway
// blocklist: engine.nftables auto uses it when the agent is root and nftables works, on
// requires it, off (or no engine) never. engine.redirect.ports require it too: without it
// a deferred source would silently reach the real service.
func kernelBlocker(c config.Engine, log *slog.Logger) (countermeasure.Actuator, error) {
	if !c.Enabled() || c.NFTables == "off" {
		return nil, nil
	}
	redirects := redirectedPorts(c)
	need := "engine.nftables is on"
	if len(redirects) > 0 {
		need = "engine.redirect.ports redirect with nftables"
	}
	required := c.NFTables == "on" || len(redirects) > 0
	if os.Geteuid() != 0 {
		if required {
			return nil, fmt.Errorf("agent: %s: %w", need, countermeasure.ErrNotRoot)
		}
		log.Info("not root: blocking at the gateway only", "component", "agent")
		return nil, nil
	}
	nft, err := countermeasure.NewNFTables(countermeasure.NFTablesOptions{Redirects: redirects})
	if err != nil {
		if required {
			return nil, fmt.Errorf("agent: %s: %w", need, err)
		}
		log.Warn("nftables unavailable: blocking at the gateway only", "component", "agent", "err", err)
		return nil, nil
	}
	return nft, nil
}

// redirectedPorts are engine.redirect.ports for the nftables actuator (validated with the
// config: each in [1, 65535]).
func redirectedPorts(c config.Engine) []countermeasure.PortRedirect {
	if c.Redirect == nil {
		return nil
	}
	out := make([]countermeasure.PortRedirect, 0, len(c.Redirect.Ports))
	for _, p := range c.Redirect.Ports {
		out = append(out, countermeasure.PortRedirect{Port: uint16(p.Port), To: uint16(p.To)})
	}
	return out
}
