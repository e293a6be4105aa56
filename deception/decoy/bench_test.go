package decoy

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/proteus-defense/proteus/config"
)

// BenchmarkConnection is one scanner connection to an SSH decoy: connect, read the greeting,
// send an identification line, hang up, and the event read from the sensor (client and
// decoy both in this process, so B/op and allocs/op count both sides).
func BenchmarkConnection(b *testing.B) {
	_, out, addrs := start(b, config.Decoy{}, "ssh")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", addrs["ssh"])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		fmt.Fprint(c, "SSH-2.0-x\r\n")
		c.Close()
		<-out
	}
}

// BenchmarkHeldFlood holds b.N connections open against decoys with max_conns 64 and the
// default read_bytes and timeout, and reports the live heap the decoy process holds per
// connection and in total, with the connections still open (clients in the same process).
func BenchmarkHeldFlood(b *testing.B) {
	s, _, addrs := start(b, config.Decoy{MaxConns: 64}, "ssh")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, b.N)
	for range b.N {
		c, err := net.Dial("tcp", addrs["ssh"])
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		_, _ = bufio.NewReader(c).ReadString('\n') // greeted, or closed when shed
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heap-B/conn")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse)), "heap-B")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
	b.ReportMetric(float64(s.Counters()["shed"]), "shed")
	for _, c := range conns {
		c.Close()
	}
}
