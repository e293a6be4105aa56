// Package countermeasure owns the actions Proteus takes against a threat and, just as
// important, their undoing: every Action has an expiry and a revert. An Actuator applies
// and reverts one kind of action (the gateway blocklist, an nftables set, the vigilance
// level); the Manager routes actions to actuators, journals them to the data dir so
// pending reverts survive a restart, reverts them when their TTL passes or their source
// sighting is retracted, and publishes countermeasure.* events on the bus.
//
// It imports the standard library, bus, atomicfile, strictjson and github.com/google/nftables; it
// must not import stix, enclave, engine or the gateway (they import it).
package countermeasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// Sentinel errors.
var (
	ErrUnknownActuator   = errors.New("countermeasure: unknown actuator")
	ErrUnsupportedTarget = errors.New("countermeasure: target not supported by this actuator")
	ErrInvalidAction     = errors.New("countermeasure: invalid action")
	ErrNotRoot           = errors.New("countermeasure: requires root (CAP_NET_ADMIN)")
	ErrJournalCorrupt    = errors.New("countermeasure: journal corrupt")
)

// Kind is the kind of an action.
type Kind string

// Action kinds.
const (
	KindBlock     Kind = "block"     // drop traffic from Target (a prefix) or to Target (a port)
	KindVigilance Kind = "vigilance" // raise the vigilance level; Target is ignored
	// KindRedirect serves Target (one address) from a decoy executor instead of the vote;
	// the address is never refused, so a redirect may name any address, loopback included.
	KindRedirect Kind = "redirect"
)

// Bus event kinds published by this package.
const (
	EventApplied   = "countermeasure.applied"
	EventReverted  = "countermeasure.reverted"
	EventFailed    = "countermeasure.failed"
	EventVigilance = "countermeasure.vigilance"
)

// Target is what a block acts on: addresses (Prefix valid; a single address is a /32 or
// /128) or a local destination port (Prefix invalid, Port > 0).
type Target struct {
	Prefix netip.Prefix `json:"prefix,omitzero"`
	Port   uint16       `json:"port,omitempty"`
}

// PrefixTarget returns a target for p, masked, with IPv4-mapped IPv6 unmapped.
func PrefixTarget(p netip.Prefix) Target {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return Target{Prefix: p.Masked()}
}

// AddrTarget returns a target for the single address a.
func AddrTarget(a netip.Addr) Target {
	a = a.Unmap()
	return Target{Prefix: netip.PrefixFrom(a, a.BitLen())}
}

// PortTarget returns a target for the local destination port p.
func PortTarget(p uint16) Target { return Target{Port: p} }

// IsPrefix reports whether t names addresses.
func (t Target) IsPrefix() bool { return t.Prefix.IsValid() }

// IsPort reports whether t names a port.
func (t Target) IsPort() bool { return !t.Prefix.IsValid() && t.Port != 0 }

// IsZero reports whether t names nothing (fine for vigilance actions).
func (t Target) IsZero() bool { return !t.Prefix.IsValid() && t.Port == 0 }

// String is the address, the CIDR, "port/N", or "-".
func (t Target) String() string {
	switch {
	case t.IsPrefix() && t.Prefix.IsSingleIP():
		return t.Prefix.Addr().String()
	case t.IsPrefix():
		return t.Prefix.String()
	case t.IsPort():
		return "port/" + strconv.Itoa(int(t.Port))
	default:
		return "-"
	}
}

// Action is one countermeasure with a lifetime.
type Action struct {
	// ID identifies the action; the Manager derives it from Actuator, Source and Target
	// when empty, so the same source applied twice is one action (extended, not doubled).
	ID       string    `json:"id"`
	Actuator string    `json:"actuator"` // e.g. "countermeasure.blocklist"
	Kind     Kind      `json:"kind"`
	Target   Target    `json:"target"`
	Level    int       `json:"level,omitempty"` // vigilance level to raise to (>= 1); 0 means 1
	Reason   string    `json:"reason,omitempty"`
	Source   string    `json:"source,omitempty"` // the sighting (indicator) ID or local decision ID
	Applied  time.Time `json:"applied"`          // set by the Manager
	Expires  time.Time `json:"expires"`
}

// Actuator applies and reverts actions of one kind. Apply of an action already applied
// must succeed (it may refresh the expiry); Revert of an action not applied must succeed.
type Actuator interface {
	ID() string
	Apply(ctx context.Context, a Action) error
	Revert(ctx context.Context, a Action) error
}

// Closer is implemented by actuators that hold resources (the nftables table).
type Closer interface{ Close() error }

// Env is what a registered actuator factory gets.
type Env struct {
	Bus    *bus.Bus     // may be nil
	Logger *slog.Logger // never nil when built by Build
}

// Factory builds an actuator.
type Factory func(Env) (Actuator, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes an actuator available under id (e.g. "countermeasure.blocklist");
// duplicate IDs panic. Call from init().
func Register(id string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[id]; dup {
		panic(fmt.Sprintf("countermeasure: actuator %q registered twice", id))
	}
	registry[id] = f
}

// Registered lists the registered actuator IDs, sorted.
func Registered() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	ids := make([]string, 0, len(registry))
	for id := range registry {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Build constructs the actuator registered under id.
func Build(id string, env Env) (Actuator, error) {
	regMu.RLock()
	f, ok := registry[id]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownActuator, id)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := f(env.withComponent(id))
	if err != nil {
		return nil, fmt.Errorf("countermeasure: build %s: %w", id, err)
	}
	return a, nil
}

func (e Env) withComponent(id string) Env {
	e.Logger = e.Logger.With("component", id)
	return e
}
