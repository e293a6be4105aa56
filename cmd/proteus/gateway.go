package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/engine/agent"
	"github.com/proteus-defense/proteus/mimic"
)

// gatewayContext is the context `proteus gateway` runs under; tests replace it.
var gatewayContext = untilSignal

type gatewayFlags struct {
	configFile string
	listen     string
	backends   []string
	policy     string
	routes     []string
	scheduler  string
	k          int
	quorum     int
	metrics    string
	tlsCert    string
	tlsKey     string
	h2c        bool
	waitAll    bool
	jitter     time.Duration
	timeout    time.Duration
	pprof      bool
	weakVote   bool
	forget     bool
}

func init() {
	addCommand(func() *cobra.Command {
		var f gatewayFlags
		c := &cobra.Command{
			Use:   "gateway --backend URL --backend URL --backend URL",
			Short: "Run the voting gateway standalone in front of servers you already run",
			Long: `Run the mimic voting gateway in front of existing, equivalent servers: each request goes to k
of them, their normalized responses are compared, the majority answer is returned and every
dissenting server is logged. Flags override the gateway: section of the config file (-c).
Noise learned online is kept in --data-dir as learned-noise.json and restored at start.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runGateway(cmd, f) },
		}
		fl := c.Flags()
		fl.StringVarP(&f.configFile, "config", "c", "", "config file: its gateway: section (and version, log); an agent config does too")
		fl.StringVar(&f.listen, "listen", "", "client-facing host:port (default 127.0.0.1:8080)")
		fl.StringArrayVar(&f.backends, "backend", nil, "base URL of one server (repeat, at least one)")
		fl.StringVar(&f.policy, "policy", "", "policy for every request: vote, vote-all or single (default: vote for GET/HEAD/OPTIONS, single otherwise)")
		fl.StringArrayVar(&f.routes, "route", nil, "[METHOD,...:]PREFIX=POLICY, e.g. /downloads/=single or POST,PUT:/api/=vote-all (repeat; longest prefix wins; replaces the config's routes)")
		fl.StringVar(&f.scheduler, "scheduler", "", "random, round-robin, trust-weighted or max-diversity")
		fl.IntVar(&f.k, "k", 0, "servers per voted request (default 3)")
		fl.IntVar(&f.quorum, "quorum", 0, "equivalent responses needed (default a majority of k)")
		fl.StringVar(&f.metrics, "metrics", "", "host:port serving Prometheus /metrics (off when empty)")
		fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate: serve HTTPS with HTTP/2")
		fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
		fl.BoolVar(&f.h2c, "h2c", false, "also accept cleartext HTTP/2")
		fl.BoolVar(&f.waitAll, "wait-all", false, "answer only when all k servers answered or timed out")
		fl.DurationVar(&f.jitter, "jitter", 0, "random delay up to this before answering")
		fl.DurationVar(&f.timeout, "upstream-timeout", 0, "per-server request timeout (default 5s)")
		fl.BoolVar(&f.pprof, "pprof", false, "also serve /debug/pprof/ on the --metrics address")
		fl.BoolVar(&f.forget, "forget-learned", false, "start without the noise learned before (the learned-noise file is emptied)")
		fl.BoolVar(&f.weakVote, "allow-weak-vote", false, "run with k above the number of backends or a quorum below a majority of k (refused otherwise)")
		return c
	})
}

// gatewayConfig merges the config file (or the defaults) with the flags that were set.
func gatewayConfig(cmd *cobra.Command, f gatewayFlags) (*config.Config, error) {
	cfg := config.Default()
	if f.configFile != "" {
		var err error
		if cfg, err = config.LoadStandaloneGateway(f.configFile); err != nil {
			return nil, err
		}
	}
	g := &cfg.Gateway
	set := cmd.Flags().Changed
	if set("listen") {
		g.Listen = f.listen
	}
	if set("backend") {
		g.Backends = f.backends
	}
	if set("policy") {
		switch f.policy {
		case "vote", "vote-all", "single":
		default:
			return nil, fmt.Errorf("%w: --policy must be vote, vote-all or single, got %q", errUsage, f.policy)
		}
		g.Routes = []config.GatewayRoute{{Prefix: "/", Policy: f.policy}}
	}
	if set("route") {
		if !set("policy") {
			g.Routes = nil
		}
		for _, v := range f.routes {
			r, err := parseRouteFlag(v)
			if err != nil {
				return nil, fmt.Errorf("%w: --route %q: %v", errUsage, v, err)
			}
			g.Routes = append(g.Routes, r)
		}
	}
	if set("scheduler") {
		g.Scheduler = f.scheduler
	}
	if set("k") {
		g.K = f.k
	}
	if set("quorum") {
		g.Quorum = f.quorum
	}
	if set("allow-weak-vote") {
		g.AllowWeakVote = f.weakVote
	}
	if set("tls-cert") {
		g.TLS.Cert = f.tlsCert
	}
	if set("tls-key") {
		g.TLS.Key = f.tlsKey
	}
	if set("h2c") {
		g.H2C = f.h2c
	}
	if set("wait-all") {
		g.WaitAll = f.waitAll
	}
	if set("jitter") {
		g.Jitter = f.jitter
	}
	if set("upstream-timeout") {
		g.Timeouts.Upstream = f.timeout
	}
	if err := cfg.ValidateStandaloneGateway(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(g.Backends) == 0 {
		return nil, fmt.Errorf("%w: gateway needs at least one --backend (or gateway.backends in the config)", errUsage)
	}
	return cfg, nil
}

// parseRouteFlag reads one --route value: [METHOD,...:]PREFIX=POLICY. The prefix starts with
// "/", so anything before it up to a colon is the method list; the policy follows the last "=".
// What each part may be is checked with the rest of the config (gateway.routes[i]).
func parseRouteFlag(v string) (config.GatewayRoute, error) {
	var r config.GatewayRoute
	rest := v
	if !strings.HasPrefix(v, "/") {
		methods, after, ok := strings.Cut(v, ":")
		if !ok || methods == "" {
			return r, errors.New("want [METHOD,...:]PREFIX=POLICY, with PREFIX starting with /")
		}
		for _, m := range strings.Split(methods, ",") {
			if m == "" {
				return r, fmt.Errorf("empty method in %q", methods)
			}
			r.Methods = append(r.Methods, m)
		}
		rest = after
	}
	i := strings.LastIndexByte(rest, '=')
	if i < 0 {
		return r, errors.New("no =POLICY")
	}
	r.Prefix, r.Policy = rest[:i], rest[i+1:]
	return r, nil
}

// learnedNoiseFile is where the voting gateway keeps the noise it learned across restarts.
func learnedNoiseFile(dataDir string) string { return agent.LearnedNoiseFile(dataDir) }

func runGateway(cmd *cobra.Command, f gatewayFlags) error {
	cfg, err := gatewayConfig(cmd, f)
	if err != nil {
		return err
	}
	bes, err := mimic.StaticFromURLs(cfg.Gateway.Backends)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := newLogger(cmd.ErrOrStderr(), cfg.Log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o, so := mimic.FromConfig(cfg.Gateway)
	o.Backends, o.Logger, o.Metrics = bes, log, mimic.NewMetrics(reg)
	o.LearnedFile = learnedNoiseFile(dataDirFor(cmd, cfg))
	gw, err := mimic.New(o)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.forget {
		gw.ResetLearned()
	}
	so.Gateway = gw
	srv, err := mimic.NewServer(gw, so)
	if err != nil {
		return err
	}
	ctx, stop := gatewayContext(cmd.Context())
	defer stop()
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	errc := make(chan error, 2)
	if f.metrics != "" {
		closeMetrics, merr, err := serveMetrics(cmd, f.metrics, reg, gw.HealthHandler(), f.pprof)
		if err != nil {
			ln.Close()
			return fmt.Errorf("gateway: %w", err)
		}
		defer closeMetrics()
		go func() {
			select {
			case err := <-merr:
				errc <- fmt.Errorf("gateway: %w", err)
			case <-ctx.Done():
			}
		}()
	}
	scheme := "http"
	if so.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "gateway listening on %s://%s, %d backends, k=%d, scheduler %s\n",
		scheme, ln.Addr(), len(bes), cfg.Gateway.K, cfg.Gateway.Scheduler)
	go func() { errc <- mimic.Serve(ctx, srv, ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = <-errc
	}
	gw.Close()
	return err
}
