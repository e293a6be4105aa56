package dnsgw

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// Upstream errors.
var (
	ErrMalformed = errors.New("dnsgw: malformed answer")
	ErrMismatch  = errors.New("dnsgw: answer to another question")
	errClosed    = errors.New("dnsgw: upstream closed")
)

// upstreams keeps one multiplexed UDP exchanger per executor address.
type upstreams struct {
	mu     sync.Mutex
	m      map[string]*udpMux
	stat   *counters
	closed bool
	// last is the first member of the executor set prune saw last (a new snapshot of a
	// rotating pool is a new slice); nextPrune (Unix ns) when it may prune again.
	last      atomic.Pointer[voter.Member]
	nextPrune atomic.Int64
}

// prune closes the exchangers of executors no longer in all (rotated away) that have no
// query in flight. It does the work only when all is a new snapshot (a rotating pool's new
// snapshot is a new slice), at most once per pruneEvery: a query holding an older snapshot
// may prune too, which only costs a live executor's exchanger being made anew.
func (u *upstreams) prune(all []voter.Member, now time.Time) {
	var first *voter.Member
	if len(all) > 0 {
		first = &all[0]
	}
	if u.last.Load() == first || now.UnixNano() < u.nextPrune.Load() {
		return
	}
	live := make(map[string]bool, len(all))
	for _, m := range all {
		live[m.Addr] = true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nextPrune.Store(now.Add(pruneEvery).UnixNano())
	busy := false
	for addr, x := range u.m {
		if live[addr] {
			continue
		}
		if x.closeIfIdle() {
			delete(u.m, addr)
		} else {
			busy = true
		}
	}
	if !busy { // else a later query looks again
		u.last.Store(first)
	}
}

const pruneEvery = time.Second

func (u *upstreams) get(addr string) (*udpMux, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, errClosed
	}
	if x := u.m[addr]; x != nil {
		return x, nil
	}
	if len(u.m) > 4096 { // executors rotated away: start afresh
		for _, x := range u.m {
			x.close()
		}
		clear(u.m)
	}
	x, err := newUDPMux(addr, u.stat)
	if err != nil {
		return nil, err
	}
	u.m[addr] = x
	return x, nil
}

func (u *upstreams) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for _, x := range u.m {
		x.close()
	}
	clear(u.m)
}

// udpMux carries many queries to one executor over a few connected UDP sockets: each query
// gets a random message ID not in flight on its socket, and an answer is taken only from the
// executor's address (the socket is connected) with an ID in flight; others are counted and
// dropped.
type udpMux struct {
	socks []*muxSock
	next  atomic.Uint32
}

type muxSock struct {
	c       *net.UDPConn
	stat    *counters
	mu      sync.Mutex
	waiting map[uint16]chan []byte
	closed  bool
}

const muxSockets = 4

func newUDPMux(addr string, stat *counters) (*udpMux, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dnsgw: executor address %q: %w", addr, err)
	}
	x := &udpMux{}
	for range muxSockets {
		c, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			x.close()
			return nil, fmt.Errorf("dnsgw: executor %s: %w", addr, err)
		}
		s := &muxSock{c: c, stat: stat, waiting: map[uint16]chan []byte{}}
		x.socks = append(x.socks, s)
		go s.read()
	}
	return x, nil
}

// closeIfIdle closes x if no query is in flight on it, atomically with that check (no query
// can start on a socket between the two), and says whether it did.
func (x *udpMux) closeIfIdle() bool {
	for _, s := range x.socks {
		s.mu.Lock()
	}
	idle := true
	for _, s := range x.socks {
		idle = idle && len(s.waiting) == 0
	}
	for _, s := range x.socks {
		if idle {
			s.closed = true
		}
		s.mu.Unlock()
	}
	if idle {
		for _, s := range x.socks {
			s.c.Close()
		}
	}
	return idle
}

// close closes x; queries in flight on it fail at once with errClosed.
func (x *udpMux) close() {
	for _, s := range x.socks {
		s.mu.Lock()
		s.closed = true
		for id, ch := range s.waiting {
			ch <- nil // buffered: never blocks
			delete(s.waiting, id)
		}
		s.mu.Unlock()
		s.c.Close()
	}
}

func (s *muxSock) read() {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := s.c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error (port unreachable) on a connected socket: the waiter times out
		}
		if n < 12 {
			s.stat.strayAnswers.Add(1)
			continue
		}
		id := uint16(buf[0])<<8 | uint16(buf[1])
		s.mu.Lock()
		ch := s.waiting[id]
		delete(s.waiting, id)
		s.mu.Unlock()
		if ch == nil {
			s.stat.strayAnswers.Add(1) // late, duplicated or spoofed
			continue
		}
		ch <- append([]byte(nil), buf[:n]...) // buffered: never blocks
	}
}

// exchange sends the packed query wire (its first two bytes, the ID, replaced by one not in
// flight on the socket) and returns the raw answer and the ID it was asked with.
func (x *udpMux) exchange(ctx context.Context, wire []byte) ([]byte, uint16, error) {
	s := x.socks[x.next.Add(1)%uint32(len(x.socks))]
	ch := make(chan []byte, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, 0, errClosed
	}
	var id uint16
	for {
		id = uint16(rand.Uint32())
		if _, busy := s.waiting[id]; !busy {
			break
		}
	}
	s.waiting[id] = ch
	s.mu.Unlock()
	var buf [512]byte
	out := append(buf[:0], wire...)
	out[0], out[1] = byte(id>>8), byte(id)
	if _, err := s.c.Write(out); err != nil {
		s.forget(id)
		return nil, 0, fmt.Errorf("dnsgw: send: %w", err)
	}
	select {
	case b := <-ch:
		if b == nil {
			return nil, 0, errClosed
		}
		return b, id, nil
	case <-ctx.Done():
		s.forget(id)
		return nil, 0, fmt.Errorf("dnsgw: no answer over udp: %w", ctx.Err())
	}
}

func (s *muxSock) forget(id uint16) {
	s.mu.Lock()
	delete(s.waiting, id)
	s.mu.Unlock()
}

// exchangeTCP asks addr over a new TCP connection, bounded by ctx.
func exchangeTCP(ctx context.Context, q *dns.Msg, addr string) (*dns.Msg, error) {
	q.Id = dns.Id()
	c := dns.Client{Net: "tcp", Timeout: time.Minute} // ctx bounds it
	r, _, err := c.ExchangeContext(ctx, q, addr)
	if err != nil {
		return nil, fmt.Errorf("dnsgw: over tcp: %w", err)
	}
	return r, nil
}

// checkAnswer says whether r answers q asked with ID id: a response with that ID and q's
// opcode and question (names compared without case).
func checkAnswer(r, q *dns.Msg, id uint16) error {
	if !r.Response || r.Id != id || r.Opcode != q.Opcode {
		return ErrMismatch
	}
	if len(r.Question) != 1 {
		if r.Rcode != dns.RcodeSuccess && len(r.Question) == 0 {
			return nil // an error answer without the question (FORMERR, NOTIMP): compared by its rcode
		}
		return ErrMismatch
	}
	a, b := r.Question[0], q.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return ErrMismatch
	}
	if want, got := cookieOf(q), cookieOf(r); got != "" && (len(got) < 16 || !strings.EqualFold(got[:16], want)) {
		return fmt.Errorf("%w: its cookie does not echo ours", ErrMismatch)
	}
	return nil
}

// cookieOf returns the COOKIE option of m (hex), "" without.
func cookieOf(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}
