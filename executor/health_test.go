package executor

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer serves handler over UDP and TCP on one loopback port and returns its address.
func dnsServer(t *testing.T, handler dns.HandlerFunc) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
			go s.ActivateAndServe()
			t.Cleanup(func() { s.Shutdown() })
		}
		return pc.LocalAddr().String()
	}
	t.Fatal("no free port")
	return ""
}

// The DNS health probe accepts only a real answer to its question over both transports: a
// server that fails, answers empty, answers another question, or stays silent is unhealthy.
func TestCheckDNS(t *testing.T) {
	q := DNSQuery{Name: "www.proteus.lab.", Type: dns.TypeA}
	answer := func(mod func(r, m *dns.Msg)) dns.HandlerFunc {
		return func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg).SetReply(r)
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.ParseIP("192.0.2.10")}}
			if mod != nil {
				mod(r, m)
			}
			w.WriteMsg(m)
		}
	}
	onlyUDP := func(w dns.ResponseWriter, r *dns.Msg) {
		if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
			m := new(dns.Msg).SetRcode(r, dns.RcodeRefused)
			w.WriteMsg(m)
			return
		}
		answer(nil)(w, r)
	}
	cases := []struct {
		name    string
		handler dns.HandlerFunc
		want    string // "" healthy
	}{
		{"healthy", answer(nil), ""},
		{"servfail", answer(func(_, m *dns.Msg) { m.Rcode, m.Answer = dns.RcodeServerFailure, nil }), "rcode SERVFAIL"},
		{"no records", answer(func(_, m *dns.Msg) { m.Answer = nil }), "no answer records"},
		{"another question", answer(func(_, m *dns.Msg) { m.Question[0].Name = "evil.example." }), "not an answer to the question asked"},
		{"udp only", onlyUDP, "tcp www.proteus.lab. A"},
		{"silent", func(dns.ResponseWriter, *dns.Msg) {}, "udp www.proteus.lab. A"},
	}
	h := NewHealthChecker(300 * time.Millisecond)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inst := &Instance{ID: "x", Address: dnsServer(t, c.handler)}
			err := h.Probe(context.Background(), inst, Spec{HealthQuery: &q})
			if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("probe = %v, want %q", err, c.want)
			}
			if c.name == "servfail" && !errors.Is(err, ErrUnhealthyAnswer) {
				t.Fatalf("%v is not ErrUnhealthyAnswer", err)
			}
		})
	}
}
