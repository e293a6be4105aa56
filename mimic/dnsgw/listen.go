package dnsgw

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
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
	invalid := func(_ []byte, err error) {
		g.stat.malformed.Add(1)
		g.metrics.invalid.WithLabelValues("client", "malformed").Inc()
	}
	idle := g.o.TCPIdleTimeout
	mk := func() *dns.Server {
		return &dns.Server{Handler: g, UDPSize: g.o.MaxQueryBytes + 1, ReadTimeout: g.o.TCPReadTimeout, WriteTimeout: g.o.WriteTimeout,
			IdleTimeout: func() time.Duration { return idle }, MaxTCPQueries: -1, MsgAcceptFunc: acceptQuery, MsgInvalidFunc: invalid,
			DecorateReader: func(r dns.Reader) dns.Reader { return sizeReader{r, g} }}
	}
	u, t := mk(), mk()
	u.PacketConn = pc
	t.Listener = newConnLimit(ln, g.o.MaxTCPConns, g.o.MaxTCPPerClient)
	g.mu.Lock()
	g.servers = append(g.servers, u, t)
	g.mu.Unlock()
	for _, s := range []*dns.Server{u, t} {
		go func() {
			if err := s.ActivateAndServe(); err != nil {
				g.log.Error("dns server stopped", "error", err)
			}
		}()
	}
}

// Close stops every listener and waits for the accounting of answered queries.
func (g *Gateway) Close() {
	g.mu.Lock()
	servers := g.servers
	g.servers = nil
	g.mu.Unlock()
	for _, s := range servers {
		s.Shutdown()
	}
	g.pending.Wait()
	g.up.closeAll()
}

// sizeReader drops client messages longer than MaxQueryBytes before they are parsed: a
// datagram is skipped, a TCP connection ends.
type sizeReader struct {
	dns.Reader
	g *Gateway
}

func (r sizeReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		m, s, err := r.Reader.ReadUDP(conn, timeout)
		if err != nil || len(m) <= r.g.o.MaxQueryBytes {
			return m, s, err
		}
		r.g.metrics.invalid.WithLabelValues("client", "oversized").Inc()
	}
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
