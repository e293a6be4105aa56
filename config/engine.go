package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

// Engine is the engine: section: how evidence becomes decisions. The engine runs when model:
// names an MTTEGDM model file (see examples/mttegdm-paper.yaml); references into the model
// (devices, stages, attacks, defenses, types) are checked when the agent loads it, with the
// config's file, line and column (LocateProblems).
type Engine struct {
	Model string `yaml:"model"`
	// DefenderType fixes the defender type (a model types[].id) whose best option the engine
	// deploys; empty means the solver's overall choice, as `proteus game solve` reports it.
	DefenderType string  `yaml:"defender_type"`
	Assets       []Asset `yaml:"assets"`
	Rules        []Rule  `yaml:"rules"`
	// Strategies maps a model defense ID (d1, d7, ...) to the countermeasures that carry it
	// out.
	Strategies map[string][]Countermeasure `yaml:"strategies"`
	// HalfLife is how fast evidence fades from Pr(attack) (default 10m).
	HalfLife time.Duration `yaml:"half_life"`
	// StageTTL returns an asset to "no stage" after this long without evidence (default 30m).
	StageTTL time.Duration `yaml:"stage_ttl"`
	// MinTransition is the least η-path probability (product of the model's transition
	// probabilities along the likeliest path) for evidence to move an asset from its stage to a
	// later one (default 0.3).
	MinTransition float64 `yaml:"min_transition"`
	// IntensityRate is the event rate per minute of one source at which the live attack
	// intensity π reaches 1 (default 60).
	IntensityRate float64 `yaml:"intensity_rate"`
	// RateUnit is the model's time unit for the reconfiguration rate a (default 1m: the pool's
	// measured rebuilds per minute).
	RateUnit time.Duration `yaml:"rate_unit"`
	// Queue bounds the engine's event queue (default 4096); events beyond it are dropped and
	// counted.
	Queue int `yaml:"queue"`
	// BlockTTL and VigilanceTTL are the default lifetimes of those countermeasures (10m).
	BlockTTL     time.Duration `yaml:"block_ttl"`
	VigilanceTTL time.Duration `yaml:"vigilance_ttl"`
	// Redirect, when set, makes a defer verdict on a source also redirect it for TTL: the
	// voting gateway serves its requests from the decoy executor (pool.decoy) instead of the
	// vote, and records each in the decision's evidence. Needs pool.decoy and the voting
	// frontend.
	Redirect *Redirect `yaml:"redirect"`
	// Retention is how long decisions stay in the audit store (default 720h).
	Retention time.Duration `yaml:"retention"`
	// MaxQuarantined bounds the executors the engine keeps quarantined (frozen, for
	// forensics) in one run of the agent (default 4); past it a tampered executor is rotated
	// (destroyed and rebuilt) instead, so an attacker cannot exhaust the host with frozen
	// copies.
	MaxQuarantined int `yaml:"max_quarantined"`
	// MaxBlocks bounds the addresses the engine keeps blocked at once (default 4096): evidence
	// names its source, and a flood of alerts from spoofed sources must not grow the block
	// sets without bound. Past it a new block is refused and the refusal recorded.
	MaxBlocks int `yaml:"max_blocks"`
	// BlockableLoopback are loopback addresses a block may name although the countermeasure
	// manager otherwise never blocks 127.0.0.0/8: single IPv4 addresses in 127.0.0.0/8 other
	// than 127.0.0.1 (the gateway reaches its executors from there), none the gateway or the
	// API listens on. A one-host demonstration's attacker connects from one (proteus demo uses
	// 127.0.0.66), so a block can be seen to take effect.
	BlockableLoopback []string `yaml:"blockable_loopback"`
	// NFTables: auto (default) blocks in the kernel too (table inet proteus) when the agent
	// runs as root and nftables works, on requires it (the agent refuses to start without),
	// off blocks at the gateway only. The gateway blocklist always blocks.
	NFTables string `yaml:"nftables"`
	// Vigilance is how the data path tightens while the vigilance level is raised (by the
	// engine's defer decisions, by an act on an unmapped strategy, by the enclave); it applies
	// with or without engine.model.
	Vigilance Vigilance `yaml:"vigilance"`
}

// Vigilance bounds what a raised vigilance level L changes, and everything returns to the
// configured behaviour when the level decays to 0 (its actions expire):
//
//   - the gateway asks k = min(max_k, gateway.k + L) executors per voted request (a majority
//     of those asked is the quorum);
//   - an executor is rebuilt after max(min_rebuild_threshold, ⌈t / 2^L⌉) dissents, t being
//     gateway's rebuild threshold (a gateway that never rebuilds still never does);
//   - the rotation interval (pool.rotation.every) is multiplied by rotation_factor^L, never
//     below min_interval.
type Vigilance struct {
	// MaxK bounds k; 0 means gateway.k + 2. Set it to gateway.k to keep k fixed.
	MaxK int `yaml:"max_k"`
	// RotationFactor in (0, 1] per level (default 0.5); 1 keeps the interval.
	RotationFactor float64 `yaml:"rotation_factor"`
	// MinInterval is the floor of a shortened rotation interval (default 10s).
	MinInterval time.Duration `yaml:"min_interval"`
	// MinRebuildThreshold is the fewest dissents that rebuild an executor (default 1).
	MinRebuildThreshold int `yaml:"min_rebuild_threshold"`
}

// Asset is one protected asset: a model device (its security-attribute values give the
// three-way thresholds α, β) and the destination ports whose traffic belongs to it. The
// asset with default: true takes evidence that names no known asset.
type Asset struct {
	Name    string `yaml:"name"`
	Device  string `yaml:"device"`
	Ports   []int  `yaml:"ports"`
	Default bool   `yaml:"default"`
}

// Rule maps evidence to the model: an event that matches every given field counts as the
// attack strategy Attack of stage Stage with strength Weight in (0, 1).
type Rule struct {
	Name   string `yaml:"name"`
	Sensor string `yaml:"sensor"` // eve, fim, aide, gateway, enclave, executor
	Kind   string `yaml:"kind"`   // event kind, e.g. alert, anomaly, dissent
	// Signature is a regular expression matched against the EVE signature.
	Signature   string `yaml:"signature"`
	SignatureID int64  `yaml:"signature_id"`
	Category    string `yaml:"category"`
	Ports       []int  `yaml:"ports"`
	// MaxSeverity matches EVE severities 1..N (1 is the most severe); 0 matches any.
	MaxSeverity int     `yaml:"max_severity"`
	Stage       string  `yaml:"stage"`
	Attack      string  `yaml:"attack"`
	Weight      float64 `yaml:"weight"`
}

// Countermeasure is one action of a defense strategy.
type Countermeasure struct {
	Kind    string        `yaml:"kind"` // block, rotate, vigilance, exec
	TTL     time.Duration `yaml:"ttl"`
	Level   int           `yaml:"level"`   // vigilance level (default 1)
	Command []string      `yaml:"command"` // exec: argv; {source} and {asset} are replaced
}

// Countermeasure kinds.
const (
	CMBlock     = "block"
	CMRotate    = "rotate"
	CMVigilance = "vigilance"
	CMExec      = "exec"
)

// Sensor names a rule can match.
var ruleSensors = map[string]bool{"eve": true, "fim": true, "aide": true, "gateway": true, "enclave": true, "executor": true, "decoy": true}

var assetNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Enabled reports whether the engine runs.
func (x *Engine) Enabled() bool { return x.Model != "" }

func (x *Engine) applyDefaults() {
	setD := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setD(&x.HalfLife, 10*time.Minute)
	setD(&x.StageTTL, 30*time.Minute)
	setD(&x.RateUnit, time.Minute)
	setD(&x.BlockTTL, 10*time.Minute)
	setD(&x.VigilanceTTL, 10*time.Minute)
	if x.Redirect != nil {
		setD(&x.Redirect.TTL, 10*time.Minute)
	}
	setD(&x.Retention, 720*time.Hour)
	setF(&x.MinTransition, 0.3)
	setF(&x.IntensityRate, 60)
	if x.Queue == 0 {
		x.Queue = 4096
	}
	if x.NFTables == "" {
		x.NFTables = "auto"
	}
	if x.MaxQuarantined == 0 {
		x.MaxQuarantined = 4
	}
	if x.MaxBlocks == 0 {
		x.MaxBlocks = 4096
	}
	setF(&x.Vigilance.RotationFactor, 0.5)
	setD(&x.Vigilance.MinInterval, 10*time.Second)
	if x.Vigilance.MinRebuildThreshold == 0 {
		x.Vigilance.MinRebuildThreshold = 1
	}
}

func (v *Vigilance) validate(field string, p *strictyaml.Problems) {
	if v.MaxK < 0 || v.MaxK > 64 {
		p.Addf(field+".max_k", "must be in [1, 64] (0: gateway.k + 2), got %d", v.MaxK)
	}
	if !(v.RotationFactor > 0 && v.RotationFactor <= 1) {
		p.Addf(field+".rotation_factor", "must be in (0, 1], got %v", v.RotationFactor)
	}
	if v.MinInterval <= 0 || v.MinInterval > 24*time.Hour {
		p.Addf(field+".min_interval", "must be in (0, 24h], got %s", v.MinInterval)
	}
	if v.MinRebuildThreshold < 1 || v.MinRebuildThreshold > 1000 {
		p.Addf(field+".min_rebuild_threshold", "must be in [1, 1000], got %d", v.MinRebuildThreshold)
	}
}

// Redirect is engine.redirect: how long a deferred source is served by the decoy executor
// (default 10m; a later defer extends it).
type Redirect struct {
	TTL time.Duration `yaml:"ttl"`
	// Ports, when set, also redirect a deferred source at the network layer, for the same
	// TTL (nftables, so root): its new TCP connections to Port go to To, the port of a
	// sensors.decoy listener on every address (0.0.0.0 for IPv4 sources, [::] for both).
	// Connections made on this host itself are not redirected.
	Ports []RedirectPort `yaml:"ports"`
}

// RedirectPort is one port of engine.redirect.ports.
type RedirectPort struct {
	Port int `yaml:"port"`
	To   int `yaml:"to"`
}

// validate checks the redirect against the decoys it sends sources to and the nftables
// setting it needs.
func (r *Redirect) validate(field string, p *strictyaml.Problems, nftables string, decoy *Decoy) {
	if len(r.Ports) == 0 {
		return
	}
	if nftables == "off" {
		p.Addf(field+".ports", "redirect with nftables, which engine.nftables off turns off")
	}
	wildcard := map[int]bool{} // decoy ports listening on every address
	decoyPort := map[int]bool{}
	if decoy != nil {
		for _, l := range decoy.Listen {
			if ap, err := netip.ParseAddrPort(l.Addr); err == nil {
				decoyPort[int(ap.Port())] = true
				if ap.Addr().IsUnspecified() {
					wildcard[int(ap.Port())] = true
				}
			}
		}
	}
	seen := map[int]int{}
	for i, rp := range r.Ports {
		f := indexed(field+".ports", i)
		switch {
		case rp.Port < 1 || rp.Port > 65535:
			p.Addf(f+".port", "must be a TCP port in [1, 65535], got %d", rp.Port)
		case decoyPort[rp.Port]:
			p.Addf(f+".port", "%d is a decoy's own port (sensors.decoy.listen)", rp.Port)
		case seen[rp.Port] > 0:
			p.Addf(f+".port", "%d is already %s", rp.Port, indexed(field+".ports", seen[rp.Port]-1))
		default:
			seen[rp.Port] = i + 1
		}
		switch {
		case rp.To < 1 || rp.To > 65535:
			p.Addf(f+".to", "must be a TCP port in [1, 65535], got %d", rp.To)
		case !wildcard[rp.To]:
			p.Addf(f+".to", "%d must be the port of a sensors.decoy listener on 0.0.0.0 or [::] (a redirected connection arrives on the address it was sent to)", rp.To)
		}
	}
}

// MaxCountermeasureTTL bounds every countermeasure lifetime the engine sets.
const MaxCountermeasureTTL = 7 * 24 * time.Hour

func (x *Engine) validate(field string, p *strictyaml.Problems, sensors *Sensors) {
	x.Vigilance.validate(field+".vigilance", p)
	if !x.Enabled() {
		if sensors.EVE != nil || sensors.FIM != nil || sensors.Decoy != nil {
			p.Addf("sensors", "need engine.model: (an MTTEGDM model file): the engine decides on their evidence")
		}
		if len(x.Rules) > 0 || len(x.Assets) > 0 || len(x.Strategies) > 0 {
			p.Addf(field, "model: is required when engine rules, assets or strategies are given")
		}
		return
	}
	pos := func(f string, d time.Duration, max time.Duration) {
		if d <= 0 || d > max {
			p.Addf(f, "must be in (0, %s], got %s", max, d)
		}
	}
	pos(field+".half_life", x.HalfLife, 24*time.Hour)
	pos(field+".stage_ttl", x.StageTTL, MaxCountermeasureTTL)
	pos(field+".rate_unit", x.RateUnit, 24*time.Hour)
	pos(field+".block_ttl", x.BlockTTL, MaxCountermeasureTTL)
	pos(field+".vigilance_ttl", x.VigilanceTTL, MaxCountermeasureTTL)
	if x.Redirect != nil {
		pos(field+".redirect.ttl", x.Redirect.TTL, MaxCountermeasureTTL)
	}
	pos(field+".retention", x.Retention, 10*365*24*time.Hour)
	if x.MinTransition < 0 || x.MinTransition > 1 || x.MinTransition != x.MinTransition {
		p.Addf(field+".min_transition", "must be in [0, 1], got %v", x.MinTransition)
	}
	if !(x.IntensityRate > 0 && x.IntensityRate < 1e9) {
		p.Addf(field+".intensity_rate", "must be a positive number of events per minute, got %v", x.IntensityRate)
	}
	if x.Queue < 16 || x.Queue > 1<<20 {
		p.Addf(field+".queue", "must be in [16, %d], got %d", 1<<20, x.Queue)
	}
	if x.MaxBlocks < 1 || x.MaxBlocks > 1<<20 {
		p.Addf(field+".max_blocks", "must be in [1, %d], got %d", 1<<20, x.MaxBlocks)
	}
	if x.MaxQuarantined < 0 || x.MaxQuarantined > 64 {
		p.Addf(field+".max_quarantined", "must be in [0, 64], got %d", x.MaxQuarantined)
	}
	switch x.NFTables {
	case "auto", "on", "off":
	default:
		p.Addf(field+".nftables", "must be auto, on or off, got %q", x.NFTables)
	}
	for i, a := range x.BlockableLoopback {
		f := indexed(field+".blockable_loopback", i)
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil:
			p.Addf(f, "must be an IPv4 address in 127.0.0.0/8, got %q", a)
		case !ip.Is4() || !ip.IsLoopback():
			p.Addf(f, "must be an IPv4 address in 127.0.0.0/8, got %s (other addresses need no exception)", ip)
		case ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}):
			p.Addf(f, "must not be 127.0.0.1: the gateway reaches its executors from it")
		}
	}
	if len(x.Assets) == 0 {
		p.Addf(field, "assets: at least one asset is required")
	}
	names, defaults := map[string]int{}, 0
	for i, a := range x.Assets {
		f := indexed(field+".assets", i)
		if !assetNameRe.MatchString(a.Name) {
			p.Addf(f+".name", "must be 1-63 letters, digits, '.', '_' or '-', got %q", a.Name)
		} else if j, dup := names[a.Name]; dup {
			p.Addf(f+".name", "duplicate of assets[%d]", j)
		}
		names[a.Name] = i
		if a.Device == "" {
			p.Addf(f+".device", "is required: a model devices[].id")
		}
		checkPorts(f+".ports", a.Ports, p)
		if a.Default {
			defaults++
		}
	}
	if len(x.Assets) > 1 && defaults != 1 {
		p.Addf(field+".assets", "exactly one asset needs default: true, got %d", defaults)
	}
	if len(x.Rules) == 0 {
		p.Addf(field, "rules: at least one rule is required (nothing would map evidence to the model)")
	}
	for i, r := range x.Rules {
		f := indexed(field+".rules", i)
		if !ruleSensors[r.Sensor] {
			p.Addf(f+".sensor", "must be eve, fim, aide, gateway, enclave, executor or decoy, got %q", r.Sensor)
		}
		if r.Signature != "" {
			if _, err := regexp.Compile(r.Signature); err != nil {
				p.Addf(f+".signature", "bad regular expression: %v", err)
			}
		}
		checkPorts(f+".ports", r.Ports, p)
		if r.MaxSeverity < 0 || r.MaxSeverity > 255 {
			p.Addf(f+".max_severity", "must be in [0, 255], got %d", r.MaxSeverity)
		}
		if r.Stage == "" {
			p.Addf(f+".stage", "is required: a model stages[].id")
		}
		if r.Attack == "" {
			p.Addf(f+".attack", "is required: one of the stage's attacks")
		}
		if !(r.Weight > 0 && r.Weight < 1) {
			p.Addf(f+".weight", "must be in (0, 1), got %v", r.Weight)
		}
	}
	for id, cms := range x.Strategies {
		f := field + ".strategies." + id
		if len(cms) == 0 {
			p.Addf(f, "needs at least one countermeasure")
		}
		for i, c := range cms {
			cf := indexed(f, i)
			switch c.Kind {
			case CMBlock, CMRotate, CMVigilance:
				if len(c.Command) > 0 {
					p.Addf(cf+".command", "only applies to kind exec")
				}
			case CMExec:
				if len(c.Command) == 0 || c.Command[0] == "" {
					p.Addf(cf+".command", "is required for kind exec: the program and its arguments")
				}
			default:
				p.Addf(cf+".kind", "must be block, rotate, vigilance or exec, got %q", c.Kind)
			}
			if c.TTL < 0 || c.TTL > MaxCountermeasureTTL {
				p.Addf(cf+".ttl", "must be in [0, %s] (0: the engine's default), got %s", MaxCountermeasureTTL, c.TTL)
			}
			if c.Level < 0 || c.Level > 10 {
				p.Addf(cf+".level", "must be in [0, 10], got %d", c.Level)
			}
		}
	}
}

func checkPorts(field string, ports []int, p *strictyaml.Problems) {
	for i, port := range ports {
		if port < 1 || port > 65535 {
			p.Addf(indexed(field, i), "must be a port number, got %d", port)
		}
	}
}

// LocateProblems turns problems found after parsing (the engine's model references) into an
// error naming file, line and column in data, the config file's bytes.
func LocateProblems(file string, data []byte, probs strictyaml.Problems) error {
	if len(probs) == 0 {
		return nil
	}
	doc, err := strictyaml.Decode(file, data, &Config{})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return doc.Locate(probs)
}
