// Package config owns Proteus's versioned YAML configuration: the schema, the embedded
// defaults, strict decoding and validation without I/O. The only I/O here is Load (and
// LoadStandaloneEnclave) reading the one file it is named; Parse and validation work on bytes
// and values alone, and nothing here opens sockets, starts processes or checks the paths a
// config names (start-up does that).
//
// Each top-level section lives in its own file (api.go, pool.go, gateway.go, enclave.go, sensors.go, engine.go) with
// its own defaults and validate method, so a section can grow without touching the others.
//
// It may import strictyaml and the standard library only.
package config

import (
	_ "embed"
	"fmt"
	"net/netip"
	"os"

	"github.com/proteus-defense/proteus/strictyaml"
)

// CurrentVersion is the only config version this build understands.
const CurrentVersion = 1

// Config is the whole agent configuration.
type Config struct {
	Version int     `yaml:"version"`
	DataDir string  `yaml:"data_dir"`
	Log     Log     `yaml:"log"`
	API     API     `yaml:"api"`
	Pool    Pool    `yaml:"pool"`
	Gateway Gateway `yaml:"gateway"`
	DNS     DNS     `yaml:"dns"`
	Enclave Enclave `yaml:"enclave"`
	Sensors Sensors `yaml:"sensors"`
	Engine  Engine  `yaml:"engine"`
}

// Log selects the log format and level.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration, the one `proteus agent` runs
// when no file is given.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Default returns the parsed embedded defaults.
func Default() *Config {
	c, err := Parse("embedded default.yaml", defaultYAML)
	if err != nil {
		panic(fmt.Sprintf("config: embedded defaults are invalid: %v", err))
	}
	return c
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) { return load(path, Parse) }

// load reads the file at path and hands it to parse.
func load(path string, parse func(file string, data []byte) (*Config, error)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, data)
}

// Parse decodes data strictly, fills defaults and validates. Errors name file, line and field
// and wrap strictyaml.ErrInvalid.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, data, func(strictyaml.Problem) bool { return true })
}

// parse decodes data strictly, fills defaults and reports the validation problems for which
// keep is true, located in the file.
func parse(file string, data []byte, keep func(strictyaml.Problem) bool) (*Config, error) {
	c := &Config{}
	doc, err := strictyaml.Decode(file, data, c)
	if doc == nil {
		return nil, err
	}
	// Unknown fields and wrong types do not stop here: what decoded is validated too, so one
	// run reports every problem of the file.
	c.applyDefaults()
	var kept strictyaml.Problems
	for _, p := range c.Problems() {
		if keep(p) {
			kept = append(kept, p)
		}
	}
	if err := doc.Report(err, kept); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the configuration without I/O; problems carry field paths but no lines.
func (c *Config) Validate() error { return c.Problems().Err("config") }

// Problems lists every validation problem of c.
func (c *Config) Problems() strictyaml.Problems {
	var p strictyaml.Problems
	if c.Version != CurrentVersion {
		if c.Version == 0 {
			p.Addf("version", "is required; set version: %d", CurrentVersion)
		} else {
			p.Addf("version", "unsupported version %d; this build understands %d", c.Version, CurrentVersion)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.Addf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.Addf("log.format", "must be text or json, got %q", c.Log.Format)
	}
	c.API.validate("api", &p)
	c.Pool.validate("pool", &p)
	c.Gateway.validate("gateway", &p)
	if g := &c.Gateway; c.Pool.Protocol == ProtocolHTTP && len(g.Backends) == 0 && g.Frontend == FrontendVote && g.K > c.Pool.Desired && !g.AllowWeakVote && g.VotesOnK() {
		p.Addf("gateway.k", "k=%d is more than the pool's %d executors (pool.desired): every vote would have fewer voters than asked (set gateway.allow_weak_vote: true to run it anyway)", g.K, c.Pool.Desired)
	}
	c.DNS.validate("dns", &p)
	if d := &c.DNS; c.Pool.Protocol == ProtocolDNS {
		if len(d.Backends) > 0 {
			p.Addf("dns.backends", "with pool.protocol dns the agent's DNS front votes over the pool's executors; dns.backends are for proteus dns-gateway (remove them)")
		}
		if d.K > c.Pool.Desired && !d.AllowWeakVote {
			p.Addf("dns.k", "k=%d is more than the pool's %d executors (pool.desired): every vote would have fewer voters than asked (set dns.allow_weak_vote: true to run it anyway)", d.K, c.Pool.Desired)
		}
	}
	c.Enclave.validate("enclave", &p)
	c.Sensors.validate("sensors", &p)
	c.Engine.validate("engine", &p, &c.Sensors)
	if r := c.Engine.Redirect; r != nil {
		r.validate("engine.redirect", &p, c.Engine.NFTables, c.Sensors.Decoy)
		// Without a decoy executor or the vote, a redirect would silently serve the vote.
		if c.Pool.Decoy == nil && len(r.Ports) == 0 {
			p.Addf("engine.redirect", "needs pool.decoy: the executor that serves redirected clients (or ports: to redirect at the network layer)")
		}
		if c.Pool.Decoy != nil && c.Gateway.Frontend != FrontendVote {
			p.Addf("engine.redirect", "needs gateway.frontend vote (the proxy frontend cannot redirect), got %s", c.Gateway.Frontend)
		}
	} else if c.Pool.Decoy != nil {
		p.Addf("pool.decoy", "is served only to redirected clients: set engine.redirect (ttl:) too")
	}
	for i, a := range c.Engine.BlockableLoopback {
		for _, l := range [][2]string{{"gateway.listen", c.Gateway.Listen}, {"api.listen", c.API.Listen}} {
			if ap, err := netip.ParseAddrPort(l[1]); err == nil && ap.Addr().String() == a {
				p.Addf(indexed("engine.blockable_loopback", i), "%s is %s's address: blocking it would cut off every client", a, l[0])
			}
		}
	}
	return p
}

func (c *Config) applyDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.API.applyDefaults()
	c.Pool.applyDefaults()
	c.Gateway.applyDefaults()
	c.DNS.applyDefaults()
	c.Enclave.applyDefaults()
	c.Sensors.applyDefaults()
	c.Engine.applyDefaults()
}
