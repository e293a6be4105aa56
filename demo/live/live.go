// Package live runs `proteus demo`: the whole agent (engine/agent) on the demo's embedded
// configuration (agent.yaml: the demo shop in three heterogeneous variants, one deliberately
// weakened, behind the voting gateway, rotation, the engine on the paper's model, the sensors
// that need no root, the audit store and the dashboard) in a data directory of its own, and
// says where to look once it serves. The scripted attack against it is demo/attack.
//
// It imports api, config, engine/agent and examples; it must not import cmd.
package live

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/dashboard"
	"github.com/proteus-defense/proteus/engine/agent"
	"github.com/proteus-defense/proteus/examples"
)

//go:embed agent.yaml
var configTemplate string

// Files of the demo's data directory, besides what the agent keeps there.
const (
	ConfigFile = "agent.yaml"         // the config the demo runs, as written
	ModelFile  = "mttegdm-paper.yaml" // the paper's model, which the config names
	EVEFile    = "eve.json"           // the EVE JSON log the engine tails
	// MarkerFile marks a directory as the demo's: the demo empties it at each start and
	// refuses a non-empty directory without it.
	MarkerFile = "proteus-demo"
)

// WeakVariant is the variant of agent.yaml with the deliberate file-inclusion bug.
const WeakVariant = "go-nethttp"

// Attacker is the loopback address `proteus demo --attack` connects from: the one address
// of 127.0.0.0/8 the demo's engine may block (engine.blockable_loopback).
var Attacker = netip.MustParseAddr("127.0.0.66")

// Addrs are the addresses the demo listens on; empty fields take the defaults.
type Addrs struct {
	Gateway string // the shop, through the voting gateway (127.0.0.1:8080)
	API     string // the API and the dashboard (127.0.0.1:9090)
	Decoy   string // the SSH decoy (127.0.0.1:2222)
}

// DefaultAddrs are the demo's addresses unless told otherwise.
var DefaultAddrs = Addrs{Gateway: "127.0.0.1:8080", API: "127.0.0.1:9090", Decoy: "127.0.0.1:2222"}

func (a Addrs) withDefaults() Addrs {
	for _, f := range []struct {
		p   *string
		def string
	}{{&a.Gateway, DefaultAddrs.Gateway}, {&a.API, DefaultAddrs.API}, {&a.Decoy, DefaultAddrs.Decoy}} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
	return a
}

// ErrNotDemoDir is returned for a data directory that holds something other than a demo's.
var ErrNotDemoDir = errors.New("demo: not a demo data directory")

// Options configure Run.
type Options struct {
	DataDir string // made absolute; must be absent, empty or a previous demo's
	Addrs   Addrs
	Logger  *slog.Logger
	// Ready, when set, is called once the shop and the dashboard serve.
	Ready func(Ready)
}

// Ready says where the running demo is.
type Ready struct {
	Shop      string // http://host:port/ of the shop
	Dashboard string // http://host:port/ of the dashboard
	// Login is a one-time login link to the dashboard (proteus dashboard makes more).
	Login               dashboard.LinkAnswer
	DataDir             string
	ConfigFile          string // the config the agent runs
	EVEFile             string // where EVE alerts for the engine go
	Gateway, API        string // host:port
	Decoy               string // host:port of the SSH decoy
	Attacker            netip.Addr
	Executors, Variants int
}

// Prepare makes dir the demo's data directory for a fresh run: it refuses a non-empty
// directory that is not a previous demo's, empties a previous demo's (its decisions, blocks
// and executors belong to that run), and writes the config, the model and an empty EVE log.
// It returns the config file's path.
func Prepare(dir string, a Addrs) (string, error) {
	a = a.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("demo: data dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("demo: data dir: %w", err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err != nil {
			return "", fmt.Errorf("%w: %s is not empty and has no %s file; give an empty or new --data-dir", ErrNotDemoDir, dir, MarkerFile)
		}
		if err := notLocked(dir); err != nil {
			return "", err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return "", fmt.Errorf("demo: emptying the previous run's %s: %w", dir, err)
			}
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("demo: data dir: %w", err)
	}
	var cfg bytes.Buffer
	t := template.Must(template.New(ConfigFile).Delims("[[", "]]").Option("missingkey=error").Parse(configTemplate))
	if err := t.Execute(&cfg, map[string]string{"Gateway": a.Gateway, "API": a.API, "Decoy": a.Decoy, "Attacker": Attacker.String()}); err != nil {
		return "", fmt.Errorf("demo: config: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{MarkerFile, []byte("This directory belongs to `proteus demo`, which empties it at every start.\n")},
		{ModelFile, examples.PaperModel}, {ConfigFile, cfg.Bytes()}, {EVEFile, nil},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
	}
	return filepath.Join(dir, ConfigFile), nil
}

// notLocked refuses a data directory whose agent.lock another agent holds.
func notLocked(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("demo: a demo is already running with data dir %s", dir)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// Load prepares dir (see Prepare) and loads and checks the demo's config as `proteus agent
// -c` would.
func Load(dir string, a Addrs) (*config.Config, string, error) {
	path, err := Prepare(dir, a)
	if err != nil {
		return nil, "", err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, "", err
	}
	if err := cfg.Problems().Err(path); err != nil {
		return nil, "", err
	}
	if _, err := agent.Check(cfg, path); err != nil {
		return nil, "", err
	}
	return cfg, path, nil
}

// Run runs the demo until ctx ends or the agent fails.
func Run(ctx context.Context, o Options) error {
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("demo: data dir: %w", err)
	}
	a := o.Addrs.withDefaults()
	cfg, path, err := Load(dir, a)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var readyErr error
	fail := func(err error) { readyErr = err; stop() }
	err = agent.Run(ctx, agent.Options{Config: cfg, ConfigFile: path, DataDir: dir, Logger: o.Logger,
		Ready: func(r agent.Ready) {
			c, err := api.NewClient(dir, r.API.String())
			if err != nil {
				fail(err)
				return
			}
			link, err := c.LoginLink(ctx)
			if err != nil {
				fail(fmt.Errorf("demo: dashboard login link: %w", err))
				return
			}
			if o.Ready != nil {
				o.Ready(Ready{Shop: "http://" + r.Gateway.String() + "/", Dashboard: "http://" + r.API.String() + "/", Login: link,
					DataDir: dir, ConfigFile: path, EVEFile: filepath.Join(dir, EVEFile), Gateway: r.Gateway.String(), API: r.API.String(),
					Decoy: a.Decoy, Attacker: Attacker, Executors: cfg.Pool.Desired, Variants: len(cfg.Pool.Variants)})
			}
		}})
	if readyErr != nil {
		err = readyErr
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "listen" {
		return fmt.Errorf("%w (another program has the port: give the demo others with --listen, --api, --decoy)", err)
	}
	return err
}

// ErrNotRunning is returned by Attach when no demo runs with the data directory.
var ErrNotRunning = errors.New("demo: no demo is running with this data dir")

// Attach finds the demo running with data directory dir (another process's `proteus
// demo`) and says where it is; Login is left empty (the API makes links on request).
func Attach(dir string) (Ready, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Ready{}, fmt.Errorf("demo: data dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err != nil {
		return Ready{}, ErrNotRunning
	}
	if notLocked(dir) == nil {
		return Ready{}, ErrNotRunning
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	gw, apiAddr := read(agent.GatewayAddrFile), read(api.AddrFile)
	path := filepath.Join(dir, ConfigFile)
	cfg, err := config.Load(path)
	if err != nil {
		return Ready{}, err
	}
	if gw == "" || apiAddr == "" || cfg.Sensors.Decoy == nil || len(cfg.Sensors.Decoy.Listen) == 0 {
		return Ready{}, fmt.Errorf("%w: the demo in %s is still starting", ErrNotRunning, dir)
	}
	return Ready{Shop: "http://" + gw + "/", Dashboard: "http://" + apiAddr + "/", DataDir: dir, ConfigFile: path,
		EVEFile: filepath.Join(dir, EVEFile), Gateway: gw, API: apiAddr, Decoy: cfg.Sensors.Decoy.Listen[0].Addr, Attacker: Attacker,
		Executors: cfg.Pool.Desired, Variants: len(cfg.Pool.Variants)}, nil
}
