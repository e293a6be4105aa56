// Package netguard keeps executors off the network with nftables: table inet
// proteus-exec (its own, apart from the countermeasure table inet proteus) with an output,
// an input and a forward chain. Each executor gets rules that let packets of connections it
// accepted pass and count and reject anything else it starts — every connection unless its
// variant allows outbound traffic, and connections to this host (the agent's API, gateway,
// metrics and enclave ports, sibling executors) always. A local process executor is
// matched by its own uid (output chain), a container by its address (input and forward
// chains). The reject rule's counter is the evidence that an executor tried.
//
// Rules carry the instance ID in their user data, so a driver finds them again (and an
// agent restart finds its predecessor's). Every driver on the machine shares the table;
// each removes only its own rules. It imports only the nftables library and x/sys.
package netguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Guard is the executors' share of nftables. It is safe for concurrent use.
type Guard struct {
	mu                 sync.Mutex
	table              *nftables.Table
	output, input, fwd *nftables.Chain
}

// Table is what the guard owns: `nft delete table inet proteus-exec` removes it all.
const Table = "proteus-exec"

// New creates (or finds) the table and its chains. It fails where nftables cannot be
// programmed (not root, no nf_tables).
func New() (*Guard, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("netguard: %w", err)
	}
	accept := nftables.ChainPolicyAccept
	g := &Guard{}
	g.table = c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: Table})
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: g.table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	}
	g.output = chain("output", nftables.ChainHookOutput)
	g.input = chain("input", nftables.ChainHookInput)
	g.fwd = chain("forward", nftables.ChainHookForward)
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("netguard: table inet %s: %w", Table, err)
	}
	return g, nil
}

// ruleTag is a rule's user data: "proteus-exec accept|deny <id>", and " <addr>" for a
// container's rules.
func ruleTag(id, what, addr string) []byte {
	t := "proteus-exec " + what + " " + id
	if addr != "" {
		t += " " + addr
	}
	return []byte(t)
}

// established matches packets of connections already accepted (and ICMP about them).
func established() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// toThisHost matches packets to any local address of this host.
func toThisHost() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}
}

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var (
	accept = []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	reject = []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}}
)

// startsConnection matches what begins a connection: conntrack state new and, for TCP, a SYN
// without ACK; for any other protocol, conntrack state new. A late packet of a connection
// conntrack has already forgotten (a retransmitted FIN, an RST, an ACK that loose pickup
// files as new) is not an attempt and must not be counted as one: each count is evidence that
// quarantines the executor. Such a packet passes, and cannot open anything without a SYN.
func startsConnection(tcp bool) []expr.Any {
	ctNew := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
	}
	if !tcp {
		return append(ctNew, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}})
	}
	return append(ctNew,
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}}, // SYN | ACK
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},                                  // SYN alone
	)
}

// add installs, for match in chain, the accept rule for established traffic and the counted
// reject rules (TCP and the rest) for the connections it starts that denyMatch also matches.
func (g *Guard) add(c *nftables.Conn, chain *nftables.Chain, id, addr string, match, denyMatch []expr.Any) {
	c.AddRule(&nftables.Rule{Table: g.table, Chain: chain, Exprs: join(match, established(), accept), UserData: ruleTag(id, "accept", addr)})
	for _, tcp := range []bool{true, false} {
		c.AddRule(&nftables.Rule{Table: g.table, Chain: chain, Exprs: join(match, denyMatch, startsConnection(tcp), reject), UserData: ruleTag(id, "deny", addr)})
	}
}

// AllowUID confines the local processes of uid (instance id): they may answer connections;
// they may start connections to other hosts only when outbound is set, to this host never.
// Rules an earlier instance left for the same uid (an agent that died before removing them,
// whatever its ID) are replaced: the caller holds the uid now, and the old rules would refuse
// what this instance may do and count its attempts as the old one's.
func (g *Guard) AllowUID(id string, uid int, outbound bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	uidData := binary.NativeEndian.AppendUint32(nil, uint32(uid))
	stale, err := g.tagged(c)
	if err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	for _, r := range stale {
		if r.Chain.Name == g.output.Name && matchesUID(r, uidData) {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("netguard: %w", err)
			}
		}
	}
	match := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: uidData},
	}
	var deny []expr.Any
	if outbound {
		deny = toThisHost()
	}
	g.add(c, g.output, id, "", match, deny)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netguard: rules for uid %d: %w", uid, err)
	}
	return nil
}

// matchesUID reports whether rule r begins with the socket-uid match AllowUID writes, for the
// uid whose bytes are uidData.
func matchesUID(r *nftables.Rule, uidData []byte) bool {
	if len(r.Exprs) < 2 {
		return false
	}
	m, ok := r.Exprs[0].(*expr.Meta)
	cmp, ok2 := r.Exprs[1].(*expr.Cmp)
	return ok && ok2 && m.Key == expr.MetaKeySKUID && cmp.Op == expr.CmpOpEq && bytes.Equal(cmp.Data, uidData)
}

// AllowAddr confines the container at addr (instance id) the same way: connections it
// starts to this host are refused in the input chain, those to other hosts (and other
// containers) in the forward chain unless outbound is set. Rules an earlier container left
// for the same address (an agent that died before removing them) are replaced: they would
// otherwise count this container's attempts as the old one's.
func (g *Guard) AllowAddr(id string, addr netip.Addr, outbound bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	stale, err := g.tagged(c)
	if err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	for _, r := range stale {
		if f := bytes.Fields(r.UserData); len(f) == 4 && string(f[3]) == addr.String() {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("netguard: %w", err)
			}
		}
	}
	var match []expr.Any
	if addr.Is4() {
		match = []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		}
	} else {
		match = []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		}
	}
	match = append(match, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.AsSlice()})
	g.add(c, g.input, id, addr.String(), match, nil)
	if !outbound {
		g.add(c, g.fwd, id, addr.String(), match, nil)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netguard: rules for %s: %w", addr, err)
	}
	return nil
}

// tagged lists every rule of the guard's chains that carries its tag.
func (g *Guard) tagged(c *nftables.Conn) ([]*nftables.Rule, error) {
	var out []*nftables.Rule
	for _, ch := range []*nftables.Chain{g.output, g.input, g.fwd} {
		rs, err := c.GetRules(g.table, ch)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if f := bytes.Fields(r.UserData); len(f) >= 3 && string(f[0]) == "proteus-exec" {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// rules lists the guard's tagged rules, by instance ID.
func (g *Guard) rules(c *nftables.Conn) (map[string][]*nftables.Rule, error) {
	rs, err := g.tagged(c)
	if err != nil {
		return nil, err
	}
	out := map[string][]*nftables.Rule{}
	for _, r := range rs {
		id := string(bytes.Fields(r.UserData)[2])
		out[id] = append(out[id], r)
	}
	return out, nil
}

// Refused returns how many packets instance id's reject rules have counted (0 when the
// rules cannot be read).
func (g *Guard) Refused(id string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return 0
	}
	byID, err := g.rules(c)
	if err != nil {
		return 0
	}
	var n uint64
	for _, r := range byID[id] {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				n += ctr.Packets
			}
		}
	}
	return n
}

// Remove deletes the rules of every instance for which drop returns true.
func (g *Guard) Remove(drop func(id string) bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	byID, err := g.rules(c)
	if err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	n := 0
	for id, rs := range byID {
		if !drop(id) {
			continue
		}
		for _, r := range rs {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("netguard: %w", err)
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netguard: %w", err)
	}
	return nil
}
