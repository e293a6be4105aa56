package mimic

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
)

// net/http accepts a request carrying both Content-Length and Transfer-Encoding: chunked (it
// drops Content-Length, as RFC 9112 allows), leaving no trace of the ambiguity in the parsed
// request. The gateway refuses such requests instead, because the same bytes could be framed
// differently by a server behind another proxy: framingConn watches the raw bytes of every
// header section on a cleartext connection and marks the connection when one section names
// both. (Over TLS the connection must stay a *tls.Conn for ALPN, so there only net/http's own
// checks apply; the gateway re-frames every request it forwards, so executors never see the
// client's framing either way.)
type framingConn struct {
	net.Conn
	ambiguous atomic.Bool

	name    [20]byte
	nameLen int  // bytes of the current line's name collected, -1 when past the name
	lineLen int  // bytes in the current line, excluding CR
	hasCL   bool // current section named Content-Length
	hasTE   bool // current section named Transfer-Encoding
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

func (c *framingConn) scan(p []byte) {
	for _, b := range p {
		switch b {
		case '\n':
			if c.lineLen == 0 { // blank line: the header section ends
				c.hasCL, c.hasTE = false, false
			}
			c.lineLen, c.nameLen = 0, 0
			continue
		case '\r':
			continue
		}
		c.lineLen++
		if c.nameLen < 0 {
			continue
		}
		if b == ':' {
			switch string(c.name[:c.nameLen]) {
			case "content-length":
				c.hasCL = true
			case "transfer-encoding":
				c.hasTE = true
			}
			if c.hasCL && c.hasTE {
				c.ambiguous.Store(true)
			}
			c.nameLen = -1
			continue
		}
		if c.nameLen == len(c.name) {
			c.nameLen = -1
			continue
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		c.name[c.nameLen] = b
		c.nameLen++
	}
}

type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

type connKey struct{}

// connContext remembers the connection so the handler can ask about its framing.
func connContext(ctx context.Context, c net.Conn) context.Context {
	switch fc := c.(type) {
	case *framingConn:
		return context.WithValue(ctx, connKey{}, fc)
	case *handoffConn:
		return context.WithValue(ctx, connKey{}, fc.framingConn)
	}
	return ctx
}

// ambiguousFraming reports whether r came on a connection that sent a header section naming
// both Content-Length and Transfer-Encoding.
func ambiguousFraming(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	fc, ok := r.Context().Value(connKey{}).(*framingConn)
	return ok && fc.ambiguous.Load()
}
