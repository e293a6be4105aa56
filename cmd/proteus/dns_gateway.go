package main

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/mimic/dnsgw"
)

// dnsGatewayContext is the context `proteus dns-gateway` runs under; tests replace it.
var dnsGatewayContext = untilSignal

type dnsGatewayFlags struct {
	configFile   string
	listen       string
	backends     []string
	scheduler    string
	k, quorum    int
	metrics      string
	timeout      time.Duration
	ttlTolerance time.Duration
	rate         float64
	udpSize      int
	waitAll      bool
	weakVote     bool
	pprof        bool
}

func init() {
	addCommand(func() *cobra.Command {
		var f dnsGatewayFlags
		c := &cobra.Command{
			Use:   "dns-gateway --listen ADDR --backend ADDR --backend ADDR --backend ADDR",
			Short: "Run the voting DNS front standalone in front of resolvers or authoritative servers you already run",
			Long: `Run the voting DNS front (UDP and TCP) in front of existing, heterogeneous DNS servers that
serve the same names (resolvers such as unbound, knot-resolver, dnsmasq, or authoritative servers
such as NSD, Knot, BIND): each query goes to k of them, their answers are normalized (message ID,
record order, name case, TTLs, EDNS options and flags that legitimately differ) and voted on, the
majority's records go back with the lowest TTLs, no quorum is SERVFAIL, and every dissenting server
is logged. Flags override the dns: section of the config file (-c).`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runDNSGateway(cmd, f) },
		}
		fl := c.Flags()
		fl.StringVarP(&f.configFile, "config", "c", "", "config file: its dns: section (and version, log)")
		fl.StringVar(&f.listen, "listen", "", "client-facing host:port, UDP and TCP (default 127.0.0.1:5353)")
		fl.StringArrayVar(&f.backends, "backend", nil, "IP:port of one server (repeat, at least one)")
		fl.StringVar(&f.scheduler, "scheduler", "", "random, round-robin, trust-weighted or max-diversity")
		fl.IntVar(&f.k, "k", 0, "servers per query (default 3)")
		fl.IntVar(&f.quorum, "quorum", 0, "equivalent answers needed (default a majority of k)")
		fl.StringVar(&f.metrics, "metrics", "", "host:port serving Prometheus /metrics and /healthz (off when empty)")
		fl.BoolVar(&f.pprof, "pprof", false, "also serve /debug/pprof/ on the --metrics address")
		fl.DurationVar(&f.timeout, "timeout", 0, "per-server timeout (default 2s)")
		fl.DurationVar(&f.ttlTolerance, "ttl-tolerance", 0, "TTLs above the deciding group's lowest by more than this are a dissent (default 1h)")
		fl.Float64Var(&f.rate, "rate", 0, "queries per second per client (default 200; -1: no bound)")
		fl.IntVar(&f.udpSize, "udp-size", 0, "largest UDP answer, the client's EDNS size respected below it (default 1232)")
		fl.BoolVar(&f.waitAll, "wait-all", false, "answer only when all k servers answered or timed out")
		fl.BoolVar(&f.weakVote, "allow-weak-vote", false, "run with k above the number of backends or a quorum below a majority of k (refused otherwise)")
		return c
	})
}

// dnsGatewayConfig merges the config file (or the defaults) with the flags that were set.
func dnsGatewayConfig(cmd *cobra.Command, f dnsGatewayFlags) (*config.Config, error) {
	cfg := config.Default()
	if f.configFile != "" {
		var err error
		if cfg, err = config.LoadStandaloneDNS(f.configFile); err != nil {
			return nil, err
		}
	}
	d := &cfg.DNS
	set := cmd.Flags().Changed
	if set("listen") {
		d.Listen = f.listen
	}
	if set("backend") {
		d.Backends = f.backends
	}
	if set("scheduler") {
		d.Scheduler = f.scheduler
	}
	if set("k") {
		d.K = f.k
	}
	if set("quorum") {
		d.Quorum = f.quorum
	}
	if set("timeout") {
		d.Timeout = f.timeout
	}
	if set("ttl-tolerance") {
		d.TTLTolerance = f.ttlTolerance
	}
	if set("rate") {
		d.Rate = f.rate
		if f.rate > 0 {
			d.Burst = max(int(2*f.rate), 1)
		}
	}
	if set("udp-size") {
		d.UDPSize = f.udpSize
	}
	if set("wait-all") {
		d.WaitAll = f.waitAll
	}
	if set("allow-weak-vote") {
		d.AllowWeakVote = f.weakVote
	}
	if err := cfg.ValidateStandaloneDNS(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(d.Backends) == 0 {
		return nil, fmt.Errorf("%w: dns-gateway needs at least one --backend (or dns.backends in the config)", errUsage)
	}
	return cfg, nil
}

func runDNSGateway(cmd *cobra.Command, f dnsGatewayFlags) error {
	cfg, err := dnsGatewayConfig(cmd, f)
	if err != nil {
		return err
	}
	bes, err := dnsgw.StaticFromAddrs(cfg.DNS.Backends)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(cmd.ErrOrStderr(), cfg.Log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o := dnsgw.FromConfig(cfg.DNS)
	o.Backends, o.Logger, o.Metrics = bes, log, dnsgw.NewMetrics(reg)
	gw, err := dnsgw.New(o)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	defer gw.Close()
	ctx, stop := dnsGatewayContext(cmd.Context())
	defer stop()
	var errc <-chan error
	if f.metrics != "" {
		closeMetrics, merr, err := serveMetrics(cmd, f.metrics, reg, gw.HealthHandler(), f.pprof)
		if err != nil {
			return fmt.Errorf("dns-gateway: %w", err)
		}
		defer closeMetrics()
		errc = merr
	}
	addr, err := gw.Listen(cfg.DNS.Listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "dns gateway listening on %s (udp, tcp), %d backends, k=%d, scheduler %s\n",
		addr, len(bes), cfg.DNS.K, cfg.DNS.Scheduler)
	select {
	case err = <-errc:
		err = fmt.Errorf("dns-gateway: %w", err)
	case <-ctx.Done():
	}
	return err
}
