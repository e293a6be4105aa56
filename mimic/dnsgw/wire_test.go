package dnsgw

import (
	"hash/maphash"
	"testing"

	"github.com/miekg/dns"
)

// TestParseAnswer: parseAnswer takes the common answers (compressed or not, with the front's
// cookie echoed) and leaves to miekg/dns every one that is not an answer to the question
// asked, or that it does not read whole.
func TestParseAnswer(t *testing.T) {
	client := new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA)
	p, err := packQuery(client, 1232, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	qwire := p.wire[12:p.qend]
	cookie := [8]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	answer := func(change func(*dns.Msg)) []byte {
		m := new(dns.Msg)
		m.Id, m.Response, m.Authoritative, m.Compress = 0x1234, true, true, true
		m.Question = []dns.Question{{Name: "WWW.Proteus.lab.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
		m.Answer = []dns.RR{rr("www.proteus.lab. 300 IN A 192.0.2.10"), rr("www.proteus.lab. 300 IN A 192.0.2.11")}
		m.Ns = []dns.RR{rr("proteus.lab. 3600 IN NS ns1.proteus.lab.")}
		m.Extra = []dns.RR{rr("ns1.proteus.lab. 3600 IN A 192.0.2.53")}
		m.SetEdns0(1232, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef00112233445566778899aabbccddeeff"})
		if change != nil {
			change(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seed := maphash.MakeSeed()
	var n normalized
	taken := map[string][]byte{
		"compressed":   answer(nil),
		"uncompressed": answer(func(m *dns.Msg) { m.Compress = false }),
		"no EDNS":      answer(func(m *dns.Msg) { m.Extra = m.Extra[:1] }),
		"NXDOMAIN": answer(func(m *dns.Msg) {
			m.Rcode, m.Answer = dns.RcodeNameError, nil
			m.Ns = []dns.RR{rr("proteus.lab. 300 IN SOA ns1.proteus.lab. hostmaster.proteus.lab. 1 3600 600 86400 300")}
		}),
		"CNAME, MX, TXT, AAAA": answer(func(m *dns.Msg) {
			m.Answer = []dns.RR{rr("www.proteus.lab. 300 IN CNAME Web.proteus.lab."), rr("www.proteus.lab. 300 IN MX 10 mail.proteus.lab."),
				rr(`www.proteus.lab. 300 IN TXT "a" "b c"`), rr("www.proteus.lab. 300 IN AAAA 2001:db8::1")}
		}),
	}
	for name, b := range taken {
		if !parseAnswer(b, qwire, &cookie, 0x1234, seed, &n) {
			t.Errorf("%s: not taken", name)
			continue
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		want, err := normalize(seed, m)
		if err != nil {
			t.Fatal(err)
		}
		sameNormalized(t, &n, want)
	}
	left := map[string][]byte{
		"another ID":      answer(func(m *dns.Msg) { m.Id++ }),
		"another name":    answer(func(m *dns.Msg) { m.Question[0].Name = "mail.proteus.lab." }),
		"another type":    answer(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }),
		"a query":         answer(func(m *dns.Msg) { m.Response = false }),
		"truncated":       answer(func(m *dns.Msg) { m.Truncated = true }),
		"a wrong cookie":  answer(func(m *dns.Msg) { m.IsEdns0().Option[0].(*dns.EDNS0_COOKIE).Cookie = "0123456789abcdee" }),
		"a short cookie":  answer(func(m *dns.Msg) { m.IsEdns0().Option[0].(*dns.EDNS0_COOKIE).Cookie = "01234567" }),
		"extended rcode":  answer(func(m *dns.Msg) { m.Rcode = dns.RcodeBadCookie }),
		"two OPT records": answer(func(m *dns.Msg) { m.Extra = append(m.Extra, m.Extra[1]) }),
		"an unknown type": answer(func(m *dns.Msg) {
			m.Answer = append(m.Answer, rr("www.proteus.lab. 300 IN CAA 0 issue \"ca.example\""))
		}),
		"OPT in answers":    answer(func(m *dns.Msg) { m.Answer = append(m.Answer, m.Extra[1]) }),
		"other EDNS option": answer(func(m *dns.Msg) { m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: 3}) }),
	}
	trailing := append(answer(nil), 0)
	left["a byte after the last record"] = trailing
	short := answer(nil)
	left["cut short"] = short[:len(short)-3]
	loop := answer(func(m *dns.Msg) { m.Compress = false })
	loop[12], loop[13] = 0xc0, 12 // the question's name points at itself
	left["a compression loop"] = loop
	for name, b := range left {
		if parseAnswer(b, qwire, &cookie, 0x1234, seed, &n) {
			t.Errorf("%s: taken", name)
		}
	}
}
