package dnsgw

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// goServer serves one A record for every question over UDP (an in-process executor, so a
// profile of the benchmark shows the front's own work beside it).
func goServer(b *testing.B) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	rr, _ := dns.NewRR("www.proteus.lab. 300 IN A 192.0.2.10")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	b.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// BenchmarkVote3 is one voted query over UDP, three in-process executors (go test -bench
// Vote3 -cpuprofile ... shows where the front's CPU goes).
func BenchmarkVote3(b *testing.B) {
	var ms voter.Static
	for i := range 3 {
		ms = append(ms, voter.Member{ID: string(rune('a' + i)), Variant: "go", Addr: goServer(b)})
	}
	g, err := New(Options{Backends: ms, Rate: -1})
	if err != nil {
		b.Fatal(err)
	}
	addr, err := g.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Close)
	q := new(dns.Msg).SetQuestion("www.proteus.lab.", dns.TypeA)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := dns.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		for pb.Next() {
			if err := c.WriteMsg(q); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.ReadMsg(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
