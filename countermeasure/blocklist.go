package countermeasure

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// BlocklistID is the registry ID of the gateway blocklist actuator.
const BlocklistID = "countermeasure.blocklist"

func init() {
	Register(BlocklistID, func(Env) (Actuator, error) { return NewBlocklist(), nil })
}

// Blocklist is an in-memory set of blocked prefixes for the gateway's per-request path.
// Blocked is lock-free and allocation-free: it binary-searches an immutable sorted list of
// disjoint address intervals, swapped in atomically whenever Apply or Revert changes the
// set. Apply and Revert serialize on a mutex and rebuild the list (O(n log n)).
type Blocklist struct {
	mu     sync.Mutex
	byID   map[string]netip.Prefix // action ID -> prefix
	ranges atomic.Pointer[ranges]
}

var (
	_ Actuator = (*Blocklist)(nil)
)

// NewBlocklist returns an empty blocklist.
func NewBlocklist() *Blocklist {
	b := &Blocklist{byID: map[string]netip.Prefix{}}
	b.ranges.Store(&ranges{})
	return b
}

// ID implements Actuator.
func (b *Blocklist) ID() string { return BlocklistID }

// Apply blocks a.Target (a prefix); port targets are ErrUnsupportedTarget.
func (b *Blocklist) Apply(_ context.Context, a Action) error {
	if !a.Target.IsPrefix() {
		return fmt.Errorf("countermeasure/blocklist: %s: %w", a.Target, ErrUnsupportedTarget)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := PrefixTarget(a.Target.Prefix).Prefix
	if old, ok := b.byID[a.ID]; ok && old == p {
		return nil
	}
	b.byID[a.ID] = p
	b.rebuildLocked()
	return nil
}

// Revert unblocks what a blocked (other actions blocking the same prefix keep it blocked).
func (b *Blocklist) Revert(_ context.Context, a Action) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.byID[a.ID]; !ok {
		return nil
	}
	delete(b.byID, a.ID)
	b.rebuildLocked()
	return nil
}

// Blocked reports whether addr falls in a blocked prefix. Safe to call concurrently with
// everything; never allocates.
func (b *Blocklist) Blocked(addr netip.Addr) bool {
	return b.ranges.Load().contains(addr)
}

// Prefixes returns the blocked prefixes (deduplicated, sorted).
func (b *Blocklist) Prefixes() []netip.Prefix {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]netip.Prefix, 0, len(b.byID))
	for _, p := range b.byID {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return x.Bits() - y.Bits()
	})
	return slices.Compact(out)
}

// Len is the number of disjoint intervals the blocked prefixes collapse into.
func (b *Blocklist) Len() int {
	r := b.ranges.Load()
	return len(r.v4) + len(r.v6)
}

func (b *Blocklist) rebuildLocked() {
	var r ranges
	for _, p := range b.byID {
		lo, hi := bounds(p)
		if p.Addr().Is4() {
			r.v4 = append(r.v4, span4{uint32(lo.lo), uint32(hi.lo)})
		} else {
			r.v6 = append(r.v6, span6{lo, hi})
		}
	}
	slices.SortFunc(r.v4, func(x, y span4) int { return cmpU32(x.lo, y.lo) })
	slices.SortFunc(r.v6, func(x, y span6) int { return x.lo.cmp(y.lo) })
	r.v4 = merge4(r.v4)
	r.v6 = merge6(r.v6)
	b.ranges.Store(&r)
}

// ranges is an immutable snapshot: sorted, disjoint, non-adjacent intervals.
type ranges struct {
	v4 []span4
	v6 []span6
}

type span4 struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) next() (u128, bool) {
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return a, false
		}
		return u128{a.hi + 1, 0}, true
	}
	return u128{a.hi, a.lo + 1}, true
}

type span6 struct{ lo, hi u128 }

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// bounds returns the first and last address of p as 128-bit integers (IPv4 in the low 32 bits).
func bounds(p netip.Prefix) (lo, hi u128) {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		host := uint32(0)
		if p.Bits() < 32 {
			host = ^uint32(0) >> p.Bits()
		}
		return u128{0, uint64(v)}, u128{0, uint64(v | host)}
	}
	lo = addr6(a)
	bits := p.Bits()
	hi = lo
	switch {
	case bits <= 0:
		hi = u128{^uint64(0), ^uint64(0)}
	case bits < 64:
		hi.hi |= ^uint64(0) >> bits
		hi.lo = ^uint64(0)
	case bits < 128:
		hi.lo |= ^uint64(0) >> (bits - 64)
	}
	return lo, hi
}

func addr6(a netip.Addr) u128 {
	b := a.As16()
	var v u128
	for i := 0; i < 8; i++ {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

func merge4(s []span4) []span4 {
	out := s[:0]
	for _, x := range s {
		if n := len(out); n > 0 && (x.lo <= out[n-1].hi || out[n-1].hi != ^uint32(0) && x.lo == out[n-1].hi+1) {
			if x.hi > out[n-1].hi {
				out[n-1].hi = x.hi
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

func merge6(s []span6) []span6 {
	out := s[:0]
	for _, x := range s {
		if n := len(out); n > 0 {
			last := &out[n-1]
			nx, ok := last.hi.next()
			if x.lo.cmp(last.hi) <= 0 || ok && x.lo.cmp(nx) == 0 {
				if x.hi.cmp(last.hi) > 0 {
					last.hi = x.hi
				}
				continue
			}
		}
		out = append(out, x)
	}
	return out
}

func (r *ranges) contains(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	if addr.Is4() || addr.Is4In6() {
		b := addr.Unmap().As4()
		x := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		s := r.v4
		// first span with hi >= x
		i, j := 0, len(s)
		for i < j {
			h := int(uint(i+j) >> 1)
			if s[h].hi < x {
				i = h + 1
			} else {
				j = h
			}
		}
		return i < len(s) && s[i].lo <= x
	}
	x := addr6(addr)
	s := r.v6
	i, j := 0, len(s)
	for i < j {
		h := int(uint(i+j) >> 1)
		if s[h].hi.cmp(x) < 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(s) && s[i].lo.cmp(x) <= 0
}
