package dnsgw

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// Listen serves the gateway on addr over UDP and TCP (the same port; port 0 picks one for
// both) until Close, and returns the address bound.
func (g *Gateway) Listen(addr string) (string, error) {
	var lastErr error
	for range 10 { // with port 0, the UDP port may be taken for TCP: try another
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return "", fmt.Errorf("dnsgw: listen udp %s: %w", addr, err)
		}
		bound := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", bound)
		if err != nil {
			pc.Close()
			lastErr = err
			if _, port, _ := net.SplitHostPort(addr); port != "0" {
				break
			}
			continue
		}
		g.serve(pc, ln)
		return bound, nil
	}
	return "", fmt.Errorf("dnsgw: listen tcp %s: %w", addr, lastErr)
}

func (g *Gateway) serve(pc net.PacketConn, ln net.Listener) {
	invalid := func(_ []byte, err error) { g.invalidQuery() }
	idle := g.o.TCPIdleTimeout
	t := &dns.Server{Handler: g, ReadTimeout: g.o.TCPReadTimeout, WriteTimeout: g.o.WriteTimeout,
		IdleTimeout: func() time.Duration { return idle }, MaxTCPQueries: -1, MsgAcceptFunc: acceptQuery, MsgInvalidFunc: invalid,
		DecorateReader: func(r dns.Reader) dns.Reader { return sizeReader{r, g} }}
	t.Listener = newConnLimit(ln, g.o.MaxTCPConns, g.o.MaxTCPPerClient)
	f := &udpFront{}
	f.init(pc.(*net.UDPConn))
	f.c.SetReadBuffer(sockBuffer) // best effort
	g.mu.Lock()
	g.servers = append(g.servers, t)
	g.fronts = append(g.fronts, f)
	g.mu.Unlock()
	for range udpReaders() {
		f.wg.Add(1)
		go f.read(g)
	}
	go func() {
		if err := t.ActivateAndServe(); err != nil {
			g.log.Error("dns server stopped", "error", err)
		}
	}()
}

func (g *Gateway) invalidQuery() {
	g.stat.malformed.Add(1)
	g.metrics.invalid.WithLabelValues("client", "malformed").Inc()
}

// Close stops every listener and waits for the accounting of answered queries.
func (g *Gateway) Close() {
	g.mu.Lock()
	servers, fronts := g.servers, g.fronts
	g.servers, g.fronts = nil, nil
	g.mu.Unlock()
	for _, f := range fronts {
		f.c.Close()
	}
	for _, s := range servers {
		s.Shutdown()
	}
	for _, f := range fronts {
		f.wg.Wait()
	}
	g.pending.Wait()
	g.up.closeAll()
	g.expiry.close()
}

// udpFront serves the gateway over one UDP socket without a goroutine per query: a few
// readers take the clients' datagrams in batches (recvmmsg on Linux), each query's questions
// go out in batches per executor socket (sendmmsg), and the answers go back in batches from
// the goroutine that decided them (see round).
type udpFront struct {
	udpConn
	wg sync.WaitGroup
}

// udpReaders is how many goroutines read one UDP socket: the socket's reads are serialized
// anyway, but a query's parsing and sending overlaps the next read.
func udpReaders() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// clientBatch is how many datagrams one read of the client socket takes at most.
const clientBatch = 32

func (f *udpFront) read(g *Gateway) {
	defer f.wg.Done()
	ms := make([]ipv4.Message, clientBatch)
	for i := range ms {
		// one byte more than a query may have: a longer datagram fills it, and is dropped
		ms[i].Buffers = [][]byte{make([]byte, g.o.MaxQueryBytes+1)}
	}
	var out outbox
	for {
		n, err := f.bc.ReadBatch(ms, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for i := range ms[:n] {
			g.onQuery(f, ms[i].Buffers[0][:ms[i].N], ms[i].Addr, &out)
			ms[i].Addr = nil
		}
		out.flush(g)
	}
}

// onQuery takes one client datagram: the checks miekg/dns's server and ServeDNS make over
// TCP, in an order that sends nothing back to a blocked or rate-limited source (not even a
// FORMERR), then the vote.
func (g *Gateway) onQuery(f *udpFront, b []byte, from net.Addr, out *outbox) {
	start := time.Now()
	if len(b) > g.o.MaxQueryBytes {
		g.metrics.invalid.WithLabelValues("client", "oversized").Inc()
		return
	}
	if len(b) < 12 {
		g.invalidQuery() // no header: no answer (any answer could be used to amplify)
		return
	}
	client := addrOf(from)
	if !g.screen(client, "udp", start) {
		return
	}
	h := dns.Header{Id: uint16(b[0])<<8 | uint16(b[1]), Bits: uint16(b[2])<<8 | uint16(b[3]),
		Qdcount: uint16(b[4])<<8 | uint16(b[5]), Ancount: uint16(b[6])<<8 | uint16(b[7]),
		Nscount: uint16(b[8])<<8 | uint16(b[9]), Arcount: uint16(b[10])<<8 | uint16(b[11])}
	switch acceptQuery(h) {
	case dns.MsgIgnore:
		return
	case dns.MsgReject:
		g.count("udp", "refused", start)
		out.reply(f, headerReply(h, dns.RcodeFormatError), from)
		return
	case dns.MsgRejectNotImplemented:
		g.count("udp", "refused", start)
		out.reply(f, headerReply(h, dns.RcodeNotImplemented), from)
		return
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		g.invalidQuery()
		g.count("udp", "refused", start)
		out.reply(f, headerReply(h, dns.RcodeFormatError), from)
		return
	}
	if !g.acquire("udp", start) {
		return
	}
	if m := g.refusal(r, "udp", start); m != nil {
		g.inflight.Add(-1)
		out.reply(f, packOrNil(m), from)
		return
	}
	qu := query{prefix: g.idPrefix, seq: g.seq.Add(1), client: client, transport: "udp", q: r.Question[0]}
	if _, m := g.begin(r, qu, start, f, from, out); m != nil {
		g.inflight.Add(-1)
		out.reply(f, packOrNil(m), from)
	}
}

// headerReply is the answer to a query refused on its header alone (as miekg/dns's server
// makes it): the header with QR set and rcode, the opcode, and RD and CD for a QUERY.
func headerReply(h dns.Header, rcode int) []byte {
	m := new(dns.Msg)
	m.Id, m.Response, m.Rcode = h.Id, true, rcode
	m.Opcode = int(h.Bits>>11) & 0xF
	if m.Opcode == dns.OpcodeQuery {
		m.RecursionDesired, m.CheckingDisabled = h.Bits&(1<<8) != 0, h.Bits&(1<<4) != 0
	}
	return packOrNil(m)
}

func packOrNil(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// sizeReader drops client messages longer than MaxQueryBytes before they are parsed: the
// TCP connection ends (udpFront drops such a datagram).
type sizeReader struct {
	dns.Reader
	g *Gateway
}

func (r sizeReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil && len(m) > r.g.o.MaxQueryBytes {
		r.g.metrics.invalid.WithLabelValues("client", "oversized").Inc()
		return nil, errors.New("dnsgw: oversized query")
	}
	return m, err
}

// connLimit closes accepted TCP connections beyond max at once, or beyond perClient from
// one client address (IPv6: /64).
type connLimit struct {
	net.Listener
	max, perClient int
	mu             sync.Mutex
	total          int
	by             map[netip.Prefix]int
}

func newConnLimit(l net.Listener, max, perClient int) *connLimit {
	return &connLimit{Listener: l, max: max, perClient: perClient, by: map[netip.Prefix]int{}}
}

func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(addrOf(c.RemoteAddr()))
		l.mu.Lock()
		if l.total >= l.max || l.by[key] >= l.perClient {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.total++
		l.by[key]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, key: key}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *connLimit
	key  netip.Prefix
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.total--
		if c.l.by[c.key]--; c.l.by[c.key] <= 0 {
			delete(c.l.by, c.key)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// clientKey is a client's address, IPv6 ones as their /64.
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// rateLimit is a token bucket per client (see clientKey): rate tokens a second, burst at most.
// The table is bounded: past maxRateKeys it starts afresh.
type rateLimit struct {
	rate  float64
	burst float64
	mu    sync.Mutex
	m     map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxRateKeys = 65536

func newRateLimit(rate float64, burst int) *rateLimit {
	return &rateLimit{rate: rate, burst: float64(burst), m: map[netip.Prefix]*bucket{}}
}

func (r *rateLimit) allow(a netip.Addr, now time.Time) bool {
	key := clientKey(a)
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.m[key]
	if b == nil {
		if len(r.m) >= maxRateKeys {
			clear(r.m)
		}
		b = &bucket{tokens: r.burst, last: now}
		r.m[key] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
