package process

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// firewall keeps executors off the network through nftables: table inet proteus-exec (its
// own, apart from the countermeasure table inet proteus), one output chain, and for every
// executor uid two rules: packets of connections it accepted pass, anything else it sends
// is counted and rejected — every connection when its variant does not allow outbound
// traffic, else only those to an address of this host (the agent's API, the gateway, its
// metrics, the enclave port, sibling executors). The counter of the reject rule is the
// evidence that an executor tried. Rules carry the instance ID in their user data, so the
// driver finds them again (and an agent restart finds its predecessor's). Every driver on
// the machine shares the table; each removes only its own rules.
type firewall struct {
	mu    sync.Mutex
	table *nftables.Table
	chain *nftables.Chain
}

// Names of what the firewall owns: `nft delete table inet proteus-exec` removes it all.
const (
	FWTable = "proteus-exec"
	FWChain = "output"
)

func newFirewall() (*firewall, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	accept := nftables.ChainPolicyAccept
	fw := &firewall{}
	fw.table = c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: FWTable})
	fw.chain = c.AddChain(&nftables.Chain{Name: FWChain, Table: fw.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("nftables: table inet %s: %w", FWTable, err)
	}
	return fw, nil
}

func ruleTag(id, what string) []byte { return []byte("proteus-exec " + what + " " + id) }

// allow installs uid's rules for instance id.
func (fw *firewall) allow(id string, uid int, outbound bool) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	skuid := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, uint32(uid))},
	}
	established := append(append([]expr.Any{}, skuid...),
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictAccept})
	deny := append([]expr.Any{}, skuid...)
	if outbound {
		deny = append(deny,
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)})
	}
	deny = append(deny, &expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	c.AddRule(&nftables.Rule{Table: fw.table, Chain: fw.chain, Exprs: established, UserData: ruleTag(id, "accept")})
	c.AddRule(&nftables.Rule{Table: fw.table, Chain: fw.chain, Exprs: deny, UserData: ruleTag(id, "deny")})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: rules for uid %d: %w", uid, err)
	}
	return nil
}

// rules lists the chain's rules tagged by this package, by instance ID.
func (fw *firewall) rules(c *nftables.Conn) (map[string][]*nftables.Rule, error) {
	rs, err := c.GetRules(fw.table, fw.chain)
	if err != nil {
		return nil, err
	}
	out := map[string][]*nftables.Rule{}
	for _, r := range rs {
		f := bytes.Fields(r.UserData)
		if len(f) == 3 && string(f[0]) == "proteus-exec" {
			out[string(f[2])] = append(out[string(f[2])], r)
		}
	}
	return out, nil
}

// refused returns how many packets id's reject rule has counted.
func (fw *firewall) refused(id string) uint64 {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return 0
	}
	byID, err := fw.rules(c)
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

// remove deletes the rules of the instances for which drop returns true.
func (fw *firewall) remove(drop func(id string) bool) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	byID, err := fw.rules(c)
	if err != nil {
		return err
	}
	n := 0
	for id, rs := range byID {
		if !drop(id) {
			continue
		}
		for _, r := range rs {
			if err := c.DelRule(r); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return c.Flush()
}
