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
}

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

func (x *udpMux) close() {
	for _, s := range x.socks {
		s.mu.Lock()
		s.closed = true
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

// exchange sends q (its ID replaced) and returns the raw answer.
func (x *udpMux) exchange(ctx context.Context, q *dns.Msg, buf []byte) ([]byte, error) {
	s := x.socks[x.next.Add(1)%uint32(len(x.socks))]
	ch := make(chan []byte, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
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
	q.Id = id
	wire, err := q.PackBuffer(buf)
	if err == nil {
		_, err = s.c.Write(wire)
	}
	if err != nil {
		s.forget(id)
		return nil, fmt.Errorf("dnsgw: send: %w", err)
	}
	select {
	case b := <-ch:
		return b, nil
	case <-ctx.Done():
		s.forget(id)
		return nil, fmt.Errorf("dnsgw: no answer over udp: %w", ctx.Err())
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

// checkAnswer says whether r answers q: a response with q's ID, opcode and question (names
// compared without case).
func checkAnswer(r, q *dns.Msg) error {
	if !r.Response || r.Id != q.Id || r.Opcode != q.Opcode {
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
