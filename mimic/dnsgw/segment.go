package dnsgw

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// Segmentation offload: on Linux, one sendmmsg entry can carry many datagrams of one size to
// one destination (UDP_SEGMENT, "UDP GSO"): the kernel builds and routes one packet and cuts
// it into datagrams only at the receiving socket (over loopback) or at the device, instead of
// doing all of it once per datagram. The questions of a batch to one executor socket, and the
// answers of a batch to one client address, are sorted by size into runs of equal size (the
// last of a run may be shorter, as segmentation allows); each run is one entry. The receiver
// reads ordinary datagrams, byte for byte those it would have read one by one. A run the
// kernel refuses turns segmentation off for that socket, and is sent again one by one.

// udpConn is a UDP socket read and written in batches.
type udpConn struct {
	c  *net.UDPConn
	bc *ipv4.PacketConn // c, for ReadBatch and WriteBatch
	// segment: datagrams go out in segmented runs, until the kernel refuses one
	segment atomic.Bool
}

func (u *udpConn) init(c *net.UDPConn) {
	u.c, u.bc = c, ipv4.NewPacketConn(c)
	u.segment.Store(true)
}

// name is "local -> remote" for a connected socket, "local" for another.
func (u *udpConn) name() string {
	name := u.c.LocalAddr().String()
	if r := u.c.RemoteAddr(); r != nil {
		name += " -> " + r.String()
	}
	return name
}

// maxSegments is the most datagrams in one segmented entry (the kernel's UDP_MAX_SEGMENTS is
// 64 on older kernels), maxSegmentedBytes the most bytes, and maxSegment the largest
// datagram segmented (below any usual link MTU, so that the device never refuses a run).
const (
	maxSegments       = 64
	maxSegmentedBytes = 60000
	maxSegment        = 1200
)

// segmentRuns sorts items by destination (dest; all equal for the items of one socket),
// then by size, longest first, and returns where each run of them ends: datagrams to one
// destination of one size, at most maxSegments and maxSegmentedBytes, and then at most one
// shorter one. A datagram above maxSegment is a run of its own.
func segmentRuns[T any](items []T, bytes func(T) []byte, dest func(a, b T) int, ends []int) []int {
	slices.SortStableFunc(items, func(a, b T) int {
		if c := dest(a, b); c != 0 {
			return c
		}
		return cmp.Compare(len(bytes(b)), len(bytes(a)))
	})
	for i := 0; i < len(items); {
		first := len(bytes(items[i]))
		j, total := i+1, first
		if first <= maxSegment {
			for j < len(items) && j-i < maxSegments && dest(items[i], items[j]) == 0 && total+len(bytes(items[j])) <= maxSegmentedBytes {
				n := len(bytes(items[j]))
				total += n
				j++
				if n != first { // a shorter one ends the run
					break
				}
			}
		}
		ends = append(ends, j)
		i = j
	}
	return ends
}

// segmented is the sendmmsg entry of the datagrams bs to to: their buffers in turn and, for
// more than one, the UDP_SEGMENT control message with their size.
func (o *outbox) segmented(bs [][]byte, to net.Addr) ipv4.Message {
	start := len(o.bufs)
	o.bufs = append(o.bufs, bs...)
	m := ipv4.Message{Buffers: o.bufs[start:len(o.bufs):len(o.bufs)], Addr: to}
	if len(bs) > 1 {
		off := len(o.oob)
		o.oob = appendSegmentSize(o.oob, len(bs[0]))
		m.OOB = o.oob[off:len(o.oob):len(o.oob)]
	}
	return m
}

// The parts of a question and an answer sendBatch needs.
func askBytes(a outAsk) []byte      { return a.b }
func noAddr(outAsk) net.Addr        { return nil } // the executor's socket is connected
func sameSocket(_, _ outAsk) int    { return 0 }
func replyBytes(r outReply) []byte  { return r.b }
func replyAddr(r outReply) net.Addr { return r.to }
func byClient(a, b outReply) int    { return addrPortOf(a.to).Compare(addrPortOf(b.to)) }

// addrPortOf is a UDP address as a netip.AddrPort (the zero one for anything else).
func addrPortOf(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok && u != nil {
		return u.AddrPort()
	}
	return netip.AddrPort{}
}
