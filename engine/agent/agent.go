// Package agent composes the running Proteus agent from its config: the executor pool and its
// drivers, the rotation scheduler, the client-facing frontend (the mimic voting gateway or the
// plain proxy), the countermeasure stack, the inference engine with its sensors and audit
// store, the enclave node and the local API, and it shuts them down in order. `proteus
// agent` only parses flags, calls Run and prints.
//
// It imports api, config, countermeasure, demo, enclave, engine, executor (and
// executor/process for the built-in demo image), mimic and mtd; it must not import cmd.
// Executor drivers other than process register themselves (executor.Register) from the
// packages the binary imports.
package agent

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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/dashboard"
	"github.com/proteus-defense/proteus/demo"
	"github.com/proteus-defense/proteus/enclave"
	"github.com/proteus-defense/proteus/engine"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/mimic"
	"github.com/proteus-defense/proteus/mtd"
	"github.com/proteus-defense/proteus/strictyaml"
)

// GatewayAddrFile is where the agent records the client-facing address it listens on.
const GatewayAddrFile = "gateway.addr"

// LearnedNoiseFile is where the voting gateway keeps the noise it learned across restarts.
func LearnedNoiseFile(dataDir string) string { return filepath.Join(dataDir, "learned-noise.json") }

// Options are what Run needs; Config must have passed its own validation (cfg.Problems).
type Options struct {
	Config     *config.Config
	ConfigFile string // "" for the embedded default; relative paths resolve against its directory
	DataDir    string
	Logger     *slog.Logger
	// AttackIntensity is the π the API's status reports β_y at (api.DefaultAttackIntensity
	// when 0).
	AttackIntensity float64
	// Ready, when set, is called once clients are served, with the addresses bound.
	Ready func(Ready)
}

// Ready describes a serving agent.
type Ready struct {
	Gateway, API net.Addr // Gateway: the voting DNS front's (UDP and TCP) when DNS is set
	Voting       bool     // the voting gateway (else the round-robin proxy)
	DNS          bool     // the pool serves DNS behind the voting DNS front
	TokenFile    string   // the API token's path
}

// Check validates what Run would refuse before starting anything: the engine's model and
// rules, and the rotation policy. Errors wrap strictyaml.ErrInvalid when the config is at
// fault.
func Check(cfg *config.Config, configFile string) (mtd.Policy, error) {
	if err := engine.Check(cfg, configFile); err != nil {
		return mtd.Policy{}, err
	}
	return mtd.PolicyFromConfig(ConfigName(configFile), cfg.Pool.Rotation)
}

// ConfigName is how errors name the config file.
func ConfigName(file string) string {
	if file == "" {
		return "embedded default.yaml"
	}
	return file
}

// agent is what a running agent holds while Run composes it.
type agent struct {
	o    Options
	cfg  *config.Config
	log  *slog.Logger
	bus  *bus.Bus
	pool *executor.Pool
	// decoy is the executor outside the vote that serves redirected clients (pool.decoy), its
	// events on decoyBus.
	decoy    *executor.Pool
	decoyBus *bus.Bus
	cms      *engine.Countermeasures
	reg      *prometheus.Registry
	// isolate, once the engine runs, takes a dissenting executor out of service (quarantine).
	isolate atomic.Pointer[func(id string)]
	state   agentState // for the API's status
	// gw is the voting gateway, when it is the frontend.
	gw *mimic.Gateway
	// node is the enclave node once it runs (the engine shares its detections through it).
	node atomic.Pointer[enclave.Node]
	// stops run in reverse order at shutdown, after the frontend and the API stopped serving
	// and before the pool closes.
	stops []func()
}

// Run runs the agent until ctx ends or a server fails. It takes DATA-DIR/agent.lock, so two
// agents never manage the same executors.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AttackIntensity == 0 {
		o.AttackIntensity = api.DefaultAttackIntensity
	}
	policy, err := Check(cfg, o.ConfigFile)
	if err != nil {
		return err
	}
	log := o.Logger
	// Executors run in their own directories: a relative data dir would name the wrong place
	// in their commands (--root DIR/site).
	if o.DataDir, err = filepath.Abs(o.DataDir); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	a := &agent{o: o, cfg: cfg, log: log, bus: bus.New()}
	a.decoyBus = bus.New()
	if a.pool, a.decoy, err = newPool(cfg, o.ConfigFile, o.DataDir, log, a.bus, a.decoyBus); err != nil {
		return err
	}

	// Bind the sockets before starting executors, so a taken port fails fast and clean (the
	// DNS front binds its UDP and TCP sockets once its executors run).
	dnsPool := cfg.Pool.Protocol == config.ProtocolDNS
	var gwLn net.Listener
	if !dnsPool {
		if gwLn, err = net.Listen("tcp", cfg.Gateway.Listen); err != nil {
			return fmt.Errorf("agent: gateway listen: %w", err)
		}
		defer gwLn.Close()
	}
	apiLn, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("agent: api listen: %w", err)
	}
	defer apiLn.Close()
	var sockLn net.Listener
	if cfg.API.Socket {
		if sockLn, err = api.ListenUnix(o.DataDir); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		defer sockLn.Close()
	} else {
		api.RemoveStaleSocket(o.DataDir)
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := a.pool.Start(ctx); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer a.pool.Close(context.Background())
	if a.decoy != nil { // after the pool, which stopped an earlier run's leftovers of both
		if err := a.decoy.Start(ctx); err != nil {
			return fmt.Errorf("agent: decoy executor: %w", err)
		}
		defer a.decoy.Close(context.Background())
	}

	token, err := api.NewToken(o.DataDir)
	if err != nil {
		return err
	}
	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := mtd.NewMetrics(a.pool, a.reg)
	if err != nil {
		return fmt.Errorf("agent: metrics: %w", err)
	}
	metrics.Follow(ctx, a.bus)
	a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "proteus_bus_events_dropped_total", Help: "Events lost to slow bus subscribers.",
	}, func() float64 { return float64(a.bus.Dropped()) }))

	// Countermeasures: restored from the journal before any client is served, so a block
	// made before a restart holds from the first request.
	if a.cms, err = engine.StartCountermeasures(ctx, cfg, o.DataDir, a.bus, log); err != nil {
		return err
	}
	defer a.cms.Stop()

	var front frontend
	var gwSrv *http.Server
	var gwServe func() error
	var gwAddr net.Addr
	if dnsPool {
		var dns *dnsFrontend
		if dns, err = a.newDNSFrontend(ctx); err != nil {
			return err
		}
		front, gwAddr, gwServe = dns, dns.addr, dns.serve(ctx)
	} else {
		if front, gwSrv, gwServe, err = a.newFrontend(ctx, gwLn); err != nil {
			return err
		}
		gwAddr = gwLn.Addr()
	}
	defer front.Close()
	defer a.stopAll()
	if err := a.startEngine(ctx); err != nil {
		return err
	}
	if err := a.startEnclave(ctx); err != nil {
		return err
	}
	sched := mtd.NewScheduler(policy, a.pool, log, rand.Uint64())
	vig := &vigilance{level: a.cms.Vigilance, cfg: cfg.Engine.Vigilance, k: cfg.Gateway.K, thr: cfg.Gateway.RebuildThreshold(),
		sched: sched, policy: policy, log: log}
	switch f := front.(type) {
	case votingFrontend:
		vig.gw = f.g
	case *dnsFrontend:
		vig.gw, vig.k, vig.thr = f.g, cfg.DNS.K, cfg.DNS.RebuildThreshold()
	}
	vigDone := make(chan struct{})
	go func() { vig.run(ctx, a.bus); close(vigDone) }()
	defer func() { stop(); <-vigDone }()
	a.state.vig = vig
	apiOpts := []api.Option{api.WithCountermeasures(a.cms.Manager, countermeasure.BlocklistID), api.WithAttackIntensity(o.AttackIntensity),
		api.WithAgentState(&a.state)}
	if v, ok := front.(api.Voting); ok {
		apiOpts = append(apiOpts, api.WithVoting(v))
	}
	if r := a.state.engine.Load(); r != nil {
		apiOpts = append(apiOpts, api.WithDecisions(r.Store()), api.WithGame(gameView{r.Engine}))
	}
	if cfg.Enclave.Enabled {
		apiOpts = append(apiOpts, api.WithEnclave(enclaveView{a}))
	}
	if n := a.node.Load(); n != nil {
		// `proteus enclave status|publish|...` reach the node here, behind the API's token.
		apiOpts = append(apiOpts, api.WithEnclaveNode(n.ControlAPI()))
	}
	// Requests and dissent over time, for the dashboard: the front's counters sampled into a
	// bounded ring.
	traffic := api.NewTraffic(a.reg, api.DefaultTrafficInterval, api.DefaultTrafficSamples)
	trafficDone := make(chan struct{})
	go func() { traffic.Run(ctx); close(trafficDone) }()
	defer func() { stop(); <-trafficDone }()
	apiOpts = append(apiOpts, api.WithTraffic(traffic))
	// The dashboard sits in front of the API: its pages and login, then the API by token or
	// by the dashboard's session cookie.
	apiSrv := &http.Server{Handler: dashboard.New(api.NewServer(a.pool, a.bus, token, a.reg, log, apiOpts...), token, log,
		dashboard.WithAllowedHosts(cfg.API.AllowedHosts...)),
		ReadHeaderTimeout: 10 * time.Second, ConnContext: api.ConnContext}
	errc := make(chan error, 3)
	gwDone := make(chan struct{})
	go func() { errc <- gwServe(); close(gwDone) }()
	go func() { errc <- apiSrv.Serve(apiLn) }()
	if sockLn != nil {
		go func() { errc <- apiSrv.Serve(sockLn) }()
	}
	for name, addr := range map[string]string{api.AddrFile: apiLn.Addr().String(), GatewayAddrFile: gwAddr.String()} {
		if err := writeAddr(o.DataDir, name, addr); err != nil {
			return err
		}
	}
	defer removeAgentFiles(o.DataDir)

	schedDone := make(chan struct{})
	go func() {
		sched.Run(ctx)
		close(schedDone)
	}()
	voting := cfg.Gateway.Frontend == config.FrontendVote || dnsPool
	gwURL := "http://" + gwAddr.String()
	if dnsPool {
		gwURL = "dns://" + gwAddr.String()
	}
	log.Info("agent ready", "component", "agent", "gateway", gwURL, "api", "http://"+apiLn.Addr().String(),
		"executors", len(a.pool.Healthy()), "frontend", cfg.Gateway.Frontend, "voting", voting, "cstar", a.pool.CStar(),
		"rotation", policy.String(), "data_dir", o.DataDir)
	if o.Ready != nil {
		o.Ready(Ready{Gateway: gwAddr, API: apiLn.Addr(), Voting: voting, DNS: dnsPool, TokenFile: filepath.Join(o.DataDir, api.TokenFile)})
	}

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
	if gwSrv != nil {
		_ = gwSrv.Shutdown(sctx)
	}
	<-gwDone // in-flight client requests end before the pool goes away
	_ = apiSrv.Shutdown(sctx)
	<-schedDone
	a.stopAll()
	if a.decoy != nil {
		a.decoy.Close(sctx) // first: it shares the pool's drivers, which the pool's Close closes
	}
	a.pool.Close(sctx)
	return runErr
}

// stopAll stops what startEngine and startEnclave started, last first; it runs once.
func (a *agent) stopAll() {
	for i := len(a.stops) - 1; i >= 0; i-- {
		a.stops[i]()
	}
	a.stops = nil
}

// newPool builds the executor drivers the variants name and the pool over them, and the
// decoy executor's own pool of one (pool.decoy; nil without), on its own bus decoyBus: its
// events are not the voting pool's (rotation metrics); the engine's executor watch follows both.
func newPool(cfg *config.Config, configFile, dataDir string, log *slog.Logger, b, decoyBus *bus.Bus) (*executor.Pool, *executor.Pool, error) {
	specs, err := Specs(cfg, configFile, dataDir)
	if err != nil {
		return nil, nil, err
	}
	var decoy []executor.Spec
	if cfg.Pool.Decoy != nil {
		s, err := spec(cfg, *cfg.Pool.Decoy, configFile, dataDir)
		if err != nil {
			return nil, nil, err
		}
		decoy = []executor.Spec{s}
	}
	drivers := map[string]executor.Driver{}
	for i, s := range append(append([]executor.Spec(nil), specs...), decoy...) {
		if _, ok := drivers[s.Driver]; ok {
			continue
		}
		d, err := executor.New(s.Driver, executor.Env{DataDir: dataDir, Logger: log, Bus: b, StopGrace: cfg.Pool.Grace,
			Isolation: executorIsolation(cfg.Pool.Isolation), Options: cfg.Pool})
		if errors.Is(err, executor.ErrUnknownDriver) {
			field := fmt.Sprintf("pool.variants[%d].driver", i)
			if i == len(specs) {
				field = "pool.decoy.driver"
			}
			return nil, nil, strictyaml.Problems{{Field: field, Msg: err.Error()}}.Err(ConfigName(configFile))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("agent: %w", err)
		}
		drivers[s.Driver] = d
	}
	pc := executor.PoolConfig{
		Variants: specs, Desired: cfg.Pool.Desired, Min: cfg.Pool.Min, MaxConcurrent: cfg.Pool.MaxConcurrent,
		Redraw: cfg.Pool.RedrawEnabled(), HealthInterval: cfg.Pool.Health.Interval, HealthTimeout: cfg.Pool.Health.Timeout,
		HealthFailures: cfg.Pool.Health.Failures, StartTimeout: cfg.Pool.StartTimeout, DrainTimeout: cfg.Pool.DrainTimeout,
	}
	pool, err := executor.NewPool(pc, drivers, log, b)
	if err != nil {
		// Spec problems (bad templates, names) are configuration errors.
		return nil, nil, strictyaml.Problems{{Field: "pool.variants", Msg: err.Error()}}.Err(ConfigName(configFile))
	}
	if decoy == nil {
		return pool, nil, nil
	}
	pc.Variants, pc.Desired, pc.Min, pc.MaxConcurrent, pc.Redraw, pc.SharesDrivers = decoy, 1, 1, 1, false, true
	dp, err := executor.NewPool(pc, drivers, log, decoyBus)
	if err != nil {
		return nil, nil, strictyaml.Problems{{Field: "pool.decoy", Msg: err.Error()}}.Err(ConfigName(configFile))
	}
	return pool, dp, nil
}

// decoyRedirect is mimic's Redirect: the clients of the redirect countermeasure, served by
// the decoy executor (none healthy: the gateway answers 503, never the vote).
type decoyRedirect struct {
	set  *countermeasure.Redirects
	pool *executor.Pool
}

func (d decoyRedirect) Redirected(client netip.Addr) (mimic.Backend, string, bool) {
	decision, ok := d.set.Redirected(client)
	if !ok {
		return mimic.Backend{}, "", false
	}
	if h := d.pool.Healthy(); len(h) > 0 {
		return mimic.Backend{ID: h[0].ID, Variant: h[0].Variant, Addr: "http://" + h[0].Address, Traits: h[0].Traits}, decision, true
	}
	return mimic.Backend{}, decision, true
}

// newFrontend builds the client-facing server over ln: the voting gateway, or the proxy
// behind the blocklist. serve runs it until ctx ends (the voting gateway drains then).
func (a *agent) newFrontend(ctx context.Context, ln net.Listener) (frontend, *http.Server, func() error, error) {
	if a.cfg.Gateway.Frontend != config.FrontendVote {
		front := blockingFrontend{next: executor.NewProxy(a.pool, a.log), bl: a.cms.Blocklist}
		srv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		return front, srv, func() error { return srv.Serve(ln) }, nil
	}
	o, so := mimic.FromConfig(a.cfg.Gateway)
	o.Backends, o.Bus, o.Logger, o.Metrics = &poolBackends{pool: a.pool}, a.bus, a.log, mimic.NewMetrics(a.reg)
	o.Blocklist = a.cms.Blocklist
	if a.decoy != nil {
		o.Redirect = decoyRedirect{set: a.cms.Redirects, pool: a.decoy}
		o.Canaries = a.cfg.Pool.Decoy.Canaries
	}
	o.Rebuild = rebuildOnDissent(ctx, a.pool, &a.isolate)
	o.LearnedFile = LearnedNoiseFile(a.o.DataDir)
	g, err := mimic.New(o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("agent: %w", err)
	}
	front := votingFrontend{g}
	so.Gateway, a.gw = g, g
	srv, err := mimic.NewServer(front, so)
	if err != nil {
		g.Close()
		return nil, nil, nil, fmt.Errorf("agent: %w", err)
	}
	// mimic.Serve picks TLS or the lean cleartext HTTP/1.1 loop and drains on ctx's end.
	return front, srv, func() error { return mimic.Serve(ctx, srv, ln) }, nil
}

// startEngine runs the inference engine when engine.model is set: sensors, decisions, the
// audit store (DATA-DIR/audit.db, read by `proteus decisions`).
func (a *agent) startEngine(ctx context.Context) error {
	if !a.cfg.Engine.Enabled() {
		return nil
	}
	o := engine.AgentOptions{Config: a.cfg, ConfigFile: a.o.ConfigFile, DataDir: a.o.DataDir,
		Manager: a.cms.Manager, BlockActuators: a.cms.BlockActuators, VigilanceActuator: countermeasure.VigilanceID,
		Pool: a.pool, Members: a.pool, Bus: a.bus, Logger: a.log, Metrics: a.reg}
	if a.cfg.Enclave.Enabled {
		o.Share = a.share // the node starts right after the engine
	}
	if a.decoy != nil {
		o.Decoy, o.DecoyBus = a.decoy, a.decoyBus
	}
	if a.decoy != nil && a.gw != nil {
		o.RedirectActuators = append(o.RedirectActuators, countermeasure.RedirectID)
	}
	if a.cms.NetRedirectActuator != "" {
		o.RedirectActuators = append(o.RedirectActuators, a.cms.NetRedirectActuator)
	}
	if a.gw != nil && len(a.cfg.Gateway.Identities) > 0 {
		o.SignalFollowers = append(o.SignalFollowers, gatewaySignal{g: a.gw, asset: a.cfg.Gateway.SignalAsset})
	}
	r, err := engine.Start(ctx, o)
	if err != nil {
		return err
	}
	isolate := func(id string) {
		if c := r.Engine.Isolate(ctx, id, "dissent"); c.Error != "" {
			a.log.Warn("isolating a dissenting executor", "component", "engine", "executor", id, "err", c.Error)
		}
	}
	a.isolate.Store(&isolate)
	a.state.engine.Store(r)
	// A listening sensor that cannot listen is restarted by the supervisor and shown in
	// status; the agent does not wait for it forever.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if !r.WaitListening(wctx) {
		a.log.Warn("a listening sensor is not listening yet", "component", "engine")
	}
	wcancel()
	a.log.Info("engine running", "component", "engine", "sensors", len(r.Supervisor.States()), "block", a.cms.BlockActuators)
	a.stops = append(a.stops, func() { a.isolate.Store(nil); r.Stop() })
	return nil
}

// gatewaySignal makes the voting gateway's identity follow the signal of asset (every
// asset's when empty).
type gatewaySignal struct {
	g     *mimic.Gateway
	asset string
}

func (f gatewaySignal) SetSignal(asset, signal string) {
	if f.asset == "" || f.asset == asset {
		f.g.SetSignal(signal)
	}
}

// Specs turns the configured variants into executor specs, resolving image paths and
// writing the built-in demo image on first use.
func Specs(cfg *config.Config, configFile, dataDir string) ([]executor.Spec, error) {
	specs := make([]executor.Spec, 0, len(cfg.Pool.Variants))
	for _, v := range cfg.Pool.Variants {
		s, err := spec(cfg, v, configFile, dataDir)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// spec turns one configured variant into an executor spec (see Specs).
func spec(cfg *config.Config, v config.Variant, configFile, dataDir string) (executor.Spec, error) {
	baseDir := "."
	if configFile != "" {
		baseDir = filepath.Dir(configFile)
	}
	img := v.Image
	switch {
	case v.Driver != process.ID:
	case img == config.BuiltinDemoImage:
		img = filepath.Join(dataDir, "images", "demo")
		if err := ensureDemoImage(img); err != nil {
			return executor.Spec{}, err
		}
	case !filepath.IsAbs(img):
		img = filepath.Join(baseDir, img)
	}
	s := executor.Spec{
		Variant: v.Name, Driver: v.Driver, Image: img, Command: v.Command, Env: v.Env, Files: v.Files,
		ContainerPort: v.ContainerPort, HealthPath: v.HealthPath, Traits: v.Traits, AllowOutbound: v.AllowOutbound,
	}
	if cfg.Pool.Protocol == config.ProtocolDNS {
		name, qtype, err := config.ParseDNSQuery(v.HealthQuery)
		if err != nil { // validation refused it already
			return executor.Spec{}, fmt.Errorf("agent: variant %s: health query: %w", v.Name, err)
		}
		s.HealthQuery = &executor.DNSQuery{Name: name, Type: qtype}
	}
	return s, nil
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
