package mimic

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// A request takes one of the gateway's MaxInFlight slots only once it is complete: its body
// is read first, bounded by BodyLimit and by BodyTimeout, so clients that announce a body and
// never send it hold nothing but their own connection for at most BodyTimeout. What is left
// for one client to hold is bounded by MaxPerClient: requests at once from one address (IPv6:
// one /64, what one subscriber is usually given), counted from the moment the handler runs
// (on the fast path and on net/http's alike) until it returns, tunnels included.

// clientLimit counts each client's requests in progress.
type clientLimit struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

func newClientLimit(max int) *clientLimit {
	return &clientLimit{max: max, n: map[netip.Addr]int{}}
}

// clientKey is what requests from one client share: its address, or its /64 for IPv6.
func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// acquire counts one more request of client a (see Gateway.clientOf; not valid: a handler
// called without an address, not counted); false when it has max already. release must
// follow a true acquire, with the key returned.
func (l *clientLimit) acquire(a netip.Addr) (netip.Addr, bool) {
	if !a.IsValid() {
		return a, true
	}
	k := clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[k] >= l.max {
		return k, false
	}
	l.n[k]++
	return k, true
}

func (l *clientLimit) release(k netip.Addr) {
	if !k.IsValid() {
		return
	}
	l.mu.Lock()
	if l.n[k] <= 1 {
		delete(l.n, k)
	} else {
		l.n[k]--
	}
	l.mu.Unlock()
}

// readBody reads the request body whole, bounded by BodyLimit and BodyTimeout, before the
// request takes a slot. It returns nil when there is no body; ok is false when the client has
// been answered (413, 408, 400, or 503 when the memory budget is exhausted) instead. The body's
// bytes are taken from the memory budget shared with the executors' response bodies (without a
// slot, nothing else bounds how many bodies are being read at once): the caller gives held back
// once the request is answered.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, policy Policy) (buf *bytes.Buffer, held int64, ok bool) {
	if r.ContentLength > g.o.BodyLimit {
		w.Header().Set("Connection", "close")
		g.reject(w, policy, "rejected", http.StatusRequestEntityTooLarge)
		return nil, 0, false
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, 0, true
	}
	// The body must arrive within BodyTimeout from now; once it has, the connection's read
	// deadline is lifted: net/http cancels a request whose connection read fails while its handler runs,
	// and the handler is bounded by UpstreamTimeout from here on.
	rc := http.NewResponseController(w)
	timed := rc.SetReadDeadline(time.Now().Add(g.o.BodyTimeout)) == nil
	buf = getBuf()
	cr := chargedReader{r: http.MaxBytesReader(w, r.Body, g.o.BodyLimit), b: &g.spool.mem}
	_, err := buf.ReadFrom(&cr)
	if err == nil {
		if timed {
			rc.SetReadDeadline(time.Time{})
		}
		return buf, cr.held, true
	}
	g.spool.mem.give(cr.held)
	// The deadline stays: net/http's attempt to read the rest of the body before it closes
	// the connection ends at once.
	putBuf(buf)
	var mbe *http.MaxBytesError
	var ne net.Error
	w.Header().Set("Connection", "close")
	switch {
	case errors.As(err, &mbe):
		g.reject(w, policy, "rejected", http.StatusRequestEntityTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		g.reject(w, policy, "rejected", http.StatusRequestTimeout)
	case errors.Is(err, errBudget):
		w.Header().Set("Retry-After", "1")
		g.reject(w, policy, "unavailable", http.StatusServiceUnavailable)
	default:
		g.reject(w, policy, "rejected", http.StatusBadRequest)
	}
	return nil, 0, false
}

// chargedReader takes every byte it reads from a budget, and fails once the budget is out.
type chargedReader struct {
	r    io.Reader
	b    *budget
	held int64
}

func (c *chargedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if !c.b.take(int64(n)) {
			return 0, errMemBudget
		}
		c.held += int64(n)
	}
	return n, err
}
