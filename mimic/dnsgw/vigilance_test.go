package dnsgw

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/countermeasure"
)

// Vigilance asks more servers per query (the quorum a majority of those asked) and restores
// the configured k; a blocked client is refused over TCP and ignored over UDP before any
// server is asked.
func TestTightenAndBlocklist(t *testing.T) {
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, trueWWW), startBIND(t, trueWWW)
	bl := countermeasure.NewBlocklist()
	g, addr, _ := gateway(t, Options{K: 1, Quorum: 1, Blocklist: bl}, nsd, knot, bind)
	asked := func() int {
		g.Wait()
		n := 0
		for _, s := range g.Trust().Snapshot() {
			n += s.Requests
		}
		return n
	}
	query := func(n int) {
		for range n {
			if r := ask(t, "udp", addr, "www."+zoneName, dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
				t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
			}
		}
	}
	query(4)
	if n := asked(); n != 4 {
		t.Fatalf("k=1: %d servers asked for 4 queries", n)
	}
	g.Tighten(3, 2)
	if k, q := g.Voters(3); k != 3 || q != 2 {
		t.Fatalf("tightened voters %d, quorum %d", k, q)
	}
	query(4)
	if n := asked(); n != 4+12 {
		t.Fatalf("k=3: %d servers asked in all, want 16", n)
	}
	g.Tighten(0, 0)
	query(2)
	if n := asked(); n != 18 {
		t.Fatalf("restored k=1: %d servers asked in all, want 18", n)
	}

	if err := bl.Apply(context.Background(), countermeasure.Action{ID: "b", Actuator: countermeasure.BlocklistID, Kind: countermeasure.KindBlock,
		Target: countermeasure.PrefixTarget(netip.MustParsePrefix("127.0.0.0/8")), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, "tcp", addr, "www."+zoneName, dns.TypeA, 0); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Fatalf("blocked client over tcp: %s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	c := dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	if r, _, err := c.Exchange(new(dns.Msg).SetQuestion("www."+zoneName, dns.TypeA), addr); err == nil {
		t.Fatalf("blocked client over udp got an answer: %v", r)
	}
	if n := asked(); n != 18 {
		t.Fatalf("a blocked client's queries reached servers: %d asked in all, want 18", n)
	}
}
