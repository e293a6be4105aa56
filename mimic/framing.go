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
//
// It also marks what net/http would let through and a server behind it could read otherwise:
// Transfer-Encoding on an HTTP/1.0 request (net/http ignores it, so a chunked body would be
// read as the next request on the connection; RFC 9112 §6.1 says to treat the framing as
// faulty and close), obsolete line folding, and a header section longer than the configured
// limit (net/http allows 4 KiB more than it is told).
type framingConn struct {
	net.Conn
	ambiguous atomic.Bool // Content-Length with Transfer-Encoding, or Transfer-Encoding on HTTP/1.0
	folded    atomic.Bool // a header line began with white space (obs-fold)
	oversized atomic.Bool // a header section longer than maxHead

	maxHead int // bytes of a header section (request line and fields with their line ends); 0: no limit

	name    [20]byte
	nameLen int    // bytes of the current line's name collected, -1 when past the name
	lineLen int    // bytes in the current line, excluding CR
	lines   int    // lines of the current section so far
	headLen int    // bytes of the current section so far
	tail    uint64 // the last 8 bytes of the current line
	http10  bool   // the current section's request line ends with HTTP/1.0
	hasCL   bool   // current section named Content-Length
	hasTE   bool   // current section named Transfer-Encoding
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

// http10Tail is "HTTP/1.0" as the last 8 bytes of a line in framingConn.tail.
const http10Tail = uint64('H')<<56 | uint64('T')<<48 | uint64('T')<<40 | uint64('P')<<32 | uint64('/')<<24 | uint64('1')<<16 | uint64('.')<<8 | uint64('0')

func (c *framingConn) scan(p []byte) {
	for _, b := range p {
		switch b {
		case '\n':
			if c.lineLen == 0 { // blank line: the header section ends
				c.hasCL, c.hasTE, c.http10, c.lines, c.headLen = false, false, false, 0, 0
			} else {
				if c.lines == 0 && c.tail == http10Tail {
					c.http10 = true
				}
				c.lines++
				c.headLen += c.lineLen + 2 // the line and its end (CR LF; a bare LF is refused anyway)
				if c.maxHead > 0 && c.headLen > c.maxHead {
					c.oversized.Store(true)
				}
			}
			c.lineLen, c.nameLen, c.tail = 0, 0, 0
			continue
		case '\r':
			continue
		}
		if c.lineLen == 0 && c.lines > 0 && (b == ' ' || b == '\t') {
			c.folded.Store(true)
		}
		c.lineLen++
		if c.lines == 0 {
			c.tail = c.tail<<8 | uint64(b) // the request line's end: its version
			continue
		}
		if c.nameLen < 0 {
			if c.maxHead > 0 && c.headLen+c.lineLen > c.maxHead {
				c.oversized.Store(true) // one endless line
			}
			continue
		}
		if b == ':' {
			switch string(c.name[:c.nameLen]) {
			case "content-length":
				c.hasCL = true
			case "transfer-encoding":
				c.hasTE = true
			}
			if c.hasTE && (c.hasCL || c.http10) {
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

// framingFault returns why r's framing is refused, with the status to answer (the connection
// is then closed): what framingConn marked on a cleartext connection, and on every transport
// a header section over maxHead as net/http parsed it.
func framingFault(r *http.Request, maxHead int) (int, string) {
	if r.ProtoMajor == 1 {
		if fc, ok := r.Context().Value(connKey{}).(*framingConn); ok {
			switch {
			case fc.ambiguous.Load():
				return http.StatusBadRequest, "ambiguous message length"
			case fc.folded.Load():
				return http.StatusBadRequest, "obsolete line folding"
			case fc.oversized.Load():
				return http.StatusRequestHeaderFieldsTooLarge, "request header too large"
			}
			return 0, ""
		}
	}
	if len(r.TransferEncoding) > 0 && len(r.Header["Content-Length"]) > 0 {
		return http.StatusBadRequest, "ambiguous message length"
	}
	if maxHead > 0 {
		n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: \r\n") + len(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > maxHead {
			return http.StatusRequestHeaderFieldsTooLarge, "request header too large"
		}
	}
	return 0, ""
}
