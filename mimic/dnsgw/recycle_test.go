package dnsgw

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// answering is an in-process executor that answers every question with trueWWW at once.
func answering(t *testing.T) voter.Member {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN A " + trueWWW)
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	a := pc.LocalAddr().String()
	return voter.Member{ID: a, Variant: a, Addr: a}
}

// askOf reads the next question the test's executor c was asked and finds the front's
// reference to it (the round and ask an answer under its ID would go to).
func askOf(t *testing.T, g *Gateway, c net.PacketConn) (*dns.Msg, net.Addr, *upSock, askRef) {
	t.Helper()
	buf := make([]byte, 65535)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	if err := q.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	g.up.mu.Lock()
	x := g.up.m[c.LocalAddr().String()]
	g.up.mu.Unlock()
	for _, s := range x.socks {
		if ref, ok := s.lookup(q.Id); ok && s.c.LocalAddr().String() == from.String() {
			return q, from, s, ref
		}
	}
	t.Fatalf("no ask in flight under ID %d", q.Id)
	return nil, nil, nil, askRef{}
}

func reply(t *testing.T, c net.PacketConn, q *dns.Msg, to net.Addr, a string) {
	t.Helper()
	m := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 300 IN A " + a)
	m.Answer = []dns.RR{rr}
	if _, err := c.WriteTo(mustPackMsg(t, m), to); err != nil {
		t.Fatal(err)
	}
}

// A UDP client's round is recycled for the next query once it is over, while a reader of an
// executor's socket may still hold a reference to one of its asks (taken before the ask was
// answered or expired), and the executor may still answer late. Such a reference, used once
// the round serves another query, changes nothing of that query: not its asks' answers
// (a late or forged answer for the last query does not count as this one's), nor their
// failures, nor their sockets' IDs; and the late datagram itself is counted stray.
func TestLateAnswerAfterRoundRecycled(t *testing.T) {
	t.Parallel()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ca := c.LocalAddr().String()
	ms := voter.Static{answering(t), answering(t), {ID: "c", Variant: "c", Addr: ca}}
	g, addr, ev := gatewayOver(t, Options{K: 3, Quorum: 2, Timeout: time.Minute, EjectAfter: -1}, ms)

	// Query 1: decided by the other two; c's ask is in flight, its reference taken (as a
	// reader does before it parses the datagram), then c answers and the round completes.
	if r := ask(t, "udp", addr, "www.proteus.lab.", dns.TypeA, 0); !slices.Equal(aRecords(r), []string{trueWWW}) {
		t.Fatalf("query 1: %v", r)
	}
	q1, from1, _, stale := askOf(t, g, c)
	reply(t, c, q1, from1, trueWWW)
	g.Wait()
	for pooled := false; !pooled; { // the expiry goroutine lets go of it within expiryTick
		time.Sleep(time.Millisecond)
		g.rounds.mu.Lock()
		pooled = slices.Contains(g.rounds.free, stale.r)
		g.rounds.mu.Unlock()
	}
	if _, _, current := stale.r.question(stale.gen, nil); current {
		t.Error("a reference to a round back in the pool is not stale")
	}

	// Query 2, another name: the same round, in use again; c's ask waits.
	if r := ask(t, "udp", addr, "mail.proteus.lab.", dns.TypeA, 0); !slices.Equal(aRecords(r), []string{trueWWW}) {
		t.Fatalf("query 2: %v", r)
	}
	q2, from2, s2, cur := askOf(t, g, c)
	if cur.r != stale.r || cur.gen == stale.gen {
		t.Fatalf("query 2's round %p gen %d, query 1's %p gen %d: not recycled", cur.r, cur.gen, stale.r, stale.gen)
	}

	// The stale reference, as a reader late with query 1's answer would use it.
	r := stale.r
	if _, _, current := r.question(stale.gen, nil); current {
		t.Error("a stale reference gets the round's new question")
	}
	forgedMsg := new(dns.Msg).SetQuestion("mail.proteus.lab.", dns.TypeA)
	rr, _ := dns.NewRR("mail.proteus.lab. 300 IN A " + forgedWWW)
	forgedMsg.Answer = []dns.RR{rr}
	forged, err := normalize(g.seed, forgedMsg)
	if err != nil {
		t.Fatal(err)
	}
	r.refuse(stale.i, stale.gen, errors.New("stale refusal"))
	r.retryTCP(stale.i, stale.gen)
	var out outbox
	r.add(stale.i, stale.gen, voter.Answer[*normalized, uint64]{Value: forged, Key: forged.key}, &out)
	r.mu.Lock()
	slot := r.slots[stale.i].key
	r.mu.Unlock()
	r.addParsed(stale.i, stale.gen, forged, &out) // as parseAnswer's reader would
	r.mu.Lock()
	if r.slots[stale.i].key != slot {
		t.Error("a stale answer was copied into the round's slot")
	}
	r.mu.Unlock()
	out.flush(g)
	s2.forget(q2.Id, r, stale.i, stale.gen)
	r.mu.Lock()
	a := r.asks[cur.i]
	complete := r.tally.Complete()
	r.mu.Unlock()
	if a.state != askWaiting || a.last != nil || complete {
		t.Fatalf("query 2's ask to c after stale use: state %d, last error %v, round complete %v", a.state, a.last, complete)
	}
	if ref, ok := s2.lookup(q2.Id); !ok || ref != cur {
		t.Fatalf("query 2's ask to c taken off its socket by a stale forget: %v %v", ref, ok)
	}

	// The late datagram itself (query 1's answer again), then c's answer to query 2.
	stray := g.stat.strayAnswers.Load()
	reply(t, c, q1, from1, trueWWW)
	reply(t, c, q2, from2, trueWWW)
	g.Wait()
	if got := g.stat.strayAnswers.Load() - stray; got != 1 {
		t.Errorf("%d stray answers counted for the late datagram, want 1", got)
	}
	if d := ev.of(voter.EventDissent); len(d) > 0 {
		t.Errorf("dissent (a stale answer was counted): %v", d)
	}
	if s := g.Trust().Score("c"); s != 1 {
		t.Errorf("c's trust %v, want 1 (agreed twice)", s)
	}
}
