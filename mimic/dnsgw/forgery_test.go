package dnsgw

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// held is an in-process executor that answers www with the true record, but only once the
// test lets it (release), so that the test can act while its queries are in flight.
type held struct {
	pc      net.PacketConn
	asked   chan struct{} // one per query received
	release chan struct{}
}

func startHeld(t *testing.T) *held {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &held{pc: pc, asked: make(chan struct{}, 64), release: make(chan struct{})}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			h.asked <- struct{}{}
			go func() {
				<-h.release
				r := new(dns.Msg).SetReply(q)
				rr, _ := dns.NewRR("www.proteus.lab. 300 IN A " + trueWWW)
				r.Answer = []dns.RR{rr}
				b, _ := r.Pack()
				pc.WriteTo(b, from)
			}()
		}
	}()
	return h
}

func (h *held) member(id string) voter.Member {
	a := h.pc.LocalAddr().String()
	return voter.Member{ID: id, Variant: id, Addr: a}
}

// inFlight returns the front's socket that asks the executor at addr, and the ID of the one
// ask in flight on it.
func inFlight(t *testing.T, g *Gateway, addr string) (*net.UDPAddr, uint16) {
	t.Helper()
	g.up.mu.Lock()
	x := g.up.m[addr]
	g.up.mu.Unlock()
	if x == nil {
		t.Fatalf("no socket to %s", addr)
	}
	for _, s := range x.socks {
		s.mu.Lock()
		for id := range s.waiting {
			s.mu.Unlock()
			return s.c.LocalAddr().(*net.UDPAddr), id
		}
		s.mu.Unlock()
	}
	t.Fatalf("no ask in flight to %s", addr)
	return nil, 0
}

// A hostile executor that knows (has guessed) the message ID of another executor's ask and
// the question cannot answer in that executor's place: the front takes an answer only from
// the address it asked. And a datagram with the right ID, from the right address, but for
// another question, does not end the ask: the executor's own answer, coming after it, is
// still taken (a forger cannot silence an honest executor by guessing its IDs).
func TestForgedAnswersWithGuessedIDs(t *testing.T) {
	t.Parallel()
	a, b := startHeld(t), startHeld(t)
	evil, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { evil.Close() })
	go func() { // answers its own asks with the forged record
		buf := make([]byte, 65535)
		for {
			n, from, err := evil.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := forge(buf[:n], nil); out != nil {
				evil.WriteTo(out, from)
			}
		}
	}()
	ms := voter.Static{a.member("a"), b.member("b"), {ID: "evil", Variant: "evil", Addr: evil.LocalAddr().String()}}
	g, addr, ev := gatewayOver(t, Options{K: 3, Quorum: 2, Timeout: time.Minute, EjectAfter: -1}, ms)

	got := make(chan *dns.Msg, 1)
	go func() {
		c := dns.Client{Net: "udp", Timeout: time.Minute}
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA), addr)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	<-a.asked
	<-b.asked

	// From the hostile executor's own address: the forged record, under the exact ID and
	// question of a's and b's asks, to the sockets that asked them.
	for _, h := range []*held{a, b} {
		to, id := inFlight(t, g, h.pc.LocalAddr().String())
		q := upstreamQuery(new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA), 1232, g.cookie)
		q.Id = id
		forged := forge(mustPackMsg(t, q), nil)
		if _, err := evil.WriteTo(forged, to); err != nil {
			t.Fatal(err)
		}
		// From the executor's own address, the right ID, another question.
		other := forge(mustPackMsg(t, q), func(m *dns.Msg) { m.Question[0].Name = "mail.proteus.lab." })
		if _, err := h.pc.WriteTo(other, to); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the forgeries arrive first
	close(a.release)
	close(b.release)
	r := <-got
	if r == nil || !slices.Equal(aRecords(r), []string{trueWWW}) || strings.Contains(r.String(), forgedWWW) {
		t.Fatalf("client got %v", r)
	}
	g.Wait()
	for _, d := range ev.of(voter.EventDissent) {
		if d.Subject != "evil" {
			t.Errorf("an honest executor dissents (its ask was answered by a forgery): %s %v", d.Subject, d.Attrs)
		}
	}
	if s := g.Trust().Score("a") + g.Trust().Score("b"); s != 2 {
		t.Errorf("honest executors' trust %v, want 1 each", s)
	}
}

func mustPackMsg(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
