package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/enclave"
)

func init() { addEnclaveCommand(newEnclaveRunCmd) }

func newEnclaveRunCmd() *cobra.Command {
	var cfgFile, blockWith, cpuProfile string
	var unpaced bool
	c := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run a standalone enclave node (libp2p, GossipSub, decisions, gateway blocklist) with a loopback control API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgFile == "" {
				return fmt.Errorf("%w: -c FILE is required", errUsage)
			}
			if blockWith != "blocklist" && blockWith != "nftables" {
				return fmt.Errorf("%w: --block-with must be blocklist or nftables, got %q", errUsage, blockWith)
			}
			cfg, err := config.LoadStandaloneEnclave(cfgFile)
			if err != nil {
				return err
			}
			if !cfg.Enclave.Enabled {
				return fmt.Errorf("%w: %s: enclave.enabled is false", errUsage, cfgFile)
			}
			dataDir := dataDirFor(cmd, cfg)
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return err
			}
			if cpuProfile != "" {
				stopProfile, err := cpuProfileOnSignal(cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return runEnclaveNode(ctx, cfg, dataDir, blockWith, unpaced, cmd)
		},
	}
	c.Flags().StringVarP(&cfgFile, "config", "c", "", "agent config file with an enabled enclave section")
	c.Flags().StringVar(&blockWith, "block-with", "blocklist", "how act blocks: blocklist (in-process gateway blocklist, addresses only) or nftables (kernel: table inet proteus, addresses and ports; needs root)")
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to this file: it starts at SIGUSR1 and ends when the node stops")
	c.Flags().BoolVar(&unpaced, "unpaced", false, "send own messages as fast as asked, not paced within limits.rate (what a flooder does; for proteus enclave bench)")
	_ = c.Flags().MarkHidden("unpaced")
	return c
}

func runEnclaveNode(ctx context.Context, cfg *config.Config, dataDir, blockWith string, unpaced bool, cmd *cobra.Command) error {
	log := newLogger(os.Stderr, cfg.Log)
	b := bus.New()
	var block countermeasure.Actuator = countermeasure.NewBlocklist()
	if blockWith == "nftables" {
		nft, err := countermeasure.NewNFTables(countermeasure.NFTablesOptions{})
		if err != nil {
			return err
		}
		defer nft.Close()
		block = nft
	}
	mgr, err := countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dataDir, Bus: b, Logger: log,
		Actuators: []countermeasure.Actuator{block, countermeasure.NewVigilance(b)}})
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	defer mgr.Close() // flushes the journal, so pending reverts survive the stop
	mctx, mcancel := context.WithCancel(context.Background())
	defer mcancel()
	go func() { _ = mgr.Run(mctx) }()

	n, err := enclave.New(ctx, enclave.Options{Config: cfg.Enclave, DataDir: dataDir, Manager: mgr,
		BlockActuator: block.ID(), VigilanceActuator: countermeasure.VigilanceID, Bus: b, Logger: log, Unpaced: unpaced})
	if err != nil {
		return err
	}
	addr, err := n.ServeControl(ctx, cfg.Enclave.Control)
	if err != nil {
		_ = n.Close()
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "enclave %s: peer %s control %s\n", cfg.Enclave.Name, n.ID(), addr)
	for _, a := range n.Addrs() {
		fmt.Fprintf(cmd.OutOrStdout(), "listening %s\n", a)
	}
	<-ctx.Done()
	log.Info("shutting down", "component", "enclave")
	return n.Close()
}

// cpuProfileOnSignal starts a CPU profile into path when the process receives SIGUSR1 (so a
// bench profiles its measured phase, not the start-up handshakes); the returned func stops it.
func cpuProfileOnSignal(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	var mu sync.Mutex
	started, done := false, false
	go func() {
		<-sig
		mu.Lock()
		defer mu.Unlock()
		if !done && pprof.StartCPUProfile(f) == nil {
			started = true
		}
	}()
	return func() {
		signal.Stop(sig)
		mu.Lock()
		defer mu.Unlock()
		done = true
		if started {
			pprof.StopCPUProfile()
		}
		f.Close()
	}, nil
}
