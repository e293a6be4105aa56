package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/sensor"
	_ "github.com/proteus-defense/proteus/sensor/eve" // sensor.eve
	_ "github.com/proteus-defense/proteus/sensor/fim" // sensor.fim
	"github.com/proteus-defense/proteus/store"
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
	Pool              Pool
	// Members lets the file-integrity sensor watch the running executors; nil: host paths only.
	Members Members
	Bus     *bus.Bus
	Logger            *slog.Logger
}

// Running is a started engine with its sensors.
type Running struct {
	Engine     *Engine
	Supervisor *sensor.Supervisor
	store      *store.Store
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// Start loads the model, opens the audit store, builds the sensors and starts the engine,
// the sensors' supervisor and the gateway follower. Config problems (model references) come
// back located in the config file. Stop ends them.
func Start(ctx context.Context, o AgentOptions) (*Running, error) {
	c := o.Config.Engine
	base := "."
	if o.ConfigFile != "" {
		base = filepath.Dir(o.ConfigFile)
	}
	modelPath := c.Model
	if !filepath.IsAbs(modelPath) {
		modelPath = filepath.Join(base, modelPath)
	}
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("engine: model: %w", err)
	}
	m, err := game.ParseModel(modelPath, data)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(o.DataDir)
	if err != nil {
		return nil, err
	}
	e, err := New(Options{Config: c, Model: m, Manager: o.Manager, BlockActuators: o.BlockActuators,
		VigilanceActuator: o.VigilanceActuator, Pool: o.Pool, Store: st, Bus: o.Bus, Logger: o.Logger})
	if err != nil {
		st.Close()
		var ce *ConfigError
		if errors.As(err, &ce) && o.ConfigFile != "" {
			if raw, rerr := os.ReadFile(o.ConfigFile); rerr == nil {
				return nil, config.LocateProblems(o.ConfigFile, raw, ce.Problems)
			}
		}
		return nil, err
	}
	srcs, err := sensor.Build(sensor.Env{Config: o.Config.Sensors, BaseDir: base, DataDir: o.DataDir, Logger: o.Logger})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("engine: %w", err)
	}
	sup := sensor.NewSupervisor(srcs, 256, sensor.Backoff{}, o.Logger)
	rctx, cancel := context.WithCancel(ctx)
	r := &Running{Engine: e, Supervisor: sup, store: st, cancel: cancel}
	if fims := fimSensors(srcs); len(fims) > 0 && o.Members != nil {
		w := &executorWatcher{pool: o.Members, sensors: fims, manifests: map[string]map[string]string{}}
		r.wg.Add(1)
		go func() { defer r.wg.Done(); w.run(rctx, o.Bus) }()
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

// Stop stops the sensors and the engine, writes the queued decisions and closes the store.
func (r *Running) Stop() {
	r.cancel()
	r.wg.Wait()
	r.store.Close()
}
