package dnsgw

import (
	"bytes"
	"hash/maphash"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func msgOf(t *testing.T, mutate func(*dns.Msg), rrs ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA)
	m.Response = true
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	if mutate != nil {
		mutate(m)
	}
	// through the wire, as an executor's answer arrives
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := new(dns.Msg)
	if err := out.Unpack(b); err != nil {
		t.Fatal(err)
	}
	return out
}

// What legitimately differs between servers leaves the key alone; what an attacker changes does not.
func TestNormalizeKey(t *testing.T) {
	seed := maphash.MakeSeed()
	key := func(m *dns.Msg) uint64 {
		n, err := normalize(seed, m)
		if err != nil {
			t.Fatal(err)
		}
		return n.key
	}
	base := key(msgOf(t, nil, "www.proteus.lab. 300 IN A 192.0.2.1", "www.proteus.lab. 300 IN A 192.0.2.2",
		"mx.proteus.lab. 300 IN MX 10 Mail.Proteus.Lab."))
	same := map[string]*dns.Msg{
		"id, flags": msgOf(t, func(m *dns.Msg) {
			m.Id, m.Authoritative, m.RecursionAvailable, m.AuthenticatedData = 4242, true, true, true
		}, "www.proteus.lab. 300 IN A 192.0.2.1", "www.proteus.lab. 300 IN A 192.0.2.2", "mx.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
		"order, case, ttl": msgOf(t, nil, "MX.proteus.LAB. 17 IN MX 10 mail.proteus.lab.", "WWW.Proteus.Lab. 3 IN A 192.0.2.2",
			"www.proteus.lab. 299 IN A 192.0.2.1"),
		"edns options, additional": msgOf(t, func(m *dns.Msg) {
			m.SetEdns0(4096, true)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7364"},
				&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef0123456789abcdef"}, &dns.EDNS0_PADDING{Padding: make([]byte, 40)})
			glue, _ := dns.NewRR("mail.proteus.lab. 300 IN A 192.0.2.25")
			m.Extra = append(m.Extra, glue)
			ns, _ := dns.NewRR("proteus.lab. 300 IN NS ns1.proteus.lab.")
			m.Ns = append(m.Ns, ns) // authority beside a non-empty answer: not voted
		}, "www.proteus.lab. 300 IN A 192.0.2.1", "www.proteus.lab. 300 IN A 192.0.2.2", "mx.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
		"a duplicate record": msgOf(t, nil, "www.proteus.lab. 300 IN A 192.0.2.1", "www.proteus.lab. 300 IN A 192.0.2.2",
			"www.proteus.lab. 300 IN A 192.0.2.2", "mx.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
	}
	for name, m := range same {
		if key(m) != base {
			t.Errorf("%s: a different key", name)
		}
	}
	differ := map[string]*dns.Msg{
		"forged address": msgOf(t, nil, "www.proteus.lab. 300 IN A 203.0.113.66", "www.proteus.lab. 300 IN A 192.0.2.2",
			"mx.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
		"record added": msgOf(t, nil, "www.proteus.lab. 300 IN A 192.0.2.1", "www.proteus.lab. 300 IN A 192.0.2.2",
			"www.proteus.lab. 300 IN A 192.0.2.3", "mx.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
		"mail exchanger": msgOf(t, nil, "www.proteus.lab. 300 IN A 192.0.2.1", "www.proteus.lab. 300 IN A 192.0.2.2",
			"mx.proteus.lab. 300 IN MX 10 evil.proteus.lab."),
		"rcode": msgOf(t, func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure }, "www.proteus.lab. 300 IN A 192.0.2.1",
			"www.proteus.lab. 300 IN A 192.0.2.2", "mx.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
	}
	for name, m := range differ {
		if key(m) == base {
			t.Errorf("%s: the same key", name)
		}
	}
	// Negative answers: the authority section's SOA takes part.
	nx := func(soa string) uint64 {
		return key(msgOf(t, func(m *dns.Msg) {
			m.Rcode = dns.RcodeNameError
			rr, _ := dns.NewRR(soa)
			m.Ns = []dns.RR{rr}
		}))
	}
	if nx("proteus.lab. 300 IN SOA ns1.proteus.lab. hostmaster.proteus.lab. 1 3600 600 86400 300") !=
		nx("Proteus.Lab. 12 IN SOA NS1.proteus.lab. Hostmaster.proteus.lab. 1 3600 600 86400 300") {
		t.Error("NXDOMAIN: case and TTL of the SOA counted")
	}
	if nx("proteus.lab. 300 IN SOA ns1.proteus.lab. hostmaster.proteus.lab. 1 3600 600 86400 300") ==
		nx("evil.lab. 300 IN SOA ns1.evil.lab. hostmaster.evil.lab. 1 3600 600 86400 300") {
		t.Error("NXDOMAIN: another zone's SOA not counted")
	}
}

// The executors' question packed by hand is the message upstreamQuery builds, byte for byte.
func TestUpstreamWire(t *testing.T) {
	for _, name := range []string{"www.proteus.lab.", "WwW.Proteus.LAB.", ".", `a\.b\032c.proteus.lab.`, strings.Repeat("x", 63) + "." + strings.Repeat("y", 63) + "."} {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, 65280} {
			for bits := range 16 {
				r := new(dns.Msg).SetQuestion(name, qtype)
				r.RecursionDesired, r.CheckingDisabled = bits&1 != 0, bits&2 != 0
				if bits&4 != 0 {
					r.SetEdns0(4096, bits&8 != 0)
				}
				for _, size := range []int{512, 1232, 4096} {
					want, err := upstreamQuery(r, size, "0123456789abcdef").Pack()
					if err != nil {
						t.Fatal(err)
					}
					p, err := packQuery(r, size, "0123456789abcdef")
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(p.wire, want) {
						t.Fatalf("%s %d bits %b size %d:\n%x\nwant\n%x", name, qtype, bits, size, p.wire, want)
					}
				}
			}
		}
	}
	if _, err := packQuery(new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA), 1232, "not hex"); err == nil {
		t.Error("a cookie that is not 8 bytes in hex packed")
	}
}
