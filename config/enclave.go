package config

import (
	"encoding/base64"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

// Enclave is the `enclave` section: membership in one peer-to-peer defense enclave (see
// docs/architecture.md, "enclave"). Nothing here is checked against the network or the
// file system; `proteus enclave run` does that at start-up.
type Enclave struct {
	Enabled bool   `yaml:"enabled"`
	Name    string `yaml:"name"` // enclave name; also the GossipSub topic suffix

	// Listen are libp2p multiaddrs, e.g. /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1.
	Listen []string `yaml:"listen"`
	// Bootstrap are full multiaddrs of other members, ending in /p2p/PEER-ID.
	Bootstrap []string `yaml:"bootstrap"`
	// MDNS turns on multicast DNS discovery of members on the local link.
	MDNS bool `yaml:"mdns"`
	// Control is the loopback host:port of the local control API used by `proteus enclave
	// peers|publish|trust`; port 0 picks a free port (written to the data directory).
	Control string `yaml:"control"`

	// Key is the enclave's public key, "ed25519:BASE64" (printed by `proteus enclave keygen`).
	Key string `yaml:"key"`
	// Certificate is this member's membership certificate file (from `proteus enclave
	// admit`); a relative path is taken relative to the data directory.
	Certificate string `yaml:"certificate"`
	// Allowlist are peer IDs admitted without a certificate.
	Allowlist []string `yaml:"allowlist"`
	// CertTimeout is how long a connected peer has to present its certificate.
	CertTimeout time.Duration `yaml:"cert_timeout"`

	Exposure EnclaveExposure `yaml:"exposure"`
	// Sensing says this agent's own sensors watch its exposure, so a relevant peer report on
	// an address they did not flag within trust.window counts against its reporter. Leave it
	// false where nothing feeds the node local evidence: silence then proves nothing.
	Sensing bool `yaml:"sensing"`
	// Protect are addresses or CIDRs never blocked on a peer's report, on top of the ones
	// always protected (this host's addresses, members' addresses, loopback, link-local,
	// unspecified, multicast and their NAT64 and IPv4-mapped forms).
	Protect []string `yaml:"protect"`
	// SealKeys are seal key files (`proteus enclave seal-key`; relative to the data dir),
	// one per epoch. With any, every payload this node sends is sealed with the newest epoch's
	// key, payloads sealed with any listed epoch are read, and unsealed payloads are ignored:
	// a peer in the mesh without the key reads nothing.
	SealKeys []string `yaml:"seal_keys"`

	Decision  EnclaveDecision `yaml:"decision"`
	Trust     EnclaveTrust    `yaml:"trust"`
	PeerScore EnclaveScore    `yaml:"peer_score"`
	Limits    EnclaveLimits   `yaml:"limits"`

	// MaxTTL caps how long a countermeasure taken on a peer's report lasts.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// MaxClockSkew is how far a report's timestamps may be from this agent's clock.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
	// MaxMessageBytes bounds one pubsub message (envelope plus STIX bundle).
	MaxMessageBytes int `yaml:"max_message_bytes"`
}

// EnclaveExposure is this agent's own threat exposure: reports are acted on only when
// they concern something listed here.
type EnclaveExposure struct {
	OS       string            `yaml:"os"`
	Software []EnclaveSoftware `yaml:"software"`
	Services []EnclaveService  `yaml:"services"`
}

// EnclaveSoftware is one installed product.
type EnclaveSoftware struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
}

// EnclaveService is one exposed port.
type EnclaveService struct {
	Port     int    `yaml:"port"`
	Protocol string `yaml:"protocol"` // tcp (default) or udp
	Name     string `yaml:"name"`
}

// EnclaveDecision holds the three-way decision thresholds on combined evidence:
// act when evidence >= Act (α), ignore when <= Defer (β), defer (raise vigilance) between;
// and what a block on peer reports alone needs (see docs/model.md, "Enclave trust").
type EnclaveDecision struct {
	Act   float64 `yaml:"act"`
	Defer float64 `yaml:"defer"`
	// MaxColluding is the largest share of the enclave assumed to lie together: a block on
	// peer reports alone needs floor(MaxColluding·N)+1 independent established reporters.
	MaxColluding float64 `yaml:"max_colluding"`
	// Members is the enclave size N assumed at least (0: the members this node has seen).
	Members int `yaml:"members"`
	// IndependentPrefix4/6 group reporters by the network of their connection: reporters in
	// one group count as one.
	IndependentPrefix4 int `yaml:"independent_prefix4"`
	IndependentPrefix6 int `yaml:"independent_prefix6"`
	// PeerPorts lets peer reports block a port (port/N); by default only local evidence can.
	PeerPorts bool `yaml:"peer_ports"`
}

// EnclaveTrust parameterises the per-peer reputation: a beta reputation over confirmed and
// contradicted reports (see docs/model.md, "Enclave trust").
type EnclaveTrust struct {
	Neutral       float64       `yaml:"neutral"`        // base rate: the score of an unknown peer
	InvalidWeight float64       `yaml:"invalid_weight"` // negative observations one invalid message counts as
	SilenceWeight float64       `yaml:"silence_weight"` // negative observation of a report local evidence contradicted
	Established   float64       `yaml:"established"`    // score from which a peer's report may count toward a block
	HalfLife      time.Duration `yaml:"half_life"`      // observations lose half their weight every HalfLife
	Window        time.Duration `yaml:"window"`         // how long local evidence has to confirm a report
	// Pretrusted are peer IDs that start with PretrustedWeight confirmations (the prior does
	// not decay; contradictions still count against them).
	Pretrusted       []string `yaml:"pretrusted"`
	PretrustedWeight float64  `yaml:"pretrusted_weight"`
}

// DefaultReportConfidence is the confidence (percent) of a sighting published without one.
const DefaultReportConfidence = 90

// EnclaveLimits are per-peer budgets.
type EnclaveLimits struct {
	Rate float64 `yaml:"rate"` // messages per second one member may author
	// Burst is how many messages a member may author at once (above Rate). Every member
	// accepts and relays a flooder's first Burst messages before it is cut off, so the
	// default is the smallest (2); a node paces its own messages at Rate and half of Burst,
	// keeping the other half as slack for delivery jitter, so at least 2.
	Burst   int `yaml:"burst"`
	Reports int `yaml:"reports"` // live reports (and replay-guard keys) kept per member
}

// EnclaveScore maps trust into GossipSub's application-specific peer score:
// app = (trust - neutral) * Weight, compared with the three thresholds (all negative,
// graylist <= publish <= gossip).
type EnclaveScore struct {
	// ColocationThreshold is how many peers may share an IP before GossipSub's P6 penalty;
	// ColocationWhitelist are CIDRs exempt from it (e.g. 127.0.0.0/8 for a one-host lab).
	ColocationThreshold int      `yaml:"colocation_threshold"`
	ColocationWhitelist []string `yaml:"colocation_whitelist"`

	Weight    float64 `yaml:"weight"`
	Gossip    float64 `yaml:"gossip_threshold"`
	Publish   float64 `yaml:"publish_threshold"`
	Graylist  float64 `yaml:"graylist_threshold"`
	AcceptPX  float64 `yaml:"accept_px_threshold"`
	Opportune float64 `yaml:"opportunistic_graft_threshold"`
}

// Enclave defaults.
const (
	DefaultEnclaveControl         = "127.0.0.1:0"
	DefaultEnclaveCertTimeout     = 5 * time.Second
	DefaultEnclaveMaxTTL          = 24 * time.Hour
	DefaultEnclaveMaxClockSkew    = 5 * time.Minute
	DefaultEnclaveMaxMessageBytes = 64 << 10
)

func (x *Enclave) applyDefaults() {
	if x.Listen == nil {
		x.Listen = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
	}
	if x.Control == "" {
		x.Control = DefaultEnclaveControl
	}
	if x.CertTimeout == 0 {
		x.CertTimeout = DefaultEnclaveCertTimeout
	}
	d := &x.Decision
	if d.Act == 0 && d.Defer == 0 {
		d.Act, d.Defer = 0.7, 0.3
	}
	setF(&d.MaxColluding, 1.0/3)
	if d.IndependentPrefix4 == 0 {
		d.IndependentPrefix4 = 24
	}
	if d.IndependentPrefix6 == 0 {
		d.IndependentPrefix6 = 48
	}
	t := &x.Trust
	setF(&t.Neutral, 0.5)
	setF(&t.InvalidWeight, 3)
	setF(&t.SilenceWeight, 0.5)
	setF(&t.Established, 0.8)
	setF(&t.PretrustedWeight, 4)
	l := &x.Limits
	setF(&l.Rate, 2)
	if l.Burst == 0 {
		l.Burst = 2
	}
	if l.Reports == 0 {
		l.Reports = 1024
	}
	if t.HalfLife == 0 {
		t.HalfLife = 24 * time.Hour
	}
	if t.Window == 0 {
		t.Window = 10 * time.Minute
	}
	s := &x.PeerScore
	if s.ColocationThreshold == 0 {
		s.ColocationThreshold = 2
	}
	setF(&s.Weight, 100)
	setF(&s.Gossip, -10)
	setF(&s.Publish, -20)
	setF(&s.Graylist, -30)
	setF(&s.AcceptPX, 10)
	setF(&s.Opportune, 5)
	for i := range x.Exposure.Services {
		if x.Exposure.Services[i].Protocol == "" {
			x.Exposure.Services[i].Protocol = "tcp"
		}
	}
	if x.MaxTTL == 0 {
		x.MaxTTL = DefaultEnclaveMaxTTL
	}
	if x.MaxClockSkew == 0 {
		x.MaxClockSkew = DefaultEnclaveMaxClockSkew
	}
	if x.MaxMessageBytes == 0 {
		x.MaxMessageBytes = DefaultEnclaveMaxMessageBytes
	}
}

func setF(v *float64, def float64) {
	if *v == 0 {
		*v = def
	}
}

var (
	enclaveNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// peerIDRe accepts the base58 (Qm..., 12D3...) text form of a libp2p peer ID.
	peerIDRe = regexp.MustCompile(`^[1-9A-HJ-NP-Za-km-z]{40,100}$`)
)

// ValidPeerID reports whether s looks like a libp2p peer ID in base58 text form; the
// enclave package parses it for real.
func ValidPeerID(s string) bool { return peerIDRe.MatchString(s) }

// ParseEnclaveKey decodes "ed25519:BASE64" into the 32-byte public key.
func ParseEnclaveKey(s string) ([]byte, bool) {
	b64, ok := strings.CutPrefix(s, "ed25519:")
	if !ok {
		return nil, false
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return nil, false
	}
	return raw, true
}

func (x *Enclave) validate(field string, p *strictyaml.Problems) {
	if x.Enabled || x.Name != "" {
		if !enclaveNameRe.MatchString(x.Name) {
			p.Addf(field+".name", "must be 1-63 characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit, got %q", x.Name)
		}
	}
	for i, a := range x.Listen {
		checkMultiaddr(indexed(field+".listen", i), a, false, p)
	}
	if x.Enabled && len(x.Listen) == 0 {
		p.Addf(field+".listen", "needs at least one address")
	}
	for i, a := range x.Bootstrap {
		checkMultiaddr(indexed(field+".bootstrap", i), a, true, p)
	}
	checkListen(field+".control", x.Control, p)
	if host, _, err := net.SplitHostPort(x.Control); err == nil && host != "127.0.0.1" && host != "localhost" && host != "::1" {
		p.Addf(field+".control", "must be a loopback address (127.0.0.1, [::1] or localhost), got %q", x.Control)
	}
	if x.Key != "" {
		if _, ok := ParseEnclaveKey(x.Key); !ok {
			p.Addf(field+".key", "must be ed25519:BASE64 of a 32-byte public key (from `proteus enclave keygen`)")
		}
	}
	if x.Certificate != "" && x.Key == "" {
		p.Addf(field+".certificate", "needs enclave.key to verify certificates")
	}
	if x.Enabled && x.Key == "" && len(x.Allowlist) == 0 {
		p.Addf(field+".key", "an enabled enclave needs a key (certificate-based membership) or an allowlist")
	}
	if x.Enabled && x.Key != "" && x.Certificate == "" && len(x.Allowlist) == 0 {
		p.Addf(field+".certificate", "a member needs its certificate (from `proteus enclave admit`)")
	}
	seen := map[string]bool{}
	for i, id := range x.Allowlist {
		f := indexed(field+".allowlist", i)
		switch {
		case !ValidPeerID(id):
			p.Addf(f, "not a libp2p peer ID: %q", id)
		case seen[id]:
			p.Addf(f, "duplicate peer ID %s", id)
		}
		seen[id] = true
	}
	if x.CertTimeout <= 0 {
		p.Addf(field+".cert_timeout", "must be > 0, got %v", x.CertTimeout)
	}
	x.Exposure.validate(field+".exposure", p)

	d := x.Decision
	p.Probability(field+".decision.act", d.Act)
	p.Probability(field+".decision.defer", d.Defer)
	if d.Defer >= d.Act {
		p.Addf(field+".decision.defer", "must be below decision.act (%v), got %v", d.Act, d.Defer)
	}

	if p.Finite(field+".decision.max_colluding", d.MaxColluding) && (d.MaxColluding <= 0 || d.MaxColluding >= 1) {
		p.Addf(field+".decision.max_colluding", "must be in (0,1), got %v", d.MaxColluding)
	}
	if d.Members < 0 || d.Members > 100000 {
		p.Addf(field+".decision.members", "must be in [0,100000], got %d", d.Members)
	}
	if d.IndependentPrefix4 < 8 || d.IndependentPrefix4 > 32 {
		p.Addf(field+".decision.independent_prefix4", "must be in [8,32], got %d", d.IndependentPrefix4)
	}
	if d.IndependentPrefix6 < 16 || d.IndependentPrefix6 > 128 {
		p.Addf(field+".decision.independent_prefix6", "must be in [16,128], got %d", d.IndependentPrefix6)
	}
	for i, k := range x.SealKeys {
		if strings.TrimSpace(k) == "" {
			p.Addf(indexed(field+".seal_keys", i), "must be a file name, got %q", k)
		}
	}
	for i, c := range x.Protect {
		if _, err := ParsePrefixOrAddr(c); err != nil {
			p.Addf(indexed(field+".protect", i), "%v", err)
		}
	}

	t := x.Trust
	f := field + ".trust"
	// One member's report must reach every relevant member's defer region (vigilance): a
	// report at the default confidence from a member of neutral trust weighs neutral·0.9.
	if lone := t.Neutral * DefaultReportConfidence / 100; d.Defer >= lone && t.Neutral > 0 && t.Neutral < 1 {
		p.Addf(field+".decision.defer", "must be below trust.neutral × %d %% (%.3g): otherwise every other member ignores an attack one member's sensors saw and reported, got %v",
			DefaultReportConfidence, lone, d.Defer)
	}
	if t.Neutral <= 0 || t.Neutral >= 1 {
		p.Addf(f+".neutral", "must be in (0,1), got %v", t.Neutral)
	}
	p.Probability(f+".established", t.Established)
	if t.Established <= t.Neutral {
		p.Addf(f+".established", "must be above trust.neutral (%v): an unknown peer must not count toward a block, got %v", t.Neutral, t.Established)
	}
	if p.Finite(f+".invalid_weight", t.InvalidWeight) && (t.InvalidWeight < 1 || t.InvalidWeight > 100) {
		p.Addf(f+".invalid_weight", "must be in [1,100]: an invalid message counts at least as one contradicted report, got %v", t.InvalidWeight)
	}
	if p.Finite(f+".silence_weight", t.SilenceWeight) && (t.SilenceWeight <= 0 || t.SilenceWeight > t.InvalidWeight) {
		p.Addf(f+".silence_weight", "must be in (0, invalid_weight], got %v", t.SilenceWeight)
	}
	if p.Finite(f+".pretrusted_weight", t.PretrustedWeight) && (t.PretrustedWeight <= 0 || t.PretrustedWeight > 1000) {
		p.Addf(f+".pretrusted_weight", "must be in (0,1000], got %v", t.PretrustedWeight)
	}
	for i, id := range t.Pretrusted {
		if !ValidPeerID(id) {
			p.Addf(indexed(f+".pretrusted", i), "not a libp2p peer ID: %q", id)
		}
	}
	if t.HalfLife <= 0 {
		p.Addf(f+".half_life", "must be > 0, got %v", t.HalfLife)
	}
	if t.Window <= 0 {
		p.Addf(f+".window", "must be > 0, got %v", t.Window)
	}

	l := x.Limits
	if p.Finite(field+".limits.rate", l.Rate) && (l.Rate <= 0 || l.Rate > 10000) {
		p.Addf(field+".limits.rate", "must be in (0,10000], got %v", l.Rate)
	}
	if l.Burst < 2 || l.Burst > 100000 {
		p.Addf(field+".limits.burst", "must be in [2,100000] (own messages are paced at half of it), got %d", l.Burst)
	}
	if l.Reports < 1 || l.Reports > 1000000 {
		p.Addf(field+".limits.reports", "must be in [1,1000000], got %d", l.Reports)
	}

	s := x.PeerScore
	f = field + ".peer_score"
	if s.ColocationThreshold < 1 {
		p.Addf(f+".colocation_threshold", "must be >= 1, got %d", s.ColocationThreshold)
	}
	for i, c := range s.ColocationWhitelist {
		if _, err := ParsePrefixOrAddr(c); err != nil {
			p.Addf(indexed(f+".colocation_whitelist", i), "%v", err)
		}
	}
	if p.Finite(f+".weight", s.Weight) && s.Weight <= 0 {
		p.Addf(f+".weight", "must be > 0, got %v", s.Weight)
	}
	if p.Finite(f+".gossip_threshold", s.Gossip) && s.Gossip >= 0 {
		p.Addf(f+".gossip_threshold", "must be < 0, got %v", s.Gossip)
	}
	if p.Finite(f+".publish_threshold", s.Publish) && s.Publish > s.Gossip {
		p.Addf(f+".publish_threshold", "must be <= gossip_threshold (%v), got %v", s.Gossip, s.Publish)
	}
	if p.Finite(f+".graylist_threshold", s.Graylist) && s.Graylist > s.Publish {
		p.Addf(f+".graylist_threshold", "must be <= publish_threshold (%v), got %v", s.Publish, s.Graylist)
	}
	if p.Finite(f+".accept_px_threshold", s.AcceptPX) && s.AcceptPX < 0 {
		p.Addf(f+".accept_px_threshold", "must be >= 0, got %v", s.AcceptPX)
	}
	if p.Finite(f+".opportunistic_graft_threshold", s.Opportune) && s.Opportune < 0 {
		p.Addf(f+".opportunistic_graft_threshold", "must be >= 0, got %v", s.Opportune)
	}
	// A peer at trust 0 must be graylisted, or the reputation never reaches the mesh.
	if floor := -t.Neutral * s.Weight; floor > s.Graylist {
		p.Addf(f+".graylist_threshold", "must be >= the score of a peer at trust 0 (%v) so a liar can be graylisted, got %v", floor, s.Graylist)
	}

	if x.MaxTTL <= 0 {
		p.Addf(field+".max_ttl", "must be > 0, got %v", x.MaxTTL)
	}
	if x.MaxClockSkew <= 0 {
		p.Addf(field+".max_clock_skew", "must be > 0, got %v", x.MaxClockSkew)
	}
	if x.MaxMessageBytes < 1024 || x.MaxMessageBytes > 1<<20 {
		p.Addf(field+".max_message_bytes", "must be in [1024,1048576], got %d", x.MaxMessageBytes)
	}
}

func (e *EnclaveExposure) validate(field string, p *strictyaml.Problems) {
	for i, s := range e.Software {
		if strings.TrimSpace(s.Name) == "" {
			p.Addf(indexed(field+".software", i)+".name", "is required")
		}
	}
	for i, s := range e.Services {
		f := indexed(field+".services", i)
		if s.Port < 1 || s.Port > 65535 {
			p.Addf(f+".port", "must be in [1,65535], got %d", s.Port)
		}
		if s.Protocol != "tcp" && s.Protocol != "udp" {
			p.Addf(f+".protocol", "must be tcp or udp, got %q", s.Protocol)
		}
	}
}

// checkMultiaddr does the syntactic checks possible without the multiaddr library:
// a leading slash, a known network protocol, and (for bootstrap peers) a /p2p/PEER-ID tail.
func checkMultiaddr(field, a string, needPeer bool, p *strictyaml.Problems) {
	parts := strings.Split(a, "/")
	if len(parts) < 3 || parts[0] != "" {
		p.Addf(field, "must be a multiaddr like /ip4/127.0.0.1/tcp/4001, got %q", a)
		return
	}
	switch parts[1] {
	case "ip4", "ip6", "dns", "dns4", "dns6":
	default:
		p.Addf(field, "must start with /ip4, /ip6 or /dns, got %q", a)
		return
	}
	if !needPeer {
		return
	}
	if len(parts) < 2 || parts[len(parts)-2] != "p2p" || !ValidPeerID(parts[len(parts)-1]) {
		p.Addf(field, "must end in /p2p/PEER-ID, got %q", a)
	}
}

func indexed(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }

// LoadStandaloneEnclave reads a config file for `proteus enclave run`, a node that runs
// only the enclave: the whole document is decoded strictly (unknown fields are still
// errors), but only version, data_dir, log and enclave are validated, so the file needs no
// pool or gateway section.
func LoadStandaloneEnclave(path string) (*Config, error) { return load(path, ParseStandaloneEnclave) }

// ParseStandaloneEnclave is LoadStandaloneEnclave on bytes already read.
func ParseStandaloneEnclave(file string, data []byte) (*Config, error) {
	return parse(file, data, func(p strictyaml.Problem) bool {
		return p.Field == "version" || strings.HasPrefix(p.Field, "log.") || p.Field == "enclave" || strings.HasPrefix(p.Field, "enclave.")
	})
}

// ApplyDefaults fills the unset fields of the section, as Parse does.
func (x *Enclave) ApplyDefaults() { x.applyDefaults() }

// Validate checks the section alone, without I/O; problems carry "enclave." paths.
func (x *Enclave) Validate() error {
	var p strictyaml.Problems
	x.validate("enclave", &p)
	return p.Err("config")
}
