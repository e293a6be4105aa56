package enclave

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/stix"
)

// Local evidence is the ground truth the enclave's trust is built on: what this agent's own
// sensors saw. The engine (or an operator, through `proteus enclave publish`) feeds it with
// Witness; Options.Sensing (or enclave.sensing) says whether the sensors watch this agent's
// exposure at all, which is what lets silence count against a report.
//
//   - Witness(target): this agent's own sensors flagged target. The node acts on it at once
//     (no peer is needed), and every live peer report on target that arrived before the
//     flag is confirmed: its reporter's trust rises.
//   - a relevant peer report whose window (trust.window) passes with no Witness on its
//     target, while Sensing is true, is contradicted: its reporter's trust falls and the
//     report stops counting.
//   - with Sensing false (nothing watches), silence proves nothing: the report keeps its
//     weight and its reporter's trust does not move.

// Witness records that this agent's own sensors flagged target (source names the sensor,
// e.g. "gateway.dissent"), acts on it for ttl (capped by max_ttl) and confirms the peer
// reports on target received before now. It returns the decision taken.
func (n *Node) Witness(target stix.Target, source string, ttl time.Duration) (DecisionRecord, error) {
	if !target.Valid() {
		return DecisionRecord{}, fmt.Errorf("%w: witness: invalid target", ErrInvalidRequest)
	}
	if ttl <= 0 || ttl > n.cfg.MaxTTL {
		ttl = n.cfg.MaxTTL
	}
	now := n.now()
	s := &stix.Sighting{ID: "local--" + source + "--" + target.String(), ReporterName: n.self.String(), Target: target,
		Exposure: n.exposure, Action: stix.ActionBlock, Confidence: 100, Count: 1, Description: source,
		Created: now, ValidUntil: now.Add(ttl)}
	return n.onSighting(n.self.String(), "", true, s), nil
}

// sensing reports whether silence of this agent's sensors about t counts against a report.
func (n *Node) sensing(t stix.Target) bool {
	if n.sensingFn != nil {
		return n.sensingFn(t)
	}
	return n.cfg.Sensing
}

// confirmLocked credits every unsettled peer report on key received before now: this
// agent's own evidence confirmed it.
func (n *Node) confirmLocked(key string, by *report) {
	for _, q := range n.targets[key] {
		if q.local || q.settled || q.revoked || q.received.After(by.received) {
			continue
		}
		q.settled, q.confirmed = true, true
		n.dirtyReportLocked(q)
		score := n.trust.Confirmed(q.reporter)
		n.log.Info("report confirmed by local evidence", "reporter", q.reporter, "target", key, "trust", score)
	}
}

// ErrReservedTarget marks a peer report on an address no honest member reports: loopback,
// link-local, unspecified, multicast, broadcast, or one of their NAT64, IPv4-mapped or 6to4
// forms (or a range overlapping them).
var ErrReservedTarget = errors.New("enclave: reserved target")

// reserved4 and reserved6 are never blocked on a peer's report, in any form.
var (
	reserved4 = prefixes("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32")
	reserved6 = prefixes("::/128", "::1/128", "fe80::/10", "ff00::/8",
		"64:ff9b:1::/48") // local-use NAT64 (RFC 8215): maps into this site's own IPv4 space
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// v6Forms are the IPv6 spellings of an IPv4 prefix that reach the same hosts: IPv4-mapped
// (::ffff:0:0/96), the well-known NAT64 prefix (64:ff9b::/96, RFC 6052) and 6to4
// (2002::/16, RFC 3056).
func v6Forms(p netip.Prefix) []netip.Prefix {
	a := p.Addr().As4()
	mapped := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]})
	nat64 := netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: a[0], 13: a[1], 14: a[2], 15: a[3]})
	sixto4 := netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: a[0], 3: a[1], 4: a[2], 5: a[3]})
	return []netip.Prefix{netip.PrefixFrom(mapped, 96+p.Bits()), netip.PrefixFrom(nat64, 96+p.Bits()),
		netip.PrefixFrom(sixto4, 16+p.Bits())}
}

// protectSet is a list of ranges with their IPv6 forms, checked by overlap.
type protectSet []netip.Prefix

func (ps *protectSet) add(p netip.Prefix) {
	p = unmapPrefix(p).Masked()
	*ps = append(*ps, p)
	if p.Addr().Is4() {
		*ps = append(*ps, v6Forms(p)...)
	}
}

// overlaps returns the first range of ps that t overlaps.
func (ps protectSet) overlaps(t netip.Prefix) (netip.Prefix, bool) {
	t = unmapPrefix(t)
	for _, p := range ps {
		if p.Overlaps(t) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p
}

var reservedSet = func() protectSet {
	var ps protectSet
	for _, p := range reserved4 {
		ps.add(p)
	}
	for _, p := range reserved6 {
		ps.add(p)
	}
	return ps
}()

// checkReserved refuses a peer report on a reserved range (ErrReservedTarget).
func checkReserved(t stix.Target) error {
	if !t.IsPrefix() {
		return nil
	}
	if r, ok := reservedSet.overlaps(t.Prefix); ok {
		return fmt.Errorf("%w: %s overlaps %s", ErrReservedTarget, t, r)
	}
	return nil
}

// guard knows what this node must never block on a peer's report: the configured protect
// list, this host's addresses (refreshed every guardRefresh) and the addresses of members'
// connections.
type guard struct {
	mu      sync.Mutex
	static  protectSet
	host    protectSet
	hostAt  time.Time
	members func() []netip.Addr
	now     func() time.Time
}

const guardRefresh = 30 * time.Second

func newGuard(protect []string, members func() []netip.Addr, now func() time.Time) (*guard, error) {
	g := &guard{members: members, now: now}
	for _, s := range protect {
		p, err := config.ParsePrefixOrAddr(s) // the config's own rule, so New refuses what Validate refuses
		if err != nil {
			return nil, fmt.Errorf("enclave: protect: %w", err)
		}
		g.static.add(p)
	}
	return g, nil
}

// protected returns why t must not be blocked on peer reports, or "".
func (g *guard) protected(t stix.Target) string {
	if !t.IsPrefix() {
		return ""
	}
	if p, ok := g.static.overlaps(t.Prefix); ok {
		return "protected: overlaps enclave.protect " + p.String()
	}
	g.mu.Lock()
	if g.hostAt.IsZero() || g.now().Sub(g.hostAt) > guardRefresh {
		g.host, g.hostAt = hostAddrs(), g.now()
	}
	host := g.host
	g.mu.Unlock()
	if p, ok := host.overlaps(t.Prefix); ok {
		return "protected: overlaps this host's address " + p.Addr().String()
	}
	if g.members != nil {
		var ms protectSet
		for _, a := range g.members() {
			ms.add(netip.PrefixFrom(a, a.BitLen()))
		}
		if p, ok := ms.overlaps(t.Prefix); ok {
			return "protected: overlaps a member's address " + p.Addr().String()
		}
	}
	return ""
}

func hostAddrs() protectSet {
	var ps protectSet
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				ip = ip.Unmap()
				ps.add(netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
	}
	return ps
}

// memberAddrs are the remote IPs of this node's connections to verified members.
func (n *Node) memberAddrs() []netip.Addr {
	if n.host == nil {
		return nil
	}
	var out []netip.Addr
	for _, c := range n.host.Network().Conns() {
		if !n.isMember(c.RemotePeer()) {
			continue
		}
		if a, ok := addrOf(c.RemoteMultiaddr()); ok {
			out = append(out, a)
		}
	}
	return out
}

func addrOf(m ma.Multiaddr) (netip.Addr, bool) {
	ip, err := manet.ToIP(m)
	if err != nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

// groupOf is the independence group of a reporter: the network (independent_prefix4/6) of
// its first live connection, or "relayed" when this node has no direct connection to it
// (reporters it cannot place count as one).
func (n *Node) groupOf(p peer.ID) string {
	if n.host == nil {
		return "peer:" + p.String()
	}
	for _, c := range n.host.Network().ConnsToPeer(p) {
		a, ok := addrOf(c.RemoteMultiaddr())
		if !ok {
			continue
		}
		bits := n.cfg.Decision.IndependentPrefix6
		if a.Is4() {
			bits = n.cfg.Decision.IndependentPrefix4
		}
		pfx, _ := a.Prefix(bits)
		return pfx.String()
	}
	return "relayed"
}

// LocalSourcePrefix marks countermeasures taken on this agent's own evidence: the enclave
// node, given the agent's bus, treats a new block whose source is OperatorSource or starts
// with LocalSourcePrefix (e.g. "local:eve", set by the engine for a block its own sensors
// caused) as a Witness on its target. Never use it for a block taken on a peer's report:
// that would launder peer evidence into ground truth.
const (
	LocalSourcePrefix = "local:"
	OperatorSource    = "operator" // api.OperatorSource: `proteus block` and POST /v1/blocks
)

// watchLocalBlocks feeds Witness from the countermeasure events on the bus.
func (n *Node) watchLocalBlocks(events <-chan bus.Event) {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			src, _ := e.Attrs["source"].(string)
			kind, _ := e.Attrs["kind"].(string)
			how, _ := e.Attrs["how"].(string)
			if kind != string(countermeasure.KindBlock) || how != "new" || (src != OperatorSource && !strings.HasPrefix(src, LocalSourcePrefix)) {
				continue
			}
			t, err := ParseTarget(fmt.Sprint(e.Attrs["target"]))
			if err != nil {
				continue
			}
			ttl := n.cfg.Trust.Window
			if exp, ok := e.Attrs["expires"].(time.Time); ok {
				ttl = exp.Sub(n.now())
			}
			if _, err := n.Witness(t, src, ttl); err != nil {
				n.log.Debug("local block as evidence", "target", t, "err", err)
			}
		}
	}
}
