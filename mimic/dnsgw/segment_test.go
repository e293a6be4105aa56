package dnsgw

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestSegmentRuns(t *testing.T) {
	many := func(n, size int) []int { return slices.Repeat([]int{size}, n) }
	for _, c := range []struct {
		name  string
		sizes []int
		want  [][]int // the sizes of each run, in order
	}{
		{"one", []int{40}, [][]int{{40}}},
		{"equal", []int{40, 40, 40}, [][]int{{40, 40, 40}}},
		{"sorted, one shorter ends a run", []int{30, 40, 40, 30}, [][]int{{40, 40, 30}, {30}}},
		{"every size its own run", []int{10, 20, 30}, [][]int{{30, 20}, {10}}},
		{"at most maxSegments", many(maxSegments+1, 40), [][]int{many(maxSegments, 40), {40}}},
		{"at most maxSegmentedBytes", many(60, 1100), [][]int{many(54, 1100), many(6, 1100)}},
		{"above maxSegment alone", []int{maxSegment + 1, maxSegment + 1, 40, 40}, [][]int{{maxSegment + 1}, {maxSegment + 1}, {40, 40}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			items := make([]outAsk, len(c.sizes))
			for i, n := range c.sizes {
				items[i] = outAsk{b: make([]byte, n)}
			}
			ends := segmentRuns(items, askBytes, sameSocket, nil)
			var got [][]int
			from := 0
			for _, end := range ends {
				var run []int
				for _, a := range items[from:end] {
					run = append(run, len(a.b))
				}
				got = append(got, run)
				from = end
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("runs %v, want %v", got, c.want)
			}
		})
	}

	// answers: one client's datagrams never share a run with another's
	a, b := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1000}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1001}
	replies := []outReply{{b: make([]byte, 50), to: a}, {b: make([]byte, 50), to: b}, {b: make([]byte, 50), to: a}, {b: make([]byte, 40), to: b}}
	ends := segmentRuns(replies, replyBytes, byClient, nil)
	from := 0
	for _, end := range ends {
		for _, r := range replies[from:end] {
			if r.to != replies[from].to {
				t.Errorf("a run to %v holds a datagram to %v", replies[from].to, r.to)
			}
		}
		from = end
	}
	if len(ends) != 2 {
		t.Errorf("%d runs for two clients, want 2", len(ends))
	}
}

// receiver is a UDP socket on loopback collecting what it reads.
type receiver struct {
	c   *net.UDPConn
	got chan []byte
}

func newReceiver(t *testing.T) *receiver {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &receiver{c: c, got: make(chan []byte, 1024)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			r.got <- bytes.Clone(buf[:n])
		}
	}()
	return r
}

// expect reads len(want) datagrams and checks they are want's, in any order.
func (r *receiver) expect(t *testing.T, want [][]byte) {
	t.Helper()
	var got [][]byte
	for range want {
		select {
		case b := <-r.got:
			got = append(got, b)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d datagrams arrived", len(got), len(want))
		}
	}
	sortBytes := func(s [][]byte) { slices.SortFunc(s, bytes.Compare) }
	sortBytes(got)
	w := slices.Clone(want)
	sortBytes(w)
	for i := range w {
		if !bytes.Equal(got[i], w[i]) {
			t.Fatalf("datagram %d: got %d bytes %x..., want %d bytes %x...", i, len(got[i]), got[i][:4], len(w[i]), w[i][:4])
		}
	}
	select {
	case b := <-r.got:
		t.Fatalf("a datagram more than was sent: %d bytes", len(b))
	case <-time.After(50 * time.Millisecond):
	}
}

// TestSegmentedDatagramsArriveWhole sends batches of answers of many sizes to two clients in
// segmented runs over real loopback sockets, then over a socket whose kernel refuses
// segmentation: each client reads exactly its own datagrams, byte for byte, either way.
func TestSegmentedDatagramsArriveWhole(t *testing.T) {
	sender, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	var u udpConn
	u.init(sender)
	var logged bytes.Buffer
	g := &Gateway{log: slog.New(slog.NewTextHandler(&logged, nil))}
	clients := []*receiver{newReceiver(t), newReceiver(t)}
	var o outbox
	send := func(round int) {
		t.Helper()
		var items []outReply
		want := make([][][]byte, len(clients))
		for i := range 40 {
			size := []int{12, 60, 60, 61, 300, 300, 300, maxSegment, maxSegment + 1, 1400}[(i*7+round)%10]
			b := bytes.Repeat([]byte{byte(i), byte(round)}, size/2+1)[:size]
			k := i % len(clients)
			items = append(items, outReply{b: b, to: clients[k].c.LocalAddr()})
			want[k] = append(want[k], b)
		}
		sendBatch(&o, g, &u, items, replyBytes, replyAddr, byClient, func(r outReply, err error) {
			t.Errorf("datagram of %d bytes to %v not sent: %v", len(r.b), r.to, err)
		})
		for k, c := range clients {
			c.expect(t, want[k])
		}
	}
	for round := range 3 {
		send(round)
	}
	if !u.segment.Load() {
		t.Fatal("the kernel refused segmentation over loopback")
	}

	// With checksums off, Linux refuses UDP segmentation (EINVAL): each run is sent again
	// one datagram at a time, and segmentation stays off for the socket.
	raw, err := sender.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_NO_CHECK, 1) })
	if err != nil {
		t.Fatal(err)
	}
	send(3)
	if u.segment.Load() {
		t.Error("segmentation still on after the kernel refused it")
	}
	send(4)
	if n := strings.Count(logged.String(), "udp segmentation offload refused"); n != 1 || !strings.Contains(logged.String(), "socket="+sender.LocalAddr().String()) {
		t.Errorf("want one log line naming the socket %s, got %d:\n%s", sender.LocalAddr(), n, logged.String())
	}
}

// TestBurstOverRealServersWithAPoisonedOne sends bursts of queries for names of many sizes,
// without waiting between them, so that the front's questions and answers go out in
// segmented runs, to NSD, Knot (poisoned for www) and BIND: every answer carries its own
// query's ID and question, www's is always the true record, and the forged one never
// reaches the client.
func TestBurstOverRealServersWithAPoisonedOne(t *testing.T) {
	need(t, "nsd", "knotd", "named")
	t.Parallel()
	nsd, knot, bind := startNSD(t, trueWWW), startKnot(t, forgedWWW), startBIND(t, trueWWW)
	_, addr, _ := gateway(t, Options{K: 3, Quorum: 2}, nsd, knot, bind)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"www.proteus.lab.", "WWW.proteus.lab.", "multi.proteus.lab.", "mail.proteus.lab.", "v6.proteus.lab.", "alias.proteus.lab.", "mx1.proteus.lab.", "_sip._tcp.proteus.lab."}
	types := []uint16{dns.TypeA, dns.TypeA, dns.TypeA, dns.TypeMX, dns.TypeAAAA, dns.TypeA, dns.TypeA, dns.TypeSRV}
	const burst, bursts = 50, 6
	buf := make([]byte, 65535)
	for round := range bursts {
		sent := map[uint16]int{}
		for i := range burst {
			k := (i + round) % len(names)
			q := new(dns.Msg).SetQuestion(names[k], types[k])
			q.Id = uint16(round*burst + i + 1)
			b, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			sent[q.Id] = k
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for len(sent) > 0 {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("burst %d: %d answers missing: %v", round, len(sent), err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("burst %d: a malformed answer: %v", round, err)
			}
			k, ok := sent[r.Id]
			if !ok {
				t.Fatalf("burst %d: an answer with an ID not asked or answered twice: %d", round, r.Id)
			}
			delete(sent, r.Id)
			if len(r.Question) != 1 || r.Question[0].Name != names[k] || r.Question[0].Qtype != types[k] || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				t.Fatalf("burst %d: the answer to %s %s is\n%s", round, names[k], dns.TypeToString[types[k]], r)
			}
			if strings.Contains(r.String(), forgedWWW) {
				t.Fatalf("burst %d: the forged address reached the client:\n%s", round, r)
			}
			if strings.EqualFold(names[k], "www.proteus.lab.") && !slices.Equal(aRecords(r), []string{trueWWW}) {
				t.Fatalf("burst %d: www is %v, want %s", round, aRecords(r), trueWWW)
			}
		}
	}
}

// TestSegmentRefused: only the kernel's refusals of segmentation turn it off, not a failed
// send (an executor's ICMP error, a full buffer), as x/net reports either.
func TestSegmentRefused(t *testing.T) {
	wrap := func(errno syscall.Errno) error {
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", errno)}
	}
	for errno, want := range map[syscall.Errno]bool{
		syscall.EINVAL: true, syscall.EIO: true, syscall.EOPNOTSUPP: true,
		syscall.ECONNREFUSED: false, syscall.ENOBUFS: false, syscall.EAGAIN: false,
	} {
		if got := segmentRefused(wrap(errno)); got != want {
			t.Errorf("segmentRefused(%v) = %v, want %v", errno, got, want)
		}
	}
}
