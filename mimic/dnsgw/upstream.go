package dnsgw

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

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
	g      *Gateway
	mu     sync.Mutex
	m      map[string]*upMux
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

func (u *upstreams) get(addr string) (*upMux, error) {
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
	x, err := newUpMux(addr, u.g)
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

// register puts ask i of r in flight to addr: on one of its sockets, under a random message
// ID not in flight there. It returns the socket and the ID; the caller sends the question.
func (u *upstreams) register(addr string, r *round, i int) (*upSock, uint16, error) {
	for range 2 {
		x, err := u.get(addr)
		if err != nil {
			return nil, 0, err
		}
		s := x.socks[x.next.Add(1)%uint32(len(x.socks))]
		id, err := s.register(r, i)
		if errors.Is(err, errClosed) { // pruned just now (the executor left the set): a fresh one
			continue
		}
		return s, id, err
	}
	return nil, 0, errClosed
}

// upMux carries many queries to one executor over a few long-lived connected UDP sockets,
// each read by one goroutine in batches (recvmmsg on Linux). Each ask gets a random message
// ID not in flight on its socket; a datagram is taken only from the executor's address (the
// socket is connected, and the reader checks the source again) for an ID in flight, and only
// as an answer to the very question asked under that ID (see checkAnswer): anything else is
// counted and dropped, and the ask goes on waiting, so a datagram forged with a guessed ID
// cannot take the place of the executor's answer, nor answer for another query.
type upMux struct {
	socks []*upSock
	next  atomic.Uint32
}

type upSock struct {
	udpConn
	peer netip.AddrPort // the executor
	g    *Gateway

	mu      sync.Mutex
	waiting map[uint16]askRef
	closed  bool

	// the reader's own: the question of the answer at hand and the answer parseAnswer read
	qwire   []byte
	scratch normalized
}

// askRef is ask i of round r in its use gen (a recycled round has another: see round).
type askRef struct {
	r   *round
	i   int
	gen uint64
}

// maxInFlightPerSocket bounds the asks waiting on one socket, so that a random free ID is
// found in a few draws (at most a quarter of the IDs are taken).
const maxInFlightPerSocket = 16384

// socketsFor is how many sockets an executor gets when maxInFlight queries (and as many
// stragglers) may be in flight at once.
func socketsFor(maxInFlight int) int {
	return min(max(1, (2*maxInFlight+maxInFlightPerSocket-1)/maxInFlightPerSocket), 16)
}

func newUpMux(addr string, g *Gateway) (*upMux, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dnsgw: executor address %q: %w", addr, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	x := &upMux{}
	for range socketsFor(g.o.MaxInFlight) {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			x.close()
			return nil, fmt.Errorf("dnsgw: executor %s: %w", addr, err)
		}
		c.SetReadBuffer(sockBuffer) // best effort: answers to a burst of queries arrive at once
		s := &upSock{peer: ap, g: g, waiting: map[uint16]askRef{}}
		s.init(c)
		x.socks = append(x.socks, s)
		go s.read()
	}
	return x, nil
}

// closeIfIdle closes x if no query is in flight on it, atomically with that check (no query
// can start on a socket between the two), and says whether it did.
func (x *upMux) closeIfIdle() bool {
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

// close closes x; the asks in flight on it are left to their deadline.
func (x *upMux) close() {
	for _, s := range x.socks {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.c.Close()
	}
}

// register puts ask i of r in flight on s and returns its ID. The caller holds r.mu.
func (s *upSock) register(r *round, i int) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed
	}
	if len(s.waiting) >= maxInFlightPerSocket {
		return 0, errors.New("dnsgw: too many queries in flight to the executor")
	}
	for {
		id := uint16(rand.Uint32())
		if _, busy := s.waiting[id]; !busy {
			s.waiting[id] = askRef{r, i, r.gen}
			return id, nil
		}
	}
}

// forget takes ask i of r's use gen off s, if id still names it.
func (s *upSock) forget(id uint16, r *round, i int, gen uint64) {
	s.mu.Lock()
	if s.waiting[id] == (askRef{r, i, gen}) {
		delete(s.waiting, id)
	}
	s.mu.Unlock()
}

func (s *upSock) lookup(id uint16) (askRef, bool) {
	s.mu.Lock()
	ref, ok := s.waiting[id]
	s.mu.Unlock()
	return ref, ok
}

// upBatch is how many datagrams one read of an executor's socket takes at most; each buffer
// holds the largest datagram (an executor may send more than the size the front advertised:
// such an answer is read, and voted on like any other), so a socket's reader holds 1 MiB.
const upBatch = 16

// sockBuffer is the receive buffer the front asks for its UDP sockets (the kernel caps it
// at net.core.rmem_max): the default (208 KiB on Linux) holds about 160 small datagrams, fewer
// than the answers to the queries a busy front has in flight to one executor, and a datagram
// dropped there is an availability dissent.
const sockBuffer = 1 << 20

func (s *upSock) read() {
	ms := make([]ipv4.Message, upBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, dns.MaxMsgSize)}
	}
	var out outbox
	for {
		n, err := s.bc.ReadBatch(ms, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error (port unreachable) on a connected socket: the asks time out
		}
		for i := range ms[:n] {
			s.g.onAnswer(s, ms[i].Buffers[0][:ms[i].N], ms[i].Addr, &out)
		}
		out.flush(s.g)
	}
}

// onAnswer takes one datagram from an executor's socket.
func (g *Gateway) onAnswer(s *upSock, b []byte, from net.Addr, out *outbox) {
	if ua, ok := from.(*net.UDPAddr); ok && from != nil {
		if ap := ua.AddrPort(); netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) != s.peer {
			g.stat.strayAnswers.Add(1)
			g.metrics.invalid.WithLabelValues("executor", "stray").Inc()
			return
		}
	}
	if len(b) < 12 {
		g.stat.strayAnswers.Add(1)
		g.metrics.invalid.WithLabelValues("executor", "stray").Inc()
		return
	}
	id := uint16(b[0])<<8 | uint16(b[1])
	ref, ok := s.lookup(id)
	if !ok {
		g.stat.strayAnswers.Add(1) // late, duplicated or spoofed
		g.metrics.invalid.WithLabelValues("executor", "stray").Inc()
		return
	}
	r, i, gen := ref.r, ref.i, ref.gen
	q, qwire, current := r.question(gen, s.qwire[:0])
	s.qwire = qwire
	if !current { // its round ended (and was recycled) since the lookup: late
		g.stat.strayAnswers.Add(1)
		g.metrics.invalid.WithLabelValues("executor", "stray").Inc()
		return
	}
	if parseAnswer(b, qwire, &g.cookieB, id, g.seed, &s.scratch) {
		s.forget(id, r, i, gen)
		r.addParsed(i, gen, &s.scratch, out)
		return
	}
	a := new(dns.Msg) // anything parseAnswer does not take: miekg/dns says what is wrong with it
	if err := a.Unpack(b); err != nil {
		g.metrics.invalid.WithLabelValues("executor", "malformed").Inc()
		r.refuse(i, gen, fmt.Errorf("%w: %v", ErrMalformed, err))
		return
	}
	if err := checkAnswer(a, q, g.cookie, id); err != nil {
		g.metrics.invalid.WithLabelValues("executor", "mismatched").Inc()
		r.refuse(i, gen, err)
		return
	}
	if a.Truncated {
		s.forget(id, r, i, gen)
		r.retryTCP(i, gen)
		return
	}
	n, err := normalize(g.seed, a)
	if err != nil {
		g.metrics.invalid.WithLabelValues("executor", "malformed").Inc()
		r.refuse(i, gen, err)
		return
	}
	s.forget(id, r, i, gen)
	r.add(i, gen, voter.Answer[*normalized, uint64]{Value: n, Key: n.key}, out)
}

// exchangeTCP asks addr q (a copy, under a random ID) over a new TCP connection, bounded by
// ctx, and checks that the answer answers q.
func exchangeTCP(ctx context.Context, q *dns.Msg, cookie, addr string) (*dns.Msg, error) {
	q = q.Copy()
	q.Id = dns.Id()
	c := dns.Client{Net: "tcp", Timeout: time.Minute} // ctx bounds it
	r, _, err := c.ExchangeContext(ctx, q, addr)
	if err != nil {
		return nil, fmt.Errorf("dnsgw: over tcp: %w", err)
	}
	if err := checkAnswer(r, q.Question[0], cookie, q.Id); err != nil {
		return nil, fmt.Errorf("dnsgw: over tcp: %w", err)
	}
	return r, nil
}

// checkAnswer says whether r answers the question q asked with ID id and the client cookie
// cookie (hex): a response to a QUERY with that ID and question (names compared without
// case), echoing the cookie if it has one.
func checkAnswer(r *dns.Msg, q dns.Question, cookie string, id uint16) error {
	if !r.Response || r.Id != id || r.Opcode != dns.OpcodeQuery {
		return ErrMismatch
	}
	if len(r.Question) != 1 {
		if r.Rcode != dns.RcodeSuccess && len(r.Question) == 0 {
			return nil // an error answer without the question (FORMERR, NOTIMP): compared by its rcode
		}
		return ErrMismatch
	}
	a, b := r.Question[0], q
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return ErrMismatch
	}
	if got := cookieOf(r); got != "" && (len(got) < 16 || !strings.EqualFold(got[:16], cookie)) {
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
