package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

// DNS is the `dns` section: the voting DNS front (mimic/dnsgw) in front of heterogeneous
// resolvers or authoritative servers, run by `proteus dns-gateway` (see docs/operations.md,
// "Voting DNS front"). Validation never touches the network.
type DNS struct {
	// Listen is the client-facing host:port, UDP and TCP; default 127.0.0.1:5353.
	Listen string `yaml:"listen"`
	// Backends are the servers' IP:port addresses (at least one for `proteus dns-gateway`).
	Backends []string `yaml:"backends"`
	// K is how many servers answer each query (default 3); Quorum how many equivalent answers
	// decide (default 0: a majority of K). A minority quorum or a K above the number of
	// backends is refused unless AllowWeakVote.
	K             int    `yaml:"k"`
	Quorum        int    `yaml:"quorum"`
	AllowWeakVote bool   `yaml:"allow_weak_vote"`
	Scheduler     string `yaml:"scheduler"` // random (default), round-robin, trust-weighted, max-diversity
	// WaitAll answers only when all K servers answered or timed out.
	WaitAll bool `yaml:"wait_all"`
	// Timeout bounds each server's answer, UDP and its TCP retry together (default 2s).
	Timeout time.Duration `yaml:"timeout"`
	// TTLTolerance: TTLs of the deciding answers that exceed their lowest by more than this
	// make their server a dissenter; the client always gets the lowest (default 1h). A cache
	// counts TTLs down, so set it to at least the longest TTL the zone serves.
	TTLTolerance time.Duration `yaml:"ttl_tolerance"`
	// UDPSize is the largest UDP answer (the client's EDNS buffer size is respected below it,
	// 512 without EDNS; longer answers are truncated so the client asks over TCP) and the
	// size advertised to the servers; default 1232, 512..65535.
	UDPSize int `yaml:"udp_size"`
	// MaxQueryBytes: longer client messages are dropped unread (default 512, 12..65535).
	MaxQueryBytes int `yaml:"max_query_bytes"`
	// Rate and Burst bound each client's queries per second (per address, IPv6 per /64);
	// above them UDP queries are dropped, TCP ones REFUSED. Defaults 200 and 2×Rate; Rate -1:
	// no bound.
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// MaxInFlight bounds the queries voted at once (default 1024), and as many answered
	// queries may still wait for slow servers; beyond, those servers' asks are cancelled.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxTCPConns and MaxTCPPerClient bound open TCP connections (defaults 256 and 16).
	MaxTCPConns     int `yaml:"max_tcp_conns"`
	MaxTCPPerClient int `yaml:"max_tcp_per_client"`
	// Timeouts of client TCP connections: the first query (default 2s), the next one (8s),
	// each answer written (2s).
	TCPReadTimeout time.Duration `yaml:"tcp_read_timeout"`
	TCPIdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
	WriteTimeout   time.Duration `yaml:"write_timeout"`
	// TrustWindow, Rebuild and Eject work as in the gateway section.
	TrustWindow int            `yaml:"trust_window"`
	Rebuild     GatewayRebuild `yaml:"rebuild"`
	Eject       GatewayEject   `yaml:"eject"`
}

// EjectAfter is the effective number of consecutive failures that eject a server (0: never).
func (x *DNS) EjectAfter() int {
	if x.Eject.After == nil {
		return 3
	}
	return *x.Eject.After
}

// RebuildThreshold is the effective rebuild threshold (default 5).
func (x *DNS) RebuildThreshold() int {
	if x.Rebuild.Threshold == nil {
		return 5
	}
	return *x.Rebuild.Threshold
}

func (x *DNS) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	if x.Listen == "" {
		x.Listen = "127.0.0.1:5353"
	}
	defInt(&x.K, 3)
	if x.Scheduler == "" {
		x.Scheduler = "random"
	}
	def(&x.Timeout, 2*time.Second)
	def(&x.TTLTolerance, time.Hour)
	defInt(&x.UDPSize, 1232)
	defInt(&x.MaxQueryBytes, 512)
	if x.Rate == 0 {
		x.Rate = 200
	}
	if x.Burst == 0 && x.Rate > 0 {
		x.Burst = max(int(2*x.Rate), 1)
	}
	defInt(&x.MaxInFlight, 1024)
	defInt(&x.MaxTCPConns, 256)
	defInt(&x.MaxTCPPerClient, 16)
	def(&x.TCPReadTimeout, 2*time.Second)
	def(&x.TCPIdleTimeout, 8*time.Second)
	def(&x.WriteTimeout, 2*time.Second)
	defInt(&x.TrustWindow, 100)
	def(&x.Rebuild.Window, time.Minute)
	def(&x.Eject.For, time.Second)
	def(&x.Eject.Max, 30*time.Second)
}

func (x *DNS) validate(field string, p *strictyaml.Problems) {
	checkListen(field+".listen", x.Listen, p)
	seen := map[netip.AddrPort]bool{}
	for i, b := range x.Backends {
		f := field + ".backends[" + strconv.Itoa(i) + "]"
		ap, err := netip.ParseAddrPort(b)
		switch {
		case err != nil || ap.Port() == 0:
			p.Addf(f, "must be IP:port (an IP literal and a port above 0), got %q", b)
		case seen[ap]:
			p.Addf(f, "%s is given twice", b)
		}
		seen[ap] = true
	}
	if x.K < 1 || x.K > 64 {
		p.Addf(field+".k", "must be 1..64, got %d", x.K)
	}
	if x.Quorum < 0 || x.Quorum > x.K {
		p.Addf(field+".quorum", "must be 0 (a majority of k) or 1..k=%d, got %d", x.K, x.Quorum)
	} else if x.Quorum != 0 && x.Quorum <= x.K/2 && !x.AllowWeakVote {
		p.Addf(field+".quorum", "%d of k=%d is not a majority: a minority of servers would decide (set allow_weak_vote: true to run it anyway)", x.Quorum, x.K)
	}
	if n := len(x.Backends); n > 0 && x.K > n && !x.AllowWeakVote {
		p.Addf(field+".k", "k=%d is more than the %d backends: every vote would have fewer voters than asked (set allow_weak_vote: true to run it anyway)", x.K, n)
	}
	switch x.Scheduler {
	case "random", "round-robin", "trust-weighted", "max-diversity":
	default:
		p.Addf(field+".scheduler", "must be random, round-robin, trust-weighted or max-diversity, got %q", x.Scheduler)
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			p.Addf(field+"."+name, "must be positive, got %s", d)
		}
	}
	pos("timeout", x.Timeout)
	pos("ttl_tolerance", x.TTLTolerance)
	pos("tcp_read_timeout", x.TCPReadTimeout)
	pos("tcp_idle_timeout", x.TCPIdleTimeout)
	pos("write_timeout", x.WriteTimeout)
	pos("rebuild.window", x.Rebuild.Window)
	pos("eject.for", x.Eject.For)
	pos("eject.max", x.Eject.Max)
	if x.Eject.Max < x.Eject.For {
		p.Addf(field+".eject.max", "must be at least eject.for (%s), got %s", x.Eject.For, x.Eject.Max)
	}
	if x.UDPSize < 512 || x.UDPSize > 65535 {
		p.Addf(field+".udp_size", "must be 512..65535, got %d", x.UDPSize)
	}
	if x.MaxQueryBytes < 12 || x.MaxQueryBytes > 65535 {
		p.Addf(field+".max_query_bytes", "must be 12..65535 (a DNS header is 12 bytes), got %d", x.MaxQueryBytes)
	}
	if x.Rate < 0 && x.Rate != -1 {
		p.Addf(field+".rate", "must be positive, or -1 for no bound, got %v", x.Rate)
	}
	if x.Rate > 0 && x.Burst < 1 {
		p.Addf(field+".burst", "must be at least 1, got %d", x.Burst)
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"max_in_flight", x.MaxInFlight}, {"max_tcp_conns", x.MaxTCPConns}, {"max_tcp_per_client", x.MaxTCPPerClient}, {"trust_window", x.TrustWindow}} {
		if c.v < 1 {
			p.Addf(field+"."+c.name, "must be at least 1, got %d", c.v)
		}
	}
	if x.Eject.After != nil && *x.Eject.After < 0 {
		p.Addf(field+".eject.after", "must be 0 (never) or more, got %d", *x.Eject.After)
	}
	if x.Rebuild.Threshold != nil && *x.Rebuild.Threshold < 0 {
		p.Addf(field+".rebuild.threshold", "must be 0 (never) or more, got %d", *x.Rebuild.Threshold)
	}
}

// LoadStandaloneDNS reads a config file for `proteus dns-gateway`: the whole document is
// decoded strictly, but only version, log and dns are validated.
func LoadStandaloneDNS(path string) (*Config, error) {
	return load(path, func(file string, data []byte) (*Config, error) { return parse(file, data, standaloneDNS) })
}

// ValidateStandaloneDNS checks what LoadStandaloneDNS checks, without I/O.
func (c *Config) ValidateStandaloneDNS() error {
	var kept strictyaml.Problems
	for _, p := range c.Problems() {
		if standaloneDNS(p) {
			kept = append(kept, p)
		}
	}
	return kept.Err("config")
}

func standaloneDNS(p strictyaml.Problem) bool {
	return p.Field == "version" || strings.HasPrefix(p.Field, "log.") || p.Field == "dns" || strings.HasPrefix(p.Field, "dns.")
}
