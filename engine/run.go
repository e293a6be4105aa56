package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/deception/decoy" // sensor.decoy
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/sensor"
	_ "github.com/proteus-defense/proteus/sensor/eve" // sensor.eve
	_ "github.com/proteus-defense/proteus/sensor/fim" // sensor.fim
	"github.com/proteus-defense/proteus/store"
	"github.com/proteus-defense/proteus/strictyaml"
)

// AgentOptions is what the running agent hands the engine.
type AgentOptions struct {
	Config     *config.Config
	ConfigFile string // "" for the embedded default; relative paths resolve against its directory
	DataDir    string
	Manager    *countermeasure.Manager
	// BlockActuators receive every block (the gateway blocklist; nftables when it runs).
	BlockActuators    []string
	VigilanceActuator string
	RedirectActuators []string // see Options.RedirectActuators
	Pool              Pool
	// Members lets the file-integrity sensor watch the running executors; nil: host paths only.
	Members Members
	// Decoy is the decoy executor's own pool (pool.decoy) and DecoyBus the bus its events go
	// to: watched by the file-integrity sensors like the voting executors (with Members), and
	// taken out of service the same way when evidence accuses it. Both nil without one.
	Decoy    DecoyExecutor
	DecoyBus *bus.Bus
	// Share publishes confident local detections to the enclave (Options.Share); nil: none.
	Share func(ctx context.Context, s Sighting) error
	Bus   *bus.Bus
	// Metrics receives the engine's and the sensors' counters (nil: none).
	Metrics prometheus.Registerer
	Logger  *slog.Logger
	// SignalFollowers follow the game's deception signal besides the sensors that do (the
	// gateway's identity); each gets the signals restored from the audit store at start.
	SignalFollowers []SignalFollower
}

// Running is a started engine with its sensors.
type Running struct {
	Engine     *Engine
	Supervisor *sensor.Supervisor
	sources    []sensor.Source
	store      *store.Store
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// Start loads the model, opens the audit store, builds the sensors and starts the engine,
// the sensors' supervisor and the gateway follower. Config problems (model references) come
// back located in the config file. Stop ends them.
func Start(ctx context.Context, o AgentOptions) (*Running, error) {
	m, base, err := loadModel(o.Config, o.ConfigFile)
	if err != nil {
		return nil, err
	}
	if d := o.Config.Sensors.Decoy; d != nil && d.Hosts != nil {
		if err := decoy.CheckHosts(*d.Hosts); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(o.DataDir)
	if err != nil {
		return nil, err
	}
	e, err := New(Options{Config: o.Config.Engine, Model: m, Manager: o.Manager, BlockActuators: o.BlockActuators,
		VigilanceActuator: o.VigilanceActuator, RedirectActuators: o.RedirectActuators, Pool: o.Pool, Decoy: o.Decoy, Store: st, Bus: o.Bus, Logger: o.Logger, Share: o.Share})
	if err != nil {
		st.Close()
		return nil, locate(err, o.ConfigFile)
	}
	env := sensor.Env{Config: o.Config.Sensors, BaseDir: base, DataDir: o.DataDir, Logger: o.Logger}
	if d := o.Config.Pool.Decoy; d != nil {
		env.Canaries = d.Canaries
	}
	srcs, err := sensor.Build(env)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("engine: %w", err)
	}
	sup := sensor.NewSupervisor(srcs, 256, sensor.Backoff{}, o.Logger)
	sup.Notify(func(st sensor.State) {
		o.Bus.Publish(bus.Event{Kind: EventSensorState, Source: "engine", Subject: st.Name, Attrs: map[string]any{
			"state": st.State, "restarts": st.Restarts, "last_error": st.LastError}})
	})
	if o.Metrics != nil {
		if err := registerMetrics(o.Metrics, e, sup, srcs); err != nil {
			st.Close()
			return nil, err
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &Running{Engine: e, Supervisor: sup, sources: srcs, store: st, cancel: cancel}
	if fims := fimSensors(srcs); len(fims) > 0 && o.Members != nil {
		w := &executorWatcher{pools: []Members{o.Members}, sensors: fims, manifests: map[string]map[string]string{}}
		buses := []*bus.Bus{o.Bus}
		if o.Decoy != nil && o.DecoyBus != nil {
			w.pools, buses = append(w.pools, o.Decoy), append(buses, o.DecoyBus)
		}
		r.wg.Add(1)
		go func() { defer r.wg.Done(); w.run(rctx, buses...) }()
	}
	if fs := append(signalFollowers(srcs), o.SignalFollowers...); len(fs) > 0 {
		// What was in force before a restart is presented again before the engine runs.
		restored := e.signals()
		for _, asset := range slices.Sorted(maps.Keys(restored)) {
			for _, f := range fs {
				f.SetSignal(asset, restored[asset])
			}
		}
		// Subscribed before the engine runs, so no signal change is missed.
		ch, unsub := o.Bus.Subscribe(64, func(e bus.Event) bool { return e.Kind == EventSignal })
		r.wg.Add(1)
		go func() { defer r.wg.Done(); defer unsub(); followSignal(rctx, ch, fs) }()
	}
	r.wg.Add(4)
	go func() { defer r.wg.Done(); e.Run(rctx) }()
	go func() { defer r.wg.Done(); sup.Run(rctx) }()
	go func() {
		defer r.wg.Done()
		for ev := range sup.Events() {
			e.Push(rctx, ev)
		}
	}()
	go func() { defer r.wg.Done(); e.FollowBus(rctx, o.Bus) }()
	return r, nil
}

// SignalFollower is what follows the game's deception signal (the decoys' banners, the
// gateway's identity): SetSignal gets every change of an asset's signal.
type SignalFollower interface {
	SetSignal(asset, signal string)
}

func signalFollowers(srcs []sensor.Source) []SignalFollower {
	var out []SignalFollower
	for _, s := range srcs {
		if f, ok := s.(SignalFollower); ok {
			out = append(out, f)
		}
	}
	return out
}

// followSignal hands every signal change the engine publishes to fs until ctx ends.
func followSignal(ctx context.Context, ch <-chan bus.Event, fs []SignalFollower) {
	for {
		select {
		case <-ctx.Done():
			return
		case be := <-ch:
			asset, _ := be.Attrs["asset"].(string)
			sig, _ := be.Attrs["signal"].(string)
			for _, f := range fs {
				f.SetSignal(asset, sig)
			}
		}
	}
}

// SensorState is one sensor's supervisor state with what it counted (for sensors that count:
// lines, events, malformed, partial, ...).
type SensorState struct {
	sensor.State
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// Sensors returns every sensor's state, in configuration order.
func (r *Running) Sensors() []SensorState {
	states := r.Supervisor.States()
	out := make([]SensorState, len(states))
	for i, st := range states {
		out[i].State = st
		if i < len(r.sources) {
			if c, ok := r.sources[i].(counterSource); ok {
				out[i].Counters = c.Counters()
			}
		}
	}
	return out
}

// Stop stops the sensors and the engine, writes the queued decisions and closes the store.
func (r *Running) Stop() {
	r.cancel()
	r.wg.Wait()
	r.store.Close()
}

// loadModel reads the model engine.model names, relative to the config file's directory
// (returned as base).
func loadModel(cfg *config.Config, configFile string) (*game.Model, string, error) {
	base := "."
	if configFile != "" {
		base = filepath.Dir(configFile)
	}
	path := cfg.Engine.Model
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, base, fmt.Errorf("engine: model: %w", err)
	}
	m, err := game.ParseModel(path, data)
	return m, base, err
}

// locate turns a ConfigError into problems at file:line:col of the config file.
func locate(err error, configFile string) error {
	var ce *ConfigError
	if errors.As(err, &ce) && configFile != "" {
		if raw, rerr := os.ReadFile(configFile); rerr == nil {
			return config.LocateProblems(configFile, raw, ce.Problems)
		}
	}
	return err
}

// Check validates what the agent would refuse at start about the engine, without starting
// anything: the model file, and every reference the engine config makes into it (located at
// file:line:col of configFile). A config without engine.model passes.
func Check(cfg *config.Config, configFile string) error {
	if !cfg.Engine.Enabled() {
		return nil
	}
	m, _, err := loadModel(cfg, configFile)
	if err != nil {
		return err
	}
	_, probs := compileRules(cfg.Engine, m)
	probs = append(probs, decoySignals(cfg.Sensors.Decoy, m)...)
	probs = append(probs, gatewaySignals(cfg, m)...)
	probs = append(probs, canaryRules(cfg)...)
	if len(probs) > 0 {
		return locate(&ConfigError{Problems: probs}, configFile)
	}
	return nil
}

// canaryRules refuses canaries that nothing decides on: their use is reported as kind canary
// (by the gateway, and by the decoys when there are any), and without an engine rule for it
// the event would be dropped.
func canaryRules(cfg *config.Config) strictyaml.Problems {
	var p strictyaml.Problems
	if d := cfg.Pool.Decoy; d == nil || len(d.Canaries) == 0 {
		return nil
	}
	if !slices.ContainsFunc(cfg.Engine.Rules, func(r config.Rule) bool { return r.Kind == "canary" }) {
		p.Addf("pool.decoy.canaries", "no engine rule decides on a canary's use: add one such as {sensor: gateway, kind: canary, stage: S1, attack: a1, weight: 0.99}")
	}
	return p
}

// decoySignals checks the decoys' banner sets against the model's signals (signalSets).
func decoySignals(d *config.Decoy, m *game.Model) strictyaml.Problems {
	if d == nil {
		return nil
	}
	return signalSets("sensors.decoy.banners", "banner set", slices.Collect(maps.Keys(d.Banners)), m)
}

// gatewaySignals checks the gateway's identities against the model's signals (signalSets)
// and the asset whose signal it follows against the engine's assets (else it never would).
func gatewaySignals(cfg *config.Config, m *game.Model) strictyaml.Problems {
	g := cfg.Gateway
	if len(g.Identities) == 0 {
		return nil
	}
	p := signalSets("gateway.identities", "identity", slices.Collect(maps.Keys(g.Identities)), m)
	if g.SignalAsset != "" && !slices.ContainsFunc(cfg.Engine.Assets, func(a config.Asset) bool { return a.Name == g.SignalAsset }) {
		p.Addf("gateway.signal_asset", "is not an engine asset (engine.assets[].name), got %q", g.SignalAsset)
	}
	return p
}

// signalSets checks what follows the signal (one set per signal ID, at field) against the
// model's signals: each signal a type can send needs a set (else the old one would stay
// presented), and a set for a signal the model does not have is a typo.
func signalSets(field, what string, keys []string, m *game.Model) strictyaml.Problems {
	var p strictyaml.Problems
	signals := map[string]bool{}
	var names []string
	for _, t := range m.Types {
		if t.Signal != "" {
			signals[t.Signal] = true
			names = append(names, t.Signal)
		}
	}
	for _, sig := range names {
		if !slices.Contains(keys, sig) {
			p.Addf(field, "no %s for signal %q, which the model's types can send", what, sig)
		}
	}
	slices.Sort(keys)
	for _, sig := range keys {
		if !signals[sig] {
			p.Addf(field+"."+sig, "the model has no signal %q; its signals are %s", sig, strings.Join(names, ", "))
		}
	}
	return p
}

// Store is the audit store the engine writes its decisions to (the API reads it).
func (r *Running) Store() *store.Store { return r.store }

// WaitListening waits until every sensor that listens (one with a Ready channel, such as the
// decoys) is listening, or ctx ends; false then. An agent reports itself ready only after
// this, so a connection to a decoy right after start finds it there.
func (r *Running) WaitListening(ctx context.Context) bool {
	for _, s := range r.sources {
		l, ok := s.(interface{ Ready() <-chan struct{} })
		if !ok {
			continue
		}
		select {
		case <-l.Ready():
		case <-ctx.Done():
			return false
		}
	}
	return true
}
