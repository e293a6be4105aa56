package mimic

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Besides its requests (Options.MaxPerClient), one client address (IPv6: one /64) may hold at
// most ServerOptions.MaxConnsPerClient connections open at once: each costs a goroutine and
// buffers for as long as the header, body and idle timeouts let it live. A connection over the
// limit is answered 429 with Connection: close (cleartext; over TLS it is closed) before
// anything is read from it. Connections from ServerOptions.TrustedProxies are not counted:
// each carries many clients, whom the per-request limit tells apart.

// connLimit counts the open connections per client.
type connLimit struct {
	per    *clientLimit
	exempt []netip.Prefix
	plain  bool     // cleartext: an over-limit connection gets a 429
	gw     *Gateway // ServerOptions.Gateway: whose pages refusals present
}

// serverConnLimits maps a server made by NewServer to its connection limit, which Serve applies.
var serverConnLimits sync.Map // *http.Server -> *connLimit

type connLimitListener struct {
	net.Listener
	l *connLimit
}

func (l *connLimit) wrap(ln net.Listener) net.Listener { return &connLimitListener{ln, l} }

func (ln *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := addrOf(c.RemoteAddr())
		if !a.IsValid() || ln.l.exempted(a) {
			return c, nil
		}
		k, ok := ln.l.per.acquire(a)
		if ok {
			return &limitedConn{Conn: c, l: ln.l.per, key: k}, nil
		}
		if ln.l.plain {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			id := defaultIdentity
			if ln.l.gw != nil {
				id = ln.l.gw.identity()
			}
			c.Write(id.rawPage(http.StatusTooManyRequests))
		}
		c.Close()
	}
}

func (l *connLimit) exempted(a netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// limitedConn gives its client's count back once, when it is closed.
type limitedConn struct {
	net.Conn
	l    *clientLimit
	key  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.key) })
	return c.Conn.Close()
}
