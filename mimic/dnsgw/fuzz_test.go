package dnsgw

import (
	"bytes"
	"hash/maphash"
	"testing"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// FuzzClientQuery: whatever a client sends, the front either refuses it (the server's header
// check, the parser, validQuery) or asks the executors a question it built itself, which
// packs and parses again to the same question and carries nothing of the client's message
// but the question and its RD, CD and DO bits.
func FuzzClientQuery(f *testing.F) {
	f.Add(mustPack(nil))
	f.Add(mustPack(func(m *dns.Msg) { m.SetEdns0(4096, true) }))
	f.Add([]byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	f.Add(mustPack(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 12 {
			return
		}
		var h dns.Header
		h.Id = uint16(data[0])<<8 | uint16(data[1])
		h.Bits = uint16(data[2])<<8 | uint16(data[3])
		h.Qdcount, h.Ancount = uint16(data[4])<<8|uint16(data[5]), uint16(data[6])<<8|uint16(data[7])
		h.Nscount, h.Arcount = uint16(data[8])<<8|uint16(data[9]), uint16(data[10])<<8|uint16(data[11])
		if acceptQuery(h) != dns.MsgAccept {
			return
		}
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		if rcode, _ := validQuery(m); rcode != dns.RcodeSuccess {
			return
		}
		up := upstreamQuery(m, 1232, "0123456789abcdef")
		wire, err := up.Pack()
		if err != nil {
			t.Fatalf("the executors' question does not pack: %v\n%v", err, up)
		}
		p, err := packQuery(m, 1232, "0123456789abcdef")
		if err != nil {
			t.Fatalf("packQuery: %v", err)
		}
		if !bytes.Equal(p.wire, wire) {
			t.Fatalf("packQuery:\n%x\nwant\n%x", p.wire, wire)
		}
		back := new(dns.Msg)
		if err := back.Unpack(wire); err != nil {
			t.Fatalf("the executors' question does not parse: %v", err)
		}
		if len(back.Question) != 1 || back.Question[0] != m.Question[0] || len(back.Answer)+len(back.Ns) != 0 || len(back.Extra) != 1 {
			t.Fatalf("question changed or records added: %v from %v", back, m)
		}
		if o := back.IsEdns0(); o == nil || len(o.Option) != 2 || o.Option[0].String() != "" || o.Option[1].String() != "0123456789abcdef" {
			t.Fatalf("EDNS options other than the gateway's own: %v", back.Extra)
		}
	})
}

// FuzzExecutorAnswer: whatever an executor sends, it is refused with an error or it is an
// answer to the question whose normalized form the vote compares, and the client's answer
// built from it packs, parses, and holds only records that took part in the vote.
func FuzzExecutorAnswer(f *testing.F) {
	q := upstreamQuery(new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA), 1232, "0123456789abcdef")
	q.Id = 0x1234
	good := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR("www.proteus.lab. 300 IN A 192.0.2.10")
	good.Answer = []dns.RR{rr}
	b, _ := good.Pack()
	f.Add(b)
	good.Answer, good.Rcode = nil, dns.RcodeNameError
	soa, _ := dns.NewRR("proteus.lab. 300 IN SOA ns1.proteus.lab. hostmaster.proteus.lab. 1 3600 600 86400 300")
	good.Ns = []dns.RR{soa}
	b, _ = good.Pack()
	f.Add(b)
	f.Add([]byte{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	good.Rcode, good.Ns = dns.RcodeSuccess, nil // records in mixed case, with and without names in their data
	for _, s := range []string{"WWW.proteus.lab. 300 IN A 192.0.2.10", "www.proteus.lab. 300 IN AAAA 2001:db8::1",
		"www.proteus.lab. 300 IN TXT \"Mixed Case\"", "www.proteus.lab. 300 IN CNAME Web.Proteus.Lab.",
		"www.proteus.lab. 300 IN MX 10 Mail.proteus.lab."} {
		rr, _ := dns.NewRR(s)
		good.Answer = append(good.Answer, rr)
	}
	b, _ = good.Pack()
	f.Add(b)
	good.Compress = true // compressed, with authority and additional records and the front's cookie echoed
	ns, _ := dns.NewRR("proteus.lab. 3600 IN NS NS1.proteus.lab.")
	glue, _ := dns.NewRR("ns1.proteus.lab. 3600 IN A 192.0.2.53")
	srv, _ := dns.NewRR("www.proteus.lab. 300 IN SRV 0 5 80 Web.proteus.lab.")
	good.Answer, good.Ns = append(good.Answer, srv), []dns.RR{ns}
	good.Extra = []dns.RR{glue}
	good.SetEdns0(1232, true)
	opt := good.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7364"},
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef0011223344556677"})
	b, _ = good.Pack()
	f.Add(b)
	good.Answer, good.Rcode, good.Ns = nil, dns.RcodeNameError, []dns.RR{soa} // NXDOMAIN, compressed, with OPT
	b, _ = good.Pack()
	f.Add(b)
	seed := maphash.MakeSeed()
	client := new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA)
	client.SetEdns0(1232, false)
	p, err := packQuery(client, 1232, "0123456789abcdef")
	if err != nil {
		f.Fatal(err)
	}
	qwire := p.wire[12:p.qend]
	cookie := [8]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	var fast normalized
	f.Fuzz(func(t *testing.T, data []byte) {
		fastOK := parseAnswer(data, qwire, &cookie, q.Id, seed, &fast)
		a := new(dns.Msg)
		if a.Unpack(data) != nil || checkAnswer(a, q.Question[0], "0123456789abcdef", q.Id) != nil || a.Truncated {
			if fastOK {
				t.Fatalf("parseAnswer took what miekg/dns and checkAnswer refuse: %x", data)
			}
			return
		}
		n, err := normalize(seed, a)
		if err != nil {
			if fastOK {
				t.Fatalf("parseAnswer took what normalize refuses (%v): %x", err, data)
			}
			return
		}
		if fastOK {
			sameNormalized(t, &fast, n)
		}
		for _, rrs := range votedSections(a) {
			for _, rr := range rrs {
				w, err := canonical(rr)
				if slow, serr := canonicalCopy(rr); (err == nil) != (serr == nil) || !bytes.Equal(w, slow) {
					t.Fatalf("canonical %v:\n%x (%v)\nby a copy:\n%x (%v)", rr, w, err, slow, serr)
				}
			}
		}
		g := &Gateway{o: Options{UDPSize: 1232}}
		m := g.answer(client, []voter.Answer[*normalized, uint64]{{Value: n, Key: n.key}})
		wire, err := m.Pack()
		if err != nil {
			t.Fatalf("the client's answer does not pack: %v", err)
		}
		if fastOK { // decide packs answer's message without compression first
			m.Compress = false
			plain, err := m.Pack()
			m.Compress = true
			built, ok := answerWire(nil, client, qwire, []voter.Answer[*normalized, uint64]{{Value: &fast, Key: fast.key}}, 1232, dns.MaxMsgSize)
			if err != nil || !ok || !bytes.Equal(built, plain) {
				t.Fatalf("answerWire (%v):\n%x\nwant what answer packs to uncompressed (%v):\n%x", ok, built, err, plain)
			}
		}
		back := new(dns.Msg)
		if err := back.Unpack(wire); err != nil {
			t.Fatalf("the client's answer does not parse: %v", err)
		}
		for _, rr := range append(append([]dns.RR{}, back.Answer...), back.Ns...) {
			w, err := canonical(rr)
			if err != nil {
				t.Fatal(err)
			}
			if slow, err := canonicalCopy(rr); err != nil || !bytes.Equal(w, slow) {
				t.Fatalf("canonical %v:\n%x\nby a copy:\n%x (%v)", rr, w, slow, err)
			}
			found := false
			for _, r := range n.recs {
				found = found || bytes.Equal(n.canon(r), w)
			}
			if !found {
				t.Fatalf("record %v not among the voted ones", rr)
			}
		}
		for _, rr := range back.Extra {
			if rr.Header().Rrtype != dns.TypeOPT {
				t.Fatalf("additional record forwarded: %v", rr)
			}
		}
		m.Truncate(dns.MinMsgSize) // an oversized answer to a UDP client without EDNS
		if wire, err := m.Pack(); err != nil || len(wire) > dns.MinMsgSize {
			t.Fatalf("truncated answer: %d bytes, %v", len(wire), err)
		}
	})
}

// sameNormalized fails t unless parseAnswer's got is what normalize made of the same answer.
func sameNormalized(t *testing.T, got, want *normalized) {
	t.Helper()
	if got.rcode != want.rcode || got.aa != want.aa || got.ra != want.ra || got.ad != want.ad || got.key != want.key || len(got.recs) != len(want.recs) {
		t.Fatalf("parseAnswer: rcode %d aa %v ra %v ad %v key %x, %d records; normalize: %d %v %v %v %x, %d",
			got.rcode, got.aa, got.ra, got.ad, got.key, len(got.recs), want.rcode, want.aa, want.ra, want.ad, want.key, len(want.recs))
	}
	for i, r := range got.recs {
		w := want.recs[i]
		if !bytes.Equal(got.canon(r), want.canon(w)) || r.ttl != w.ttl || r.sec != w.sec || r.idx != w.idx {
			t.Fatalf("record %d: parseAnswer %x ttl %d sec %d idx %d; normalize %x ttl %d sec %d idx %d",
				i, got.canon(r), r.ttl, r.sec, r.idx, want.canon(w), w.ttl, w.sec, w.idx)
		}
	}
}
