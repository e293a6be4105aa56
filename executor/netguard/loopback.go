package netguard

import (
	"fmt"
	"os"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Loopback counts the connections a container starts on its own loopback to a port
// nothing listens on: the agent's API port, say, which an intruder tries at 127.0.0.1 and
// which is not there (the container has a network namespace of its own). The kernel refuses
// such a connection anyway; the rules make the refusal countable. They live in table inet
// proteus-exec of the container's network namespace (chain input: a packet arriving on lo
// that finds a socket passes; a connection's first packet that finds none is counted and
// rejected), so they go with the namespace.
type Loopback struct {
	ns *os.File
}

// GuardLoopback installs the rules in the network namespace of process pid (this host's
// pid of a container's first process). It needs CAP_NET_ADMIN (root).
func GuardLoopback(pid int) (*Loopback, error) {
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("netguard: loopback: %w", err)
	}
	l := &Loopback{ns: ns}
	c, err := l.conn()
	if err != nil {
		ns.Close()
		return nil, err
	}
	policy := nftables.ChainPolicyAccept
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: Table})
	input := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	onLoopback := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("lo\x00")},
	}
	// The socket lookup breaks the rule (no match) when no socket takes the packet.
	hasSocket := []expr.Any{&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1}}
	c.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: join(onLoopback, hasSocket, accept), UserData: ruleTag("loopback", "accept", "")})
	c.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: join(onLoopback, startsConnection(true), reject), UserData: ruleTag("loopback", "deny", "")})
	if err := c.Flush(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("netguard: loopback rules in the namespace of %d: %w", pid, err)
	}
	return l, nil
}

func (l *Loopback) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(l.ns.Fd())))
	if err != nil {
		return nil, fmt.Errorf("netguard: loopback: %w", err)
	}
	return c, nil
}

// Refused returns how many connections the rules have refused (0 when they cannot be read).
func (l *Loopback) Refused() uint64 {
	c, err := l.conn()
	if err != nil {
		return 0
	}
	rs, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyINet, Name: Table}, &nftables.Chain{Name: "input"})
	if err != nil {
		return 0
	}
	var n uint64
	for _, r := range rs {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				n += ctr.Packets
			}
		}
	}
	return n
}

// Close lets go of the namespace (the rules end with it).
func (l *Loopback) Close() error { return l.ns.Close() }
