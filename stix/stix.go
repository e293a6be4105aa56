package stix

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Sentinel errors. Every error from Decode and ParsePattern wraps ErrInvalid and, where it
// applies, one of the more specific ones (test with errors.Is); the message reads
// "stix: <where>: <what>".
var (
	ErrInvalid     = errors.New("invalid message")
	ErrTooLarge    = errors.New("message too large")
	ErrClockSkew   = errors.New("timestamp outside the allowed clock skew")
	ErrExpired     = errors.New("message expired")
	ErrTTLTooLong  = errors.New("ttl exceeds the maximum")
	ErrPattern     = errors.New("unsupported pattern")
	ErrUnsupported = errors.New("unsupported object")
	ErrTarget      = errors.New("target not allowed")
	// ErrReplay is returned by ReplayGuard.Admit for a message it has already admitted.
	ErrReplay = errors.New("stix: replayed message")
)

// Action is what the reporter recommends peers do about the target.
type Action string

// Recommended actions.
const (
	ActionBlock Action = "block" // drop traffic from the target for the TTL
	ActionWatch Action = "watch" // raise vigilance, do not block
)

// Target is what a sighting is about: an address or CIDR range (Prefix valid), or a
// destination port (Prefix invalid, Port > 0). Exactly one of the two is set.
type Target struct {
	Prefix netip.Prefix // a single address is a /32 or /128
	Port   uint16
}

// PrefixTarget returns a target for p (masked).
func PrefixTarget(p netip.Prefix) Target { return Target{Prefix: p.Masked()} }

// AddrTarget returns a target for the single address a.
func AddrTarget(a netip.Addr) Target {
	a = a.Unmap()
	return Target{Prefix: netip.PrefixFrom(a, a.BitLen())}
}

// PortTarget returns a target for the destination port p.
func PortTarget(p uint16) Target { return Target{Port: p} }

// IsPrefix reports whether t names addresses.
func (t Target) IsPrefix() bool { return t.Prefix.IsValid() }

// IsPort reports whether t names a destination port.
func (t Target) IsPort() bool { return !t.Prefix.IsValid() && t.Port != 0 }

// Valid reports whether exactly one of address and port is set.
func (t Target) Valid() bool { return t.IsPrefix() != (t.Port != 0) }

// String is the address, the CIDR, or "port/N".
func (t Target) String() string {
	switch {
	case t.IsPrefix() && t.Prefix.IsSingleIP():
		return t.Prefix.Addr().String()
	case t.IsPrefix():
		return t.Prefix.String()
	case t.IsPort():
		return "port/" + strconv.Itoa(int(t.Port))
	default:
		return "invalid"
	}
}

// Software is one installed product.
type Software struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Service is one exposed network service.
type Service struct {
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol,omitempty"` // "tcp" (default) or "udp"
	Name     string `json:"name,omitempty"`     // e.g. "ssh"
}

// Exposure is a host's threat exposure profile: what an attacker could aim at.
type Exposure struct {
	OS       string     `json:"os,omitempty"` // e.g. "linux", "windows"
	Software []Software `json:"software,omitempty"`
	Services []Service  `json:"services,omitempty"`
}

// IsZero reports whether e says nothing.
func (e Exposure) IsZero() bool { return e.OS == "" && len(e.Software) == 0 && len(e.Services) == 0 }

// Sighting is one report: the reporter saw Target being hostile.
type Sighting struct {
	ID           string    // the indicator's id, "indicator--<uuid>"; what a revocation names
	SightingID   string    // the sighting SRO's id, "sighting--<uuid>"
	ReporterID   string    // the reporter's identity, "identity--<uuid>"
	ReporterName string    // identity name (e.g. the agent's peer ID)
	Target       Target    // what was seen
	Exposure     Exposure  // the reporter's exposure when it saw it
	Action       Action    // recommended action; empty means ActionBlock
	Confidence   int       // 0..100
	Count        int       // how many times it was seen (>= 1)
	Description  string    // free text, optional
	Created      time.Time // indicator created
	Modified     time.Time // indicator modified; zero means Created
	ValidFrom    time.Time // start of the TTL window; zero means Created
	ValidUntil   time.Time // end of the TTL window
	FirstSeen    time.Time // zero means ValidFrom
	LastSeen     time.Time // zero means FirstSeen
}

// TTL is how long the sighting asks peers to act.
func (s Sighting) TTL() time.Duration { return s.ValidUntil.Sub(s.validFrom()) }

func (s Sighting) validFrom() time.Time {
	if s.ValidFrom.IsZero() {
		return s.Created
	}
	return s.ValidFrom
}

func (s Sighting) modified() time.Time {
	if s.Modified.IsZero() {
		return s.Created
	}
	return s.Modified
}

// Revoke returns the revocation of s issued at `at` (which must be after s was modified).
func (s Sighting) Revoke(at time.Time, reason string) Revocation {
	return Revocation{ID: s.ID, ReporterID: s.ReporterID, ReporterName: s.ReporterName,
		Target: s.Target, Created: s.Created, Modified: at, ValidFrom: s.validFrom(),
		ValidUntil: s.ValidUntil, Reason: reason}
}

// Revocation retracts a sighting: the reporter re-issues the indicator with the same id,
// a later modified timestamp and revoked: true.
type Revocation struct {
	ID           string // the revoked indicator's id
	ReporterID   string
	ReporterName string
	Target       Target
	Created      time.Time // the indicator's original created
	Modified     time.Time // when it was revoked
	ValidFrom    time.Time
	ValidUntil   time.Time
	Reason       string // optional; carried in the indicator description
}

// Message is what Decode returns: a *Sighting or a *Revocation.
type Message interface {
	// ObjectID is the indicator id the message is about.
	ObjectID() string
	// Version is the indicator's modified timestamp; with ObjectID it identifies the message.
	Version() time.Time
	// Expiry is the indicator's valid_until: after it the message means nothing.
	Expiry() time.Time
	// Reporter is the reporter's identity id.
	Reporter() string
	isMessage()
}

// ObjectID implements Message.
func (s *Sighting) ObjectID() string { return s.ID }

// Version implements Message.
func (s *Sighting) Version() time.Time { return s.modified() }

// Expiry implements Message.
func (s *Sighting) Expiry() time.Time { return s.ValidUntil }

// Reporter implements Message.
func (s *Sighting) Reporter() string { return s.ReporterID }
func (s *Sighting) isMessage()       {}

// ObjectID implements Message.
func (r *Revocation) ObjectID() string { return r.ID }

// Version implements Message.
func (r *Revocation) Version() time.Time { return r.Modified }

// Expiry implements Message.
func (r *Revocation) Expiry() time.Time { return r.ValidUntil }

// Reporter implements Message.
func (r *Revocation) Reporter() string { return r.ReporterID }
func (r *Revocation) isMessage()       {}

var (
	_ Message = (*Sighting)(nil)
	_ Message = (*Revocation)(nil)
)

// DecodeOptions bound what Decode accepts. Zero fields take the defaults below.
type DecodeOptions struct {
	MaxSize    int           // bytes; default DefaultMaxSize
	MaxSkew    time.Duration // how far created/modified may be from now; default DefaultMaxSkew
	MaxTTL     time.Duration // longest valid_until - valid_from; default DefaultMaxTTL
	MaxObjects int           // objects per bundle; default DefaultMaxObjects
	// MinPrefixLen4 and MinPrefixLen6 are the broadest CIDRs a report may name; defaults
	// DefaultMinPrefixLen4 and DefaultMinPrefixLen6. Broader ones are ErrTarget.
	MinPrefixLen4 int
	MinPrefixLen6 int
}

// Defaults for DecodeOptions.
const (
	DefaultMaxSize    = 64 << 10
	DefaultMaxSkew    = 5 * time.Minute
	DefaultMaxTTL     = 7 * 24 * time.Hour
	DefaultMaxObjects = 16
	// A peer may ask for a /16 or a /32 at the broadest: enough for a hostile network, not
	// enough to cut a host off the Internet.
	DefaultMinPrefixLen4 = 16
	DefaultMinPrefixLen6 = 32
)

func (o DecodeOptions) withDefaults() DecodeOptions {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = DefaultMaxSkew
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.MaxObjects <= 0 {
		o.MaxObjects = DefaultMaxObjects
	}
	if o.MinPrefixLen4 <= 0 {
		o.MinPrefixLen4 = DefaultMinPrefixLen4
	}
	if o.MinPrefixLen6 <= 0 {
		o.MinPrefixLen6 = DefaultMinPrefixLen6
	}
	return o
}

// decodeError is an invalid-message error: errors.Is finds both ErrInvalid and its kind.
type decodeError struct {
	kind error // a specific sentinel, or nil
	msg  string
}

func (e *decodeError) Error() string { return "stix: " + e.msg }

func (e *decodeError) Unwrap() []error {
	if e.kind == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.kind}
}

// invalidf returns an error wrapping ErrInvalid and kind (which may be nil).
func invalidf(kind error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if kind != nil {
		msg += ": " + kind.Error()
	}
	return &decodeError{kind: kind, msg: msg}
}

// reserved are ranges no report may target: blocking them would cut the host off from
// itself (loopback: the gateway reaches its executors there) or means nothing (unspecified,
// "this network", multicast, broadcast).
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("ff00::/8"),
}

// CheckTarget applies the target policy Decode enforces: an address target must not
// overlap loopback, unspecified, multicast or broadcast space, and a CIDR must not be
// broader than the options allow.
func CheckTarget(t Target, opts DecodeOptions) error {
	o := opts.withDefaults()
	if !t.Valid() {
		return invalidf(ErrTarget, "target: want exactly one of address/CIDR and port")
	}
	if t.IsPort() {
		return nil
	}
	p := t.Prefix
	min := o.MinPrefixLen4
	if p.Addr().Is6() {
		min = o.MinPrefixLen6
	}
	if p.Bits() < min {
		return invalidf(ErrTarget, "target %s: broader than /%d", p, min)
	}
	for _, r := range reserved {
		if r.Overlaps(p) {
			return invalidf(ErrTarget, "target %s: overlaps reserved range %s", p, r)
		}
	}
	return nil
}
