package dnsgw

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/mimic/voter"
)

// events collects the bus events of one test. Publish puts an event in the channel before
// it returns, so once the gateway's Wait returned, of sees every event of the queries asked.
type events struct {
	mu  sync.Mutex
	ch  <-chan bus.Event
	all []bus.Event
}

func collect(t *testing.T, b *bus.Bus) *events {
	ch, cancel := b.Subscribe(1<<16, nil)
	t.Cleanup(cancel)
	return &events{ch: ch}
}

func (e *events) of(kind string) []bus.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for drained := false; !drained; {
		select {
		case ev := <-e.ch:
			e.all = append(e.all, ev)
		default:
			drained = true
		}
	}
	var out []bus.Event
	for _, ev := range e.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// gateway starts a gateway on loopback over the given servers.
func gateway(t *testing.T, o Options, servers ...*server) (*Gateway, string, *events) {
	t.Helper()
	var ms voter.Static
	for _, s := range servers {
		ms = append(ms, s.member())
	}
	return gatewayOver(t, o, ms)
}

// gatewayOver is gateway over executors given as members.
func gatewayOver(t *testing.T, o Options, ms voter.Static) (*Gateway, string, *events) {
	t.Helper()
	o.Backends = ms
	if o.Bus == nil {
		o.Bus = bus.New()
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second // generous: a loaded CI machine
	}
	if o.Rate == 0 {
		o.Rate = -1
	}
	ev := collect(t, o.Bus)
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := g.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, addr, ev
}

func aRecords(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// checkPoisonNeverReachesClient asks www over UDP and TCP, in varied case, and checks that
// every answer is the true record and that every query made the poisoned executor dissent.
func checkPoisonNeverReachesClient(t *testing.T, poisoned, nsid string, servers ...*server) {
	g, addr, ev := gateway(t, Options{K: 3, Quorum: 2}, servers...)
	const rounds = 10
	names := []string{"www.proteus.lab.", "WWW.Proteus.Lab.", "wWw.pRoTeUs.lAb."}
	n := 0
	for _, network := range []string{"udp", "tcp"} {
		for i := range rounds {
			name := names[i%len(names)]
			r := ask(t, network, addr, name, dns.TypeA, 1232*(i%2))
			if r.Rcode != dns.RcodeSuccess || !slices.Equal(aRecords(r), []string{trueWWW}) {
				t.Fatalf("%s query %d: rcode %s answer %v, want %s", network, i, dns.RcodeToString[r.Rcode], r.Answer, trueWWW)
			}
			if strings.Contains(r.String(), forgedWWW) {
				t.Fatalf("%s query %d: the forged address reached the client:\n%s", network, i, r)
			}
			n++
		}
	}
	g.Wait()
	var fromPoisoned int
	for _, d := range ev.of(voter.EventDissent) {
		if d.Subject != poisoned {
			t.Errorf("dissent from %s (honest): %v", d.Subject, d.Attrs)
			continue
		}
		fromPoisoned++
		diff, _ := d.Attrs["differs"].(Differs)
		if d.Attrs["kind"] != voter.DissentContent || d.Source != "dns" || !strings.Contains(fmt.Sprint(diff.Extra), forgedWWW) ||
			!strings.Contains(fmt.Sprint(diff.Missing), trueWWW) || !strings.HasPrefix(strings.ToLower(d.Attrs["query"].(string)), "www.proteus.lab. a") {
			t.Errorf("dissent event does not say what differed: %v", d.Attrs)
		}
		if nsid != "" && d.Attrs["nsid"] != nsid {
			t.Errorf("dissent event without the server's NSID %q: %v", nsid, d.Attrs)
		}
	}
	if fromPoisoned != n {
		t.Errorf("%d dissent events from the poisoned %s for %d queries", fromPoisoned, poisoned, n)
	}
	if s := g.Trust().Score(poisoned); s != 0 {
		t.Errorf("poisoned executor's trust %v, want 0", s)
	}
}

func TestPoisonedAuthoritativeNeverReachesClient(t *testing.T) {
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, forgedWWW), startBIND(t, trueWWW)
	checkPoisonNeverReachesClient(t, knot.member().ID, "knot-test", nsd, knot, bind)
}

func TestPoisonedResolverNeverReachesClient(t *testing.T) {
	t.Parallel()
	auth := startNSD(t, trueWWW)
	ub, kr, dm := startUnbound(t, auth, forgedWWW), startKresd(t, auth), startDnsmasq(t, auth)
	checkPoisonNeverReachesClient(t, ub.member().ID, "", ub, kr, dm)
}

// Three authoritative servers and three resolvers (caching, so their TTLs count down) answer
// a varied query set all at once (k = quorum = 6): record order, name case, TTLs, flags (AA,
// RA), the additional section and EDNS options differ between them, and none of it may count.
func TestHonestDifferencesAreNotDissent(t *testing.T) {
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, trueWWW), startBIND(t, trueWWW)
	ub, kr, dm := startUnbound(t, nsd, ""), startKresd(t, nsd), startDnsmasq(t, nsd)
	all := []*server{nsd, knot, bind, ub, kr, dm}
	g, addr, ev := gateway(t, Options{K: 6, Quorum: 6, TTLTolerance: 300 * time.Second}, all...)
	queries := []struct {
		name  string
		qtype uint16
		rcode int
		n     int // answer records
	}{
		{"www.proteus.lab.", dns.TypeA, dns.RcodeSuccess, 1},
		{"WWW.PROTEUS.LAB.", dns.TypeA, dns.RcodeSuccess, 1},
		{"multi.proteus.lab.", dns.TypeA, dns.RcodeSuccess, 4},
		{"alias.proteus.lab.", dns.TypeA, dns.RcodeSuccess, 2},
		{"mail.proteus.lab.", dns.TypeMX, dns.RcodeSuccess, 1},
		{"txt.proteus.lab.", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"v6.proteus.lab.", dns.TypeAAAA, dns.RcodeSuccess, 1},
		{"www.proteus.lab.", dns.TypeAAAA, dns.RcodeSuccess, 0}, // NODATA
		{"nope.proteus.lab.", dns.TypeA, dns.RcodeNameError, 0},
		{"proteus.lab.", dns.TypeNS, dns.RcodeSuccess, 1},
		{"Proteus.Lab.", dns.TypeSOA, dns.RcodeSuccess, 1},
		{"_sip._tcp.proteus.lab.", dns.TypeSRV, dns.RcodeSuccess, 1},
		{"big.proteus.lab.", dns.TypeTXT, dns.RcodeSuccess, bigTXTRecs}, // truncated over UDP by every server: TCP
	}
	for round := range 3 {
		for _, q := range queries {
			for _, network := range []string{"udp", "tcp"} {
				m := new(dns.Msg).SetQuestion(q.name, q.qtype)
				m.SetEdns0(4096, round == 1)
				opt := m.IsEdns0()
				opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
				c := dns.Client{Net: network, Timeout: 30 * time.Second, UDPSize: 4096}
				r, _, err := c.Exchange(m, addr)
				if err != nil {
					t.Fatalf("round %d %s %s %s: %v", round, network, q.name, dns.Type(q.qtype), err)
				}
				if network == "udp" && r.Truncated {
					continue // big: asked again over TCP just below
				}
				if r.Rcode != q.rcode || len(r.Answer) != q.n {
					t.Fatalf("round %d %s %s %s: rcode %s, %d answers, want %s, %d:\n%s", round, network, q.name, dns.Type(q.qtype),
						dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[q.rcode], q.n, r)
				}
				if len(r.Extra) > 1 || len(r.Extra) == 1 && r.Extra[0].Header().Rrtype != dns.TypeOPT {
					t.Errorf("additional records forwarded: %v", r.Extra)
				}
			}
		}
		time.Sleep(1100 * time.Millisecond) // the caches' TTLs count down
	}
	g.Wait()
	for _, d := range ev.of(voter.EventDissent) {
		t.Errorf("honest difference counted as dissent: %s %v", d.Subject, d.Attrs)
	}
	for _, d := range ev.of(voter.EventNoConsensus) {
		t.Errorf("no consensus among honest servers: %v", d.Attrs)
	}
}
