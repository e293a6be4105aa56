package countermeasure

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NFTablesID is the registry ID of the nftables actuator.
const NFTablesID = "countermeasure.nftables"

// Names of what the nftables actuator owns. Everything lives in one table, so
// `nft delete table inet proteus` removes all of it.
const (
	NFTable    = "proteus"
	NFSet4     = "blocked4"      // ipv4_addr, flags interval,timeout
	NFSet6     = "blocked6"      // ipv6_addr, flags interval,timeout
	NFSetPorts = "blocked_ports" // inet_service, flags timeout
	NFChainIn  = "input"         // hook input: drop from blocked addresses, to blocked ports
	NFChainFwd = "forward"       // hook forward: drop from blocked addresses
	// With NFTablesOptions.Redirects only: the addresses whose connections to the redirected
	// ports go to the decoys, and the nat chain that sends them there.
	NFSetRedir4     = "redir4"     // ipv4_addr, flags timeout
	NFSetRedir6     = "redir6"     // ipv6_addr, flags timeout
	NFChainRedir    = "prerouting" // hook prerouting, priority dstnat - 10: redirect to the decoy port
	nfRedirPriority = -110
	nfPriority      = -10 // before the usual filter chains (priority 0)
	nfMinTimeout    = time.Second
)

func init() {
	Register(NFTablesID, func(env Env) (Actuator, error) { return NewNFTables(NFTablesOptions{}) })
}

// NFTablesOptions configure the nftables actuator.
type NFTablesOptions struct {
	// NetNS is an open file descriptor of the network namespace to program; 0 means the
	// namespace of the calling process. Tests use a throwaway namespace.
	NetNS int
	// Now is the clock used to turn expiries into element timeouts; nil means time.Now.
	Now func() time.Time
	// Redirects are the ports whose new TCP connections from a redirected address (a
	// KindRedirect action) go to a decoy port of this host instead. Without any, redirect
	// actions are refused (ErrUnsupportedTarget).
	Redirects []PortRedirect
}

// PortRedirect sends new TCP connections to Port from a redirected address to local port To
// (nftables `redirect to :To`: the address of the interface the packet came in on, so the
// decoy on To must listen on every address). Connections made on this host itself do not
// pass the prerouting hook and are never redirected.
type PortRedirect struct {
	Port, To uint16
}

// NFTables blocks addresses and local ports in the kernel: table inet proteus, with
// interval sets of blocked IPv4 and IPv6 ranges and a set of blocked ports, each element
// carrying a timeout (so a crashed agent's blocks still lapse), and drop rules in an
// input and a forward base chain. Apply adds, Revert removes, Close deletes the table.
//
// The kernel does not merge overlapping intervals, so a change that touches an existing
// range rewrites the set from the wanted state in one atomic transaction (flush set + add
// elements): overlapping prefixes are merged and a merged range times out at the latest
// expiry among its parts. A new block whose range neither overlaps nor touches any wanted
// range of its family (the common case: one more attacker address) only adds its own
// elements, so its cost does not grow with the number of blocks. One netlink socket is kept
// open for all of it (reopened after an error).
//
// With NFTablesOptions.Redirects it also redirects: KindRedirect actions put one address each
// (with its timeout) in set redir4 or redir6, and a nat chain on the prerouting hook sends
// that address's new TCP connections to each redirected port to its decoy port on this host.
// A redirected address is not blocked: its connections are answered, by a decoy.
type NFTables struct {
	mu    sync.Mutex
	c     *nftables.Conn // lasting; nil until first used or after an error
	opts  NFTablesOptions
	table *nftables.Table
	set4  *nftables.Set
	set6  *nftables.Set
	ports *nftables.Set
	// redir4 and redir6 exist only with opts.Redirects.
	redir4, redir6 *nftables.Set
	want           map[string]Action // action ID -> action
}

var (
	_ Actuator = (*NFTables)(nil)
	_ Closer   = (*NFTables)(nil)
)

// NewNFTables creates (or recreates, empty) table inet proteus with its sets and chains.
// It needs root; otherwise it returns an error wrapping ErrNotRoot.
func NewNFTables(o NFTablesOptions) (*NFTables, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("countermeasure/nftables: %w", ErrNotRoot)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	n := &NFTables{opts: o, want: map[string]Action{}}
	n.table = &nftables.Table{Family: nftables.TableFamilyINet, Name: NFTable}
	n.set4 = &nftables.Set{Table: n.table, Name: NFSet4, KeyType: nftables.TypeIPAddr, Interval: true, HasTimeout: true}
	n.set6 = &nftables.Set{Table: n.table, Name: NFSet6, KeyType: nftables.TypeIP6Addr, Interval: true, HasTimeout: true}
	n.ports = &nftables.Set{Table: n.table, Name: NFSetPorts, KeyType: nftables.TypeInetService, HasTimeout: true}
	if len(o.Redirects) > 0 {
		n.redir4 = &nftables.Set{Table: n.table, Name: NFSetRedir4, KeyType: nftables.TypeIPAddr, HasTimeout: true}
		n.redir6 = &nftables.Set{Table: n.table, Name: NFSetRedir6, KeyType: nftables.TypeIP6Addr, HasTimeout: true}
	}
	if err := n.install(); err != nil {
		return nil, err
	}
	return n, nil
}

// conn returns the lasting netlink connection, opening it when needed.
func (n *NFTables) conn() (*nftables.Conn, error) {
	if n.c != nil {
		return n.c, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if n.opts.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(n.opts.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("countermeasure/nftables: netlink: %w", err)
	}
	n.c = c
	return c, nil
}

// drop closes the lasting connection after a failed transaction, so the next one starts on
// a fresh socket (no half-read replies left behind).
func (n *NFTables) drop() {
	if n.c != nil {
		_ = n.c.CloseLasting()
		n.c = nil
	}
}

// flush sends c's queued messages; on failure the connection is dropped.
func (n *NFTables) flush(c *nftables.Conn) error {
	if err := c.Flush(); err != nil {
		n.drop()
		return err
	}
	return nil
}

// install replaces any existing table inet proteus with an empty one, in one transaction.
func (n *NFTables) install() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	c.AddTable(n.table) // make sure it exists, so the delete below cannot fail
	c.DelTable(n.table)
	c.AddTable(n.table)
	for _, s := range []*nftables.Set{n.set4, n.set6, n.ports, n.redir4, n.redir6} {
		if s == nil {
			continue
		}
		if err := c.AddSet(s, nil); err != nil {
			n.drop()
			return fmt.Errorf("countermeasure/nftables: add set %s: %w", s.Name, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriorityRef(nfPriority)
	in := c.AddChain(&nftables.Chain{Name: NFChainIn, Table: n.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: prio, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: NFChainFwd, Table: n.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: prio, Policy: &accept})
	for _, ch := range []*nftables.Chain{in, fwd} {
		c.AddRule(&nftables.Rule{Table: n.table, Chain: ch, Exprs: saddrRule(unix.NFPROTO_IPV4, 12, 4, n.set4)})
		c.AddRule(&nftables.Rule{Table: n.table, Chain: ch, Exprs: saddrRule(unix.NFPROTO_IPV6, 8, 16, n.set6)})
	}
	for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		c.AddRule(&nftables.Rule{Table: n.table, Chain: in, Exprs: dportRule(proto, n.ports)})
	}
	if len(n.opts.Redirects) > 0 {
		nat := c.AddChain(&nftables.Chain{Name: NFChainRedir, Table: n.table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(nfRedirPriority), Policy: &accept})
		for _, r := range n.opts.Redirects {
			c.AddRule(&nftables.Rule{Table: n.table, Chain: nat, Exprs: redirectRule(unix.NFPROTO_IPV4, 12, 4, n.redir4, r)})
			c.AddRule(&nftables.Rule{Table: n.table, Chain: nat, Exprs: redirectRule(unix.NFPROTO_IPV6, 8, 16, n.redir6, r)})
		}
	}
	if err := n.flush(c); err != nil {
		return fmt.Errorf("countermeasure/nftables: create table inet %s: %w", NFTable, err)
	}
	return nil
}

// saddrRule is `meta nfproto <fam> <ip|ip6> saddr @set drop`.
func saddrRule(family byte, off, length uint32, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: length},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// dportRule is `meta l4proto <proto> th dport @set drop`.
func dportRule(proto byte, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// redirectRule is `meta nfproto <fam> <ip|ip6> saddr @set tcp dport <r.Port> redirect to :<r.To>`.
func redirectRule(family byte, off, length uint32, set *nftables.Set, r PortRedirect) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: length},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.Port)},
		&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.To)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

// ID implements Actuator.
func (n *NFTables) ID() string { return NFTablesID }

// isRedirect tells a redirect action (an address in redir4 or redir6) from a block.
func isRedirect(a Action) bool { return a.Kind == KindRedirect }

// Apply blocks a.Target (a prefix or a port) until a.Expires, or with a.Kind redirect sends
// a.Target's (one address) new connections to the redirected ports to their decoys.
func (n *NFTables) Apply(_ context.Context, a Action) error {
	if a.Target.IsZero() {
		return fmt.Errorf("countermeasure/nftables: %s: %w", a.ID, ErrUnsupportedTarget)
	}
	if isRedirect(a) {
		if n.redir4 == nil {
			return fmt.Errorf("countermeasure/nftables: redirect %s: no redirected ports: %w", a.Target, ErrUnsupportedTarget)
		}
		if !a.Target.IsPrefix() || !a.Target.Prefix.IsSingleIP() {
			return fmt.Errorf("countermeasure/nftables: redirect %s: %w: one address", a.Target, ErrUnsupportedTarget)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old, had := n.want[a.ID]
	n.want[a.ID] = a
	sync := func(Target) error { return n.syncLocked(a) }
	if !had && !isRedirect(a) && a.Target.Prefix.IsValid() && n.aloneLocked(a) {
		sync = func(Target) error { return n.addLocked(a) }
	}
	if err := sync(a.Target); err != nil {
		if had {
			n.want[a.ID] = old
		} else {
			delete(n.want, a.ID)
		}
		return err
	}
	return nil
}

// Revert removes what a added (a range another action still wants stays).
func (n *NFTables) Revert(_ context.Context, a Action) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	old, ok := n.want[a.ID]
	if !ok {
		return nil
	}
	delete(n.want, a.ID)
	if err := n.syncLocked(old); err != nil {
		n.want[a.ID] = old
		return err
	}
	return nil
}

// Close deletes table inet proteus.
func (n *NFTables) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.conn()
	if err != nil {
		return err
	}
	c.DelTable(n.table)
	if err := n.flush(c); err != nil {
		return fmt.Errorf("countermeasure/nftables: delete table inet %s: %w", NFTable, err)
	}
	n.want = map[string]Action{}
	n.drop()
	return nil
}

// aloneLocked reports whether a's range neither overlaps nor touches the range of any other
// wanted action of its family: its elements can then be added without rewriting the set.
func (n *NFTables) aloneLocked(a Action) bool {
	p := a.Target.Prefix.Masked()
	lo, hi := p.Addr(), lastAddr(p)
	for id, o := range n.want {
		q := o.Target.Prefix
		if id == a.ID || isRedirect(o) || !q.IsValid() || q.Addr().Is4() != lo.Is4() {
			continue
		}
		q = q.Masked()
		qlo, qhi := q.Addr(), lastAddr(q)
		// Apart only with a gap between them: else overlapping or adjacent (the merge in
		// rangeElements would join them).
		gapBefore := func(hi, lo netip.Addr) bool { e := hi.Next(); return e.IsValid() && e.Less(lo) }
		if !gapBefore(hi, qlo) && !gapBefore(qhi, lo) {
			return false
		}
	}
	return true
}

// addLocked adds the elements of a's range alone (see aloneLocked).
func (n *NFTables) addLocked(a Action) error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	p := a.Target.Prefix.Masked()
	set := n.set6
	if p.Addr().Is4() {
		set = n.set4
	}
	elems := []nftables.SetElement{{Key: p.Addr().AsSlice(), Timeout: timeout(a.Expires, n.opts.Now())}}
	if end := lastAddr(p).Next(); end.IsValid() {
		elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	if err := c.SetAddElements(set, elems); err != nil {
		n.drop()
		return fmt.Errorf("countermeasure/nftables: set %s: %w", set.Name, err)
	}
	if err := n.flush(c); err != nil {
		return fmt.Errorf("countermeasure/nftables: add to set %s: %w", set.Name, err)
	}
	return nil
}

// syncLocked rewrites the set that a belongs to from n.want.
func (n *NFTables) syncLocked(a Action) error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	now := n.opts.Now()
	t := a.Target
	var set *nftables.Set
	var elems []nftables.SetElement
	switch {
	case isRedirect(a):
		set = n.redir6
		if t.Prefix.Addr().Is4() {
			set = n.redir4
		}
		elems = n.redirectElements(now, t.Prefix.Addr().Is4())
	case t.IsPort():
		set = n.ports
		elems = n.portElements(now)
	case t.Prefix.Addr().Is4():
		set = n.set4
		elems = n.rangeElements(now, true)
	default:
		set = n.set6
		elems = n.rangeElements(now, false)
	}
	c.FlushSet(set)
	if len(elems) > 0 {
		if err := c.SetAddElements(set, elems); err != nil {
			n.drop() // the queued flush of the set must not go out with the next transaction
			return fmt.Errorf("countermeasure/nftables: set %s: %w", set.Name, err)
		}
	}
	if err := n.flush(c); err != nil {
		return fmt.Errorf("countermeasure/nftables: update set %s: %w", set.Name, err)
	}
	return nil
}

func timeout(expires, now time.Time) time.Duration {
	d := expires.Sub(now).Round(time.Millisecond)
	if d < nfMinTimeout {
		d = nfMinTimeout
	}
	return d
}

func (n *NFTables) portElements(now time.Time) []nftables.SetElement {
	latest := map[uint16]time.Time{}
	for _, a := range n.want {
		if !isRedirect(a) && a.Target.IsPort() && a.Expires.After(latest[a.Target.Port]) {
			latest[a.Target.Port] = a.Expires
		}
	}
	ports := make([]uint16, 0, len(latest))
	for p := range latest {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	out := make([]nftables.SetElement, 0, len(ports))
	for _, p := range ports {
		out = append(out, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p), Timeout: timeout(latest[p], now)})
	}
	return out
}

// rangeElements merges the wanted prefixes of one family into disjoint ranges, each an
// interval start element (with the timeout) and an interval end element (the first
// address after the range; omitted when the range reaches the top of the space).
func (n *NFTables) rangeElements(now time.Time, v4 bool) []nftables.SetElement {
	type rng struct {
		lo, hi  netip.Addr
		expires time.Time
	}
	var rs []rng
	for _, a := range n.want {
		p := a.Target.Prefix
		if isRedirect(a) || !p.IsValid() || p.Addr().Is4() != v4 {
			continue
		}
		p = p.Masked()
		rs = append(rs, rng{p.Addr(), lastAddr(p), a.Expires})
	}
	slices.SortFunc(rs, func(x, y rng) int { return x.lo.Compare(y.lo) })
	var merged []rng
	for _, r := range rs {
		if k := len(merged); k > 0 {
			last := &merged[k-1]
			next := last.hi.Next()
			if r.lo.Compare(last.hi) <= 0 || next.IsValid() && r.lo == next {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				if r.expires.After(last.expires) {
					last.expires = r.expires
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	var out []nftables.SetElement
	for _, r := range merged {
		out = append(out, nftables.SetElement{Key: r.lo.AsSlice(), Timeout: timeout(r.expires, now)})
		if end := r.hi.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// redirectElements are the redirected addresses of one family, each with the latest expiry
// among the actions that redirect it.
func (n *NFTables) redirectElements(now time.Time, v4 bool) []nftables.SetElement {
	latest := map[netip.Addr]time.Time{}
	for _, a := range n.want {
		if ip := a.Target.Prefix.Addr(); isRedirect(a) && ip.Is4() == v4 && a.Expires.After(latest[ip]) {
			latest[ip] = a.Expires
		}
	}
	addrs := make([]netip.Addr, 0, len(latest))
	for ip := range latest {
		addrs = append(addrs, ip)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	out := make([]nftables.SetElement, 0, len(addrs))
	for _, ip := range addrs {
		out = append(out, nftables.SetElement{Key: ip.AsSlice(), Timeout: timeout(latest[ip], now)})
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
