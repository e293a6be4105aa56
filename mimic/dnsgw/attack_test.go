package dnsgw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

func TestTruncationAndTCPFallback(t *testing.T) {
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, trueWWW), startBIND(t, trueWWW)
	_, addr, _ := gateway(t, Options{K: 3, Quorum: 3, UDPSize: 1232}, nsd, knot, bind)
	for _, tc := range []struct {
		edns      int
		truncated bool
		limit     int
	}{{0, true, 512}, {600, true, 600}, {1232, true, 1232}, {4096, true, 1232}} {
		r := ask(t, "udp", addr, "big.proteus.lab.", dns.TypeTXT, tc.edns)
		r.Compress = true // as it came: Len counts the compressed size
		if r.Truncated != tc.truncated || r.Len() > tc.limit {
			t.Errorf("udp, EDNS %d: TC %v, %d bytes, want TC %v within %d", tc.edns, r.Truncated, r.Len(), tc.truncated, tc.limit)
		}
	}
	if r := ask(t, "udp", addr, "txt.proteus.lab.", dns.TypeTXT, 0); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("a small answer over udp: TC %v, %d records", r.Truncated, len(r.Answer))
	}
	r := ask(t, "tcp", addr, "big.proteus.lab.", dns.TypeTXT, 0)
	if r.Truncated || len(r.Answer) != bigTXTRecs {
		t.Errorf("tcp: TC %v, %d records, want all %d", r.Truncated, len(r.Answer), bigTXTRecs)
	}
}

// A stopped server times out: an availability dissent each time until it is ejected, and the
// two others still decide.
func TestTimeoutIsAvailabilityDissent(t *testing.T) {
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, trueWWW), startBIND(t, trueWWW)
	g, addr, ev := gateway(t, Options{K: 3, Quorum: 2, Timeout: 3 * time.Second, EjectAfter: 3, EjectFor: time.Hour}, nsd, knot, bind)
	if err := syscall.Kill(-knot.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if r := ask(t, "udp", addr, "www.proteus.lab.", dns.TypeA, 0); !slices.Equal(aRecords(r), []string{trueWWW}) {
			t.Fatalf("query %d with knot stopped: %v", i, r)
		}
		g.Wait() // the stopped server's timeout is counted before the next query
	}
	syscall.Kill(-knot.cmd.Process.Pid, syscall.SIGCONT)
	var fromKnot int
	for _, d := range ev.of(voter.EventDissent) {
		if d.Subject != knot.member().ID {
			t.Errorf("dissent from a server that was not stopped (slower than 3 s?): %s %v", d.Subject, d.Attrs)
			continue
		}
		fromKnot++
		if d.Attrs["kind"] != voter.DissentAvailability || !strings.Contains(d.Attrs["error"].(string), "deadline") {
			t.Errorf("dissent: %s %v", d.Subject, d.Attrs)
		}
	}
	if fromKnot != 3 {
		t.Errorf("%d dissent events from the stopped server, want 3 (then it is ejected)", fromKnot)
	}
	if ej := ev.of(voter.EventEjected); len(ej) != 1 || ej[0].Subject != knot.member().ID {
		t.Errorf("ejection events: %v", ej)
	}
}

func TestNoQuorumIsServfail(t *testing.T) {
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, forgedWWW), startBIND(t, "198.51.100.7")
	g, addr, ev := gateway(t, Options{K: 3, Quorum: 2}, nsd, knot, bind)
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, addr, "www.proteus.lab.", dns.TypeA, 1232)
		if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
			t.Fatalf("%s: three different answers gave %s with %v", network, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
	g.Wait()
	nc := ev.of(voter.EventNoConsensus)
	if len(nc) != 2 {
		t.Fatalf("%d no-consensus events, want 2", len(nc))
	}
	if votes := nc[0].Attrs["votes"].([]any); len(votes) != 3 || nc[0].Attrs["query"] != "www.proteus.lab. A" {
		t.Errorf("no-consensus event: %v", nc[0].Attrs)
	}
	// The other records still agree.
	if r := ask(t, "udp", addr, "mail.proteus.lab.", dns.TypeMX, 0); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("mail MX: %v", r)
	}
}

// hostile is an executor that answers every query with what reply makes of it (nil: silence).
func hostile(t *testing.T, reply func(q []byte) []byte) *server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(append([]byte(nil), buf[:n]...)); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	return &server{name: "hostile", addr: pc.LocalAddr().String()}
}

// forge answers q with a records for www.
func forge(q []byte, mutate func(*dns.Msg)) []byte {
	m := new(dns.Msg)
	if m.Unpack(q) != nil {
		return nil
	}
	r := new(dns.Msg).SetReply(m)
	rr, _ := dns.NewRR("www.proteus.lab. 300 IN A " + forgedWWW)
	r.Answer = []dns.RR{rr}
	if mutate != nil {
		mutate(r)
	}
	b, _ := r.Pack()
	return b
}

// What a hostile executor sends never reaches the client: malformed answers, a compression
// loop, answers to another question or with another ID, an answer with the forged record in
// the additional section: the client gets the two honest servers' answer and the executor is
// reported.
func TestHostileExecutorAnswersNeverReachClient(t *testing.T) {
	t.Parallel()
	nsd, knot := startNSD(t, trueWWW), startKnot(t, trueWWW)
	loop := func(q []byte) []byte {
		// header with the query's ID, one question whose name is a pointer to itself
		b := append([]byte(nil), q[:2]...)
		b = append(b, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1)
		return b
	}
	cases := map[string]func(q []byte) []byte{
		"garbage":          func(q []byte) []byte { return append(append([]byte(nil), q[:2]...), "\xff\xff not dns at all"...) },
		"short":            func(q []byte) []byte { return q[:5] },
		"compression-loop": loop,
		"other-id":         func(q []byte) []byte { b := forge(q, nil); b[0] ^= 0xff; return b },
		"other-question":   func(q []byte) []byte { return forge(q, func(m *dns.Msg) { m.Question[0].Name = "evil.proteus.lab." }) },
		"not-a-response":   func(q []byte) []byte { return forge(q, func(m *dns.Msg) { m.Response = false }) },
		"other-cookie": func(q []byte) []byte { // the true record, but not an answer to our query
			return forge(q, func(m *dns.Msg) {
				rr, _ := dns.NewRR("www.proteus.lab. 300 IN A 192.0.2.10")
				m.Answer = []dns.RR{rr}
				m.SetEdns0(1232, false)
				m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "00112233445566778899aabbccddeeff"}}
			})
		},
		"glue-in-additional": func(q []byte) []byte {
			return forge(q, func(m *dns.Msg) {
				rr, _ := dns.NewRR("www.proteus.lab. 300 IN A 192.0.2.10")
				m.Extra, m.Answer = m.Answer, []dns.RR{rr}
			})
		},
		"silent": func([]byte) []byte { return nil },
		"oversized": func(q []byte) []byte { // 2,000 forged records in one 32 KiB datagram
			return forge(q, func(m *dns.Msg) {
				for i := range 2000 {
					rr, _ := dns.NewRR(fmt.Sprintf("www.proteus.lab. 604800 IN A 203.0.%d.%d", i/250, i%250))
					m.Answer = append(m.Answer, rr)
				}
			})
		},
	}
	for name, reply := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // a datagram refused for its content leaves the ask waiting: each case waits its timeout
			h := hostile(t, reply)
			g, addr, ev := gateway(t, Options{K: 3, Quorum: 2, Timeout: 5 * time.Second, EjectAfter: -1}, nsd, knot, h)
			for _, network := range []string{"udp", "tcp"} {
				r := ask(t, network, addr, "www.proteus.lab.", dns.TypeA, 1232)
				if !slices.Equal(aRecords(r), []string{trueWWW}) || strings.Contains(r.String(), forgedWWW) {
					t.Fatalf("%s: %v", network, r)
				}
			}
			g.Wait()
			if name == "glue-in-additional" {
				if ds := ev.of(voter.EventDissent); len(ds) != 0 {
					t.Errorf("the additional section is not voted (and not forwarded), yet: %v", ds)
				}
				return
			}
			ds := ev.of(voter.EventDissent)
			if len(ds) != 2 {
				t.Fatalf("%d dissent events, want 2: %v", len(ds), ds)
			}
			kind := voter.DissentAvailability
			if name == "oversized" {
				kind = voter.DissentContent // an answer, if a forged one
			}
			for _, d := range ds {
				if d.Subject != "hostile-1" || d.Attrs["kind"] != kind {
					t.Errorf("dissent: %s %v", d.Subject, d.Attrs)
				}
			}
		})
	}
}

// A client that floods, sends malformed messages or stalls its TCP connections costs only
// itself: the gateway answers another client all along.
func TestAbusiveClients(t *testing.T) {
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, trueWWW), startBIND(t, trueWWW)
	g, addr, _ := gateway(t, Options{K: 3, Quorum: 2, Rate: 50, Burst: 50, MaxTCPPerClient: 4, TCPReadTimeout: 500 * time.Millisecond,
		MaxQueryBytes: 512}, nsd, knot, bind)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	other := "127.0.0.2:" + port // the well-behaved client asks from another loopback address
	goodAsk := func(what string) {
		t.Helper()
		for _, network := range []string{"udp", "tcp"} {
			local := map[string]net.Addr{"udp": &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}, "tcp": &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}[network]
			c := dns.Client{Net: network, Timeout: 20 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 20 * time.Second}}
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA), addr)
			if err != nil || !slices.Equal(aRecords(r), []string{trueWWW}) {
				t.Fatalf("%s: the other client over %s got %v, %v", what, network, r, err)
			}
		}
	}
	_ = other

	// A flood from one address: bounded (rate and burst 50), the rest dropped unanswered.
	uc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	q, _ := new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA).Pack()
	const flood = 2000
	began := time.Now()
	for range flood {
		uc.Write(q)
	}
	answered, last := 0, began
	buf := make([]byte, 4096)
	for {
		uc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := uc.Read(buf); err != nil {
			break
		}
		answered, last = answered+1, time.Now()
	}
	// At most the burst and what the rate (50/s) refilled while the flood was being handled.
	if allowed := 50 + int(50*last.Sub(began).Seconds()) + 1; answered == 0 || answered > allowed {
		t.Errorf("flood of %d: %d answered, want 1..%d", flood, answered, allowed)
	}
	goodAsk("during a flood")

	// Malformed and refused messages, each from a fresh address's worth of tokens.
	bad := map[string]struct {
		msg   []byte
		rcode int // -1: no answer at all
	}{
		"garbage":        {[]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fthis is not a name"), dns.RcodeFormatError},
		"short-header":   {[]byte{1, 2, 3}, -1},
		"response-bit":   {mustPack(func(m *dns.Msg) { m.Response = true }), -1},
		"two-questions":  {mustPack(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), dns.RcodeFormatError},
		"notify":         {mustPack(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented},
		"axfr":           {mustPack(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }), dns.RcodeRefused},
		"chaos-class":    {mustPack(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused},
		"edns-version-1": {mustPack(func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }), dns.RcodeBadVers},
		"oversized":      {append(mustPack(nil), make([]byte, 600)...), -1},
		"compression-loop": {func() []byte {
			return []byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}
		}(), dns.RcodeFormatError},
	}
	for name, b := range bad {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 4)}, net.UDPAddrFromAddrPort(mustAddrPort(addr)))
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b.msg)
		wait := 20 * time.Second // an answer is due: generous on a loaded machine
		if b.rcode < 0 {
			wait = time.Second // silence is due: a late answer would go unseen, not fail
		}
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		c.Close()
		switch {
		case b.rcode < 0 && err == nil:
			t.Errorf("%s: answered (%d bytes), want silence", name, n)
		case b.rcode >= 0 && err != nil:
			t.Errorf("%s: no answer (%v), want %s", name, err, dns.RcodeToString[b.rcode])
		case b.rcode >= 0:
			m := new(dns.Msg)
			if err := m.Unpack(buf[:n]); err != nil {
				// A FORMERR for an unparsable message carries only the header.
				if h := binary.BigEndian.Uint16(buf[2:4]); int(h&0xf) != b.rcode {
					t.Errorf("%s: answer rcode %d, want %s", name, h&0xf, dns.RcodeToString[b.rcode])
				}
				continue
			}
			if m.Rcode != b.rcode || len(m.Answer) > 0 {
				t.Errorf("%s: %s with %d answers, want %s", name, dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[b.rcode])
			}
		}
	}
	if g.Malformed() == 0 {
		t.Error("malformed messages not counted")
	}
	goodAsk("after malformed messages")

	// Stalled TCP clients: connections that send nothing, or half a length, are closed after
	// the read timeout; beyond four at once from one address they are closed at once.
	var stalled []net.Conn
	for i := range 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			c.Write([]byte{0}) // half of a length prefix
		}
		stalled = append(stalled, c)
	}
	closed := 0
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(buf); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			closed++
		}
		c.Close()
	}
	if closed != len(stalled) {
		t.Errorf("%d of %d stalled connections closed by the gateway", closed, len(stalled))
	}
	goodAsk("after stalled connections")
}

func mustPack(mutate func(*dns.Msg)) []byte {
	m := new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA)
	if mutate != nil {
		mutate(m)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TTLs that differ within the tolerance are not dissent and the client gets the lowest; a TTL
// far beyond the others (a forged record made to stay in caches for a week) is reported, and
// its TTL never reaches the client either.
func TestTTLToleranceAndTheLowestTTL(t *testing.T) {
	t.Parallel()
	nsd, knot := startNSDZone(t, testZoneTTL(trueWWW, 300)), startKnotZone(t, testZoneTTL(trueWWW, 240))
	bind := startBINDZone(t, testZoneTTL(trueWWW, 604800))
	g, addr, ev := gateway(t, Options{K: 3, Quorum: 3, TTLTolerance: 120 * time.Second}, nsd, knot, bind)
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, network, addr, "www.proteus.lab.", dns.TypeA, 0)
		if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 240 {
			t.Fatalf("%s: %v, want www with TTL 240, the lowest", network, r.Answer)
		}
	}
	g.Wait()
	ds := ev.of(voter.EventDissent)
	if len(ds) != 2 {
		t.Fatalf("%d dissent events, want 2 (bind's week-long TTL, once per query): %v", len(ds), ds)
	}
	for _, d := range ds {
		diff, _ := d.Attrs["differs"].(Differs)
		if d.Subject != bind.member().ID || !strings.HasPrefix(diff.TTL, "604800, want at most 240+120") {
			t.Errorf("dissent: %s %v", d.Subject, d.Attrs)
		}
	}
}
