package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/demo"
	"github.com/proteus-defense/proteus/engine"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/mimic"
	"github.com/proteus-defense/proteus/mtd"
	"github.com/proteus-defense/proteus/strictyaml"
)

// agentContext is the context `proteus agent` runs under; tests replace it.
var agentContext = untilSignal

// GatewayAddrFile is where the agent records the client-facing address it listens on.
const GatewayAddrFile = "gateway.addr"

type agentFlags struct {
	configFile string
	listen     string
	api        string
	vote       bool
	proxy      bool
	intensity  float64
}

// agent is what a running `proteus agent` holds. Extensions registered with
// addAgentExtension get it once everything below is running.
type agent struct {
	cfg     *config.Config
	dataDir string
	log     *slog.Logger
	bus     *bus.Bus
	pool    *executor.Pool
	// countermeasures applies, journals (DATA-DIR/countermeasures.json) and reverts actions
	// through blocklist (countermeasure.BlocklistID: the frontend answers 403 to a blocked
	// client address before any fan-out) and vigilance (countermeasure.VigilanceID). Feed it
	// with countermeasures.Apply; it reverts each action at its expiry.
	countermeasures *countermeasure.Manager
	blocklist       *countermeasure.Blocklist
	vigilance       *countermeasure.Vigilance
	// configFile is the config's path ("" for the embedded default); blockActuators are the
	// actuators a block goes to (the blocklist; nftables too when the engine runs it).
	configFile     string
	blockActuators []string
	metrics        prometheus.Registerer
	// isolate, once the engine runs, takes a dissenting executor out of service (quarantine).
	isolate atomic.Pointer[func(id string)]
}

// agentExtension starts something alongside the agent (the enclave node, for one) once the
// pool and the countermeasures run and before clients are served; the agent calls stop at
// shutdown, before it stops the countermeasures and the pool. An error stops the agent.
type agentExtension func(ctx context.Context, a *agent) (stop func(), err error)

var agentExtensions []agentExtension

// addAgentExtension registers e; call it from init().
func addAgentExtension(e agentExtension) { agentExtensions = append(agentExtensions, e) }

func init() {
	addCommand(func() *cobra.Command {
		var f agentFlags
		c := &cobra.Command{
			Use:   "agent [-c FILE]",
			Short: "Run the agent: executors from known-good images behind the gateway, rotated on schedule, with the local API",
			Long: `Run the Proteus agent. Without -c it runs the embedded default configuration: three executors
of the built-in demo shop (net/http, fasthttp and a raw HTTP/1.1 server, all inside this binary)
behind the mimic voting gateway on 127.0.0.1:8080 (every read goes to all three, the majority
answer is returned, a dissenting executor is rebuilt), each rotated every 30-90 s, with the
local API on 127.0.0.1:9090. The API token is written to DATA-DIR/api.token (mode 0600);
proteus status, rotate, quarantine, block and unblock read it from there.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, f) },
		}
		c.Flags().StringVarP(&f.configFile, "config", "c", "", "agent config file (default: the embedded default config)")
		c.Flags().StringVar(&f.listen, "listen", "", "client-facing host:port (overrides gateway.listen)")
		c.Flags().StringVar(&f.api, "api", "", "local API host:port (overrides api.listen)")
		c.Flags().BoolVar(&f.vote, "vote", false, "serve through the mimic voting gateway (the gateway: section; the default unless gateway.frontend is proxy)")
		c.Flags().BoolVar(&f.proxy, "proxy", false, "serve through the plain round-robin proxy (one executor per request, no vote) instead of the voting gateway")
		c.Flags().Float64Var(&f.intensity, "attack-intensity", api.DefaultAttackIntensity, "attack intensity π in (0,1] for the defense success β_y = tanh(c*·a/(2π)) that status reports")
		return c
	})
}

// frontend serves clients in front of the pool: the mimic voting gateway (default) or the
// plain round-robin proxy.
type frontend interface {
	http.Handler
	Close()
}

// blockingFrontend answers 403 to blocked client addresses before next sees the request;
// the voting gateway checks its own Blocklist, the proxy gets this wrapper.
type blockingFrontend struct {
	next frontend
	bl   *countermeasure.Blocklist
}

func (b blockingFrontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && b.bl.Blocked(ap.Addr().Unmap()) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	b.next.ServeHTTP(w, r)
}

func (b blockingFrontend) Close() { b.next.Close() }

// agentConfig loads and validates everything the agent needs before it starts anything.
func agentConfig(cmd *cobra.Command, f agentFlags) (*config.Config, string, mtd.Policy, error) {
	file := "embedded default.yaml"
	var cfg *config.Config
	var err error
	if f.configFile != "" {
		file = f.configFile
		cfg, err = config.Load(f.configFile)
	} else {
		cfg, err = config.Parse(file, config.DefaultYAML())
	}
	if err != nil {
		return nil, "", mtd.Policy{}, err
	}
	if f.listen != "" {
		cfg.Gateway.Listen = f.listen
	}
	if f.api != "" {
		cfg.API.Listen = f.api
	}
	switch {
	case f.vote && f.proxy:
		return nil, "", mtd.Policy{}, fmt.Errorf("%w: give at most one of --vote and --proxy", errUsage)
	case f.vote:
		cfg.Gateway.Frontend = config.FrontendVote
	case f.proxy:
		cfg.Gateway.Frontend = config.FrontendProxy
	}
	if !(f.intensity > 0 && f.intensity <= 1) {
		return nil, "", mtd.Policy{}, fmt.Errorf("%w: --attack-intensity must be in (0, 1], got %v", errUsage, f.intensity)
	}
	if err := cfg.Problems().Err(file); err != nil {
		return nil, "", mtd.Policy{}, err
	}
	if err := engine.Check(cfg, f.configFile); err != nil { // before anything starts
		return nil, "", mtd.Policy{}, err
	}
	policy, err := mtd.PolicyFromConfig(file, cfg.Pool.Rotation)
	if err != nil {
		return nil, "", mtd.Policy{}, err
	}
	return cfg, dataDirFor(cmd, cfg), policy, nil
}

func runAgent(cmd *cobra.Command, f agentFlags) error {
	cfg, dataDir, policy, err := agentConfig(cmd, f)
	if err != nil {
		return err
	}
	log := newLogger(cmd.ErrOrStderr(), cfg.Log)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	b := bus.New()
	specs, err := agentSpecs(cfg, f.configFile, dataDir)
	if err != nil {
		return err
	}
	drivers := map[string]executor.Driver{}
	for i, s := range specs {
		if _, ok := drivers[s.Driver]; ok {
			continue
		}
		d, err := executor.New(s.Driver, executor.Env{DataDir: dataDir, Logger: log, Bus: b, StopGrace: cfg.Pool.Grace,
			Isolation: executorIsolation(cfg.Pool.Isolation)})
		if errors.Is(err, executor.ErrUnknownDriver) {
			return strictyaml.Problems{{Field: fmt.Sprintf("pool.variants[%d].driver", i), Msg: err.Error()}}.Err(configName(f.configFile))
		}
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		drivers[s.Driver] = d
	}
	pool, err := executor.NewPool(executor.PoolConfig{
		Variants: specs, Desired: cfg.Pool.Desired, Min: cfg.Pool.Min, MaxConcurrent: cfg.Pool.MaxConcurrent,
		Redraw: cfg.Pool.RedrawEnabled(), HealthInterval: cfg.Pool.Health.Interval, HealthTimeout: cfg.Pool.Health.Timeout,
		HealthFailures: cfg.Pool.Health.Failures, StartTimeout: cfg.Pool.StartTimeout, DrainTimeout: cfg.Pool.DrainTimeout,
	}, drivers, log, b)
	if err != nil {
		// Spec problems (bad templates, names) are configuration errors.
		return strictyaml.Problems{{Field: "pool.variants", Msg: err.Error()}}.Err(configName(f.configFile))
	}

	// Bind both sockets before starting executors, so a taken port fails fast and clean.
	gwLn, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("agent: gateway listen: %w", err)
	}
	defer gwLn.Close()
	apiLn, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("agent: api listen: %w", err)
	}
	defer apiLn.Close()

	ctx, stop := agentContext(cmd.Context())
	defer stop()
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	if err := pool.Start(startCtx); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer pool.Close(context.Background())

	token, err := api.NewToken(dataDir)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := mtd.NewMetrics(pool, reg)
	if err != nil {
		return fmt.Errorf("agent: metrics: %w", err)
	}
	metrics.Follow(ctx, b)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "proteus_bus_events_dropped_total", Help: "Events lost to slow bus subscribers.",
	}, func() float64 { return float64(b.Dropped()) }))

	// Countermeasures: restored from the journal before any client is served, so a block
	// made before a restart holds from the first request.
	cms, err := engine.StartCountermeasures(ctx, cfg, dataDir, b, log)
	if err != nil {
		return err
	}
	defer cms.Stop()
	ag := &agent{cfg: cfg, dataDir: dataDir, log: log, bus: b, pool: pool, configFile: f.configFile, metrics: reg,
		countermeasures: cms.Manager, blocklist: cms.Blocklist, vigilance: cms.Vigilance, blockActuators: cms.BlockActuators}

	var front frontend
	var gwSrv *http.Server
	gwServe := func() error { return gwSrv.Serve(gwLn) }
	voting := cfg.Gateway.Frontend == config.FrontendVote
	if voting {
		o, so := mimic.FromConfig(cfg.Gateway)
		o.Backends, o.Bus, o.Logger, o.Metrics = &poolBackends{pool: pool}, b, log, mimic.NewMetrics(reg)
		o.Blocklist = ag.blocklist
		o.Rebuild = rebuildOnDissent(ctx, pool, &ag.isolate)
		o.LearnedFile = learnedNoiseFile(dataDir)
		g, err := mimic.New(o)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		front = votingFrontend{g}
		if gwSrv, err = mimic.NewServer(front, so); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		// mimic.Serve picks TLS or the lean cleartext HTTP/1.1 loop and drains on ctx's end.
		gwServe = func() error { return mimic.Serve(ctx, gwSrv, gwLn) }
	} else {
		front = blockingFrontend{next: executor.NewProxy(pool, log), bl: ag.blocklist}
		gwSrv = &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	}
	defer front.Close()
	var extStops []func()
	stopExtensions := sync.OnceFunc(func() {
		for i := len(extStops) - 1; i >= 0; i-- {
			extStops[i]()
		}
	})
	defer stopExtensions()
	for _, ext := range agentExtensions {
		stopExt, err := ext(ctx, ag)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if stopExt != nil {
			extStops = append(extStops, stopExt)
		}
	}
	apiOpts := []api.Option{api.WithCountermeasures(ag.countermeasures, countermeasure.BlocklistID), api.WithAttackIntensity(f.intensity)}
	if v, ok := front.(api.Voting); ok {
		apiOpts = append(apiOpts, api.WithVoting(v))
	}
	apiSrv := &http.Server{Handler: api.NewServer(pool, b, token, reg, log, apiOpts...), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	gwDone := make(chan struct{})
	go func() { errc <- gwServe(); close(gwDone) }()
	go func() { errc <- apiSrv.Serve(apiLn) }()
	for name, addr := range map[string]string{api.AddrFile: apiLn.Addr().String(), GatewayAddrFile: gwLn.Addr().String()} {
		if err := writeAddr(dataDir, name, addr); err != nil {
			return err
		}
	}
	defer removeAgentFiles(dataDir)

	schedDone := make(chan struct{})
	go func() {
		mtd.NewScheduler(policy, pool, log, rand.Uint64()).Run(ctx)
		close(schedDone)
	}()
	log.Info("agent ready", "component", "agent", "gateway", "http://"+gwLn.Addr().String(), "api", "http://"+apiLn.Addr().String(),
		"executors", len(pool.Healthy()), "frontend", cfg.Gateway.Frontend, "voting", voting, "cstar", pool.CStar(), "rotation", policy.String(), "data_dir", dataDir)
	how := "voting gateway"
	if !voting {
		how = "round-robin proxy"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "proteus agent: serving http://%s through the %s (api http://%s, token in %s)\n",
		gwLn.Addr(), how, apiLn.Addr(), filepath.Join(dataDir, api.TokenFile))

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = fmt.Errorf("agent: serve: %w", err)
		stop()
	}
	log.Info("shutting down", "component", "agent")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = gwSrv.Shutdown(sctx)
	<-gwDone // in-flight client requests end before the pool goes away
	_ = apiSrv.Shutdown(sctx)
	<-schedDone
	stopExtensions()
	pool.Close(sctx)
	return runErr
}

func configName(file string) string {
	if file == "" {
		return "embedded default.yaml"
	}
	return file
}

// agentSpecs turns the configured variants into executor specs, resolving image paths and
// writing the built-in demo image on first use.
func agentSpecs(cfg *config.Config, configFile, dataDir string) ([]executor.Spec, error) {
	baseDir := "."
	if configFile != "" {
		baseDir = filepath.Dir(configFile)
	}
	specs := make([]executor.Spec, 0, len(cfg.Pool.Variants))
	for _, v := range cfg.Pool.Variants {
		img := v.Image
		switch {
		case v.Driver != process.ID:
		case img == config.BuiltinDemoImage:
			img = filepath.Join(dataDir, "images", "demo")
			if err := ensureDemoImage(img); err != nil {
				return nil, err
			}
		case !filepath.IsAbs(img):
			img = filepath.Join(baseDir, img)
		}
		specs = append(specs, executor.Spec{
			Variant: v.Name, Driver: v.Driver, Image: img, Command: v.Command, Env: v.Env,
			ContainerPort: v.ContainerPort, HealthPath: v.HealthPath, Traits: v.Traits, AllowOutbound: v.AllowOutbound,
		})
	}
	return specs, nil
}

// ensureDemoImage writes the embedded demo site and its manifest to dir unless dir already
// holds a manifest. An existing image is never rewritten: if someone altered it, the next
// start must refuse it, not silently repair it.
func ensureDemoImage(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, process.ManifestName)); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".demo-")
	if err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return fmt.Errorf("agent: demo image: %w", err)
		}
		if tmp, err = os.MkdirTemp(filepath.Dir(dir), ".demo-"); err != nil {
			return fmt.Errorf("agent: demo image: %w", err)
		}
	}
	defer os.RemoveAll(tmp)
	if err := demo.WriteSite(filepath.Join(tmp, "site")); err != nil {
		return fmt.Errorf("agent: demo image: %w", err)
	}
	if _, err := process.WriteManifest(tmp); err != nil {
		return fmt.Errorf("agent: demo image: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("agent: demo image: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("agent: demo image: %w", err)
	}
	return nil
}

// executorIsolation is the pool.isolation section as the drivers take it (validated already).
func executorIsolation(c config.Isolation) executor.Isolation {
	first, count, _ := config.ParseUIDRange(c.UIDs)
	mode := c.Mode
	if mode == "off" {
		mode = executor.IsolationOff
	}
	return executor.Isolation{Mode: mode, UIDFirst: first, UIDCount: count, Memory: c.Memory,
		Processes: c.Processes, OpenFiles: c.OpenFiles, CPU: c.CPU}
}

// lockDataDir takes an exclusive lock on DATA-DIR/agent.lock, so two agents never manage
// (and clean up) the same executors.
func lockDataDir(dataDir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dataDir, "agent.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: another agent is running with data dir %s: %w", dataDir, err)
	}
	_ = f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}

func writeAddr(dataDir, name, addr string) error {
	if name == api.AddrFile {
		return api.WriteAddr(dataDir, addr)
	}
	if err := os.WriteFile(filepath.Join(dataDir, name), []byte(addr+"\n"), 0o600); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// removeAgentFiles removes what only makes sense while the agent runs.
func removeAgentFiles(dataDir string) {
	for _, n := range []string{api.TokenFile, api.AddrFile, GatewayAddrFile} {
		_ = os.Remove(filepath.Join(dataDir, n))
	}
}
