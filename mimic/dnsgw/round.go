package dnsgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// A round is one client query being voted. Its asks go out over the executors' long-lived
// sockets and their answers come back on those sockets' readers, which add them to the
// round's tally; the expiry goroutine fails the asks still open at the deadline. No
// goroutine waits for a query or for one of its asks (a truncated answer's retry over TCP
// excepted): whichever goroutine adds the deciding answer sends the client its answer, and
// whichever adds the last does the accounting.
//
// A UDP client's round is recycled (Gateway.rounds) once its decision, its accounting and the
// expiry queue are all done with it (refs). A reader of an executor's socket may still hold
// a reference to it taken before its ask was forgotten (askRef), and a failed send one from
// its outbox: those carry the round's generation (gen), checked under mu before anything
// else of the round is touched, so a late answer never reaches the round's next query.
type round struct {
	g        *Gateway
	qu       query
	req      *dns.Msg     // the client's query
	up       *packedQuery // upq
	start    time.Time
	deadline time.Time
	// front and to say where a UDP client's answer goes; without a front, the decision goes
	// to result (ServeDNS waits for it).
	front  *udpFront
	to     net.Addr
	result chan decision

	completed atomic.Bool  // every ask answered or failed, accounting under way or done
	refs      atomic.Int32 // decision, accounting, expiry queue: the last one recycles it

	mu    sync.Mutex
	gen   uint64 // which use of this round (see askRef); set under mu
	tally voter.Tally[*normalized, uint64]
	asks  []upAsk
	held  bool // the round holds a straggler slot (decided, still waiting for some asks)

	// room for the asks, answers, deciding group and picks of a round of up to inlineK executors
	asksBuf    [inlineK]upAsk
	answersBuf [inlineK]voter.Answer[*normalized, uint64]
	groupBuf   [inlineK]voter.Answer[*normalized, uint64]
	pickedBuf  [inlineK]voter.Member
	// the answers read by parseAnswer, one per ask (slotsBuf for up to inlineK asks)
	slots    []normalized
	slotsBuf [inlineK]normalized
	upq      packedQuery
	wireBuf  [96]byte // upq's bytes, for names of up to 50 or so bytes
}

const inlineK = 3

type decision struct {
	group []voter.Answer[*normalized, uint64]
	ok    bool
}

// upAsk is the question put to one executor.
type upAsk struct {
	m     voter.Member
	sock  *upSock
	id    uint16
	state askState
	held  bool  // OnAcquire was called for it
	last  error // why the last datagram taken for it was refused
}

type askState uint8

const (
	askWaiting askState = iota // on its socket
	askTCP                     // off its socket, asked again over TCP
	askDone
)

var errStragglersFull = fmt.Errorf("dnsgw: %w: as many answered queries already wait for slow executors", context.Canceled)

// refuse records why a datagram taken for ask i was not accepted; the ask goes on waiting
// (a forged datagram must not take the place of the answer), and if no better one comes in
// time this is its failure.
func (r *round) refuse(i int, gen uint64, err error) {
	r.mu.Lock()
	if r.gen == gen && r.asks[i].state != askDone {
		r.asks[i].last = err
	}
	r.mu.Unlock()
}

// add adds ask i's answer (or failure: a.Err) to the tally, unless the ask is over already.
// Replies due to UDP clients go into out. gen is the round's generation the caller's
// reference was taken in: a stale one changes nothing. Past its lock, add touches the round
// only if it decided it or completed it (it holds the decision's or the accounting's
// reference then): another goroutine may complete and recycle it meanwhile.
func (r *round) add(i int, gen uint64, a voter.Answer[*normalized, uint64], out *outbox) {
	r.mu.Lock()
	if r.gen != gen || r.asks[i].state == askDone {
		r.mu.Unlock()
		return
	}
	r.addLocked(i, gen, a, out)
}

// addParsed is add for an answer parseAnswer read into a reader's own src: it is copied
// into the round's slot for ask i (under the round's lock, once the round is known to be
// the one it answers).
func (r *round) addParsed(i int, gen uint64, src *normalized, out *outbox) {
	r.mu.Lock()
	if r.gen != gen || r.asks[i].state == askDone {
		r.mu.Unlock()
		return
	}
	n := &r.slots[i]
	n.copyFrom(src)
	r.addLocked(i, gen, voter.Answer[*normalized, uint64]{Value: n, Key: n.key}, out)
}

// addLocked is add past its checks; r.mu is held, and let go of.
func (r *round) addLocked(i int, gen uint64, a voter.Answer[*normalized, uint64], out *outbox) {
	g := r.g
	ask := &r.asks[i]
	ask.state = askDone
	a.Member, a.Elapsed = ask.m, time.Since(r.start)
	decided, group, ok := r.tally.Add(a)
	var done [inlineK]doneAsk
	over := append(done[:0], ask.done())
	if decided && !r.tally.Complete() {
		if g.straggle.Add(1) <= int64(g.o.MaxInFlight) {
			r.held = true
		} else { // as many rounds already wait for stragglers: these count as unavailable
			g.straggle.Add(-1)
			for j := range r.asks {
				if r.asks[j].state != askDone {
					r.asks[j].state = askDone
					r.tally.Add(voter.Answer[*normalized, uint64]{Member: r.asks[j].m, Err: errStragglersFull, Elapsed: time.Since(r.start)})
					d := r.asks[j].done()
					d.cancelled, d.j = true, j
					over = append(over, d)
				}
			}
		}
	}
	complete := r.tally.Complete()
	r.mu.Unlock()
	for _, d := range over {
		if d.cancelled {
			d.sock.forget(d.id, r, d.j, gen)
		}
		if d.held {
			if f, ok := g.o.Backends.(voter.InFlight); ok {
				f.OnRelease(d.member)
			}
		}
	}
	if decided {
		g.decide(r, group, ok, out)
	}
	if complete {
		g.complete(r)
	}
}

// doneAsk is what add still needs of an ask it ended once it has let go of the round's lock.
type doneAsk struct {
	held      bool // it held its executor (see voter.InFlight): release it
	member    string
	cancelled bool // ended without its answer: take it off its socket
	sock      *upSock
	id        uint16
	j         int
}

// done takes what add needs of ask a it just ended (under the round's lock) and ends its hold.
func (a *upAsk) done() doneAsk {
	d := doneAsk{held: a.held, member: a.m.ID, sock: a.sock, id: a.id}
	a.held = false
	return d
}

// unref drops one of the round's references (refs); the last recycles a UDP client's round.
func (r *round) unref() {
	if r.refs.Add(-1) != 0 || r.front == nil {
		return // a round without a front hands its decision to ServeDNS, which reads it after
	}
	g := r.g
	r.mu.Lock() // a reference that outlived this use may be looking at gen
	r.gen++     // such a reference is stale from here on, before the round is reused
	r.req, r.up, r.to, r.front, r.g = nil, nil, nil, nil, nil
	r.upq = packedQuery{}
	clear(r.answersBuf[:])
	clear(r.groupBuf[:])
	clear(r.pickedBuf[:])
	for i := range r.slotsBuf {
		r.slotsBuf[i].release()
	}
	r.slots = nil
	r.tally.ResetIn(r.answersBuf[:0], 0, false)
	r.mu.Unlock()
	g.rounds.put(r)
}

// question is the round's question for the answers to its use gen, and its wire form (name,
// type, class) appended to dst; false if the round has moved on (copies: a recycled round's
// are overwritten).
func (r *round) question(gen uint64, dst []byte) (dns.Question, []byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen != gen {
		return dns.Question{}, dst, false
	}
	return r.up.q, append(dst, r.up.wire[12:r.up.qend]...), true
}

// expire fails every ask of r still open: an availability dissent, or the reason its last
// datagram was refused.
func (r *round) expire(out *outbox) {
	r.mu.Lock()
	gen := r.gen
	var open []int
	var errs []error
	var socks []*upSock
	var ids []uint16
	for i := range r.asks {
		if r.asks[i].state != askDone {
			open = append(open, i)
			socks, ids = append(socks, r.asks[i].sock), append(ids, r.asks[i].id)
			err := r.asks[i].last
			if err == nil {
				err = fmt.Errorf("dnsgw: no answer in %v: %w", r.g.o.Timeout, context.DeadlineExceeded)
			} else {
				err = fmt.Errorf("dnsgw: no acceptable answer in %v: %w", r.g.o.Timeout, err)
			}
			errs = append(errs, err)
		}
	}
	r.mu.Unlock()
	for j, i := range open {
		if s := socks[j]; s != nil {
			s.forget(ids[j], r, i, gen)
		}
		r.add(i, gen, voter.Answer[*normalized, uint64]{Err: errs[j]}, out)
	}
}

// retryTCP asks ask i's executor again over TCP (its UDP answer was truncated), in a
// goroutine of its own, bounded by the round's deadline. The ask stays open until that
// goroutine adds its answer, so the round is not recycled before.
func (r *round) retryTCP(i int, gen uint64) {
	r.mu.Lock()
	if r.gen != gen || r.asks[i].state != askWaiting {
		r.mu.Unlock()
		return
	}
	r.asks[i].state = askTCP
	// expire may end the ask (and the round be recycled) before this goroutine is done
	g, deadline, q, addr := r.g, r.deadline, r.up.msg(), r.asks[i].m.Addr
	r.mu.Unlock()
	go func() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		var a voter.Answer[*normalized, uint64]
		m, err := exchangeTCP(ctx, q, g.cookie, addr)
		switch {
		case errors.Is(err, ErrMismatch):
			g.metrics.invalid.WithLabelValues("executor", "mismatched").Inc()
		case err == nil && m.Truncated:
			err = fmt.Errorf("%w: truncated over tcp", ErrMalformed)
		case err == nil:
			var n *normalized
			if n, err = normalize(g.seed, m); err == nil {
				a.Value, a.Key = n, n.key
			} else {
				g.metrics.invalid.WithLabelValues("executor", "malformed").Inc()
			}
		}
		a.Err = err
		var out outbox
		r.add(i, gen, a, &out)
		out.flush(g)
	}()
}

// decide answers the client of r: the deciding group's answer, or SERVFAIL.
func (g *Gateway) decide(r *round, group []voter.Answer[*normalized, uint64], ok bool, out *outbox) {
	defer r.unref()
	g.inflight.Add(-1)
	if r.front == nil {
		r.result <- decision{group, ok} // buffered: never blocks
		return
	}
	limit := udpLimit(r.req, g.o.UDPSize)
	if ok {
		room := out.room(limit)
		if wire, built := answerWire(room, r.req, r.up.wire[12:r.up.qend], group, g.o.UDPSize, limit); built {
			out.take(wire)
			out.reply(r.front, wire, r.to)
			g.count(r.qu.transport, "ok", r.start)
			return
		}
	}
	m, outcome := g.reply(r.req, group, ok)
	m.Compress = false // most answers fit without: packing without a compression map is cheaper
	wire, err := m.Pack()
	if err == nil && len(wire) > limit {
		m.Compress = true
		if wire, err = m.Pack(); err == nil && len(wire) > limit {
			m.Truncate(limit)
			wire, err = m.Pack()
			outcome = "truncated"
		}
	}
	if err != nil { // built by the front from records that packed: a bug if not
		g.log.Error("pack answer", "query", r.qu.text(), "error", err)
		wire, _ = new(dns.Msg).SetRcode(r.req, dns.RcodeServerFailure).Pack()
		outcome = "no-consensus"
	}
	out.reply(r.front, wire, r.to)
	g.count(r.qu.transport, outcome, r.start)
}

// complete does the accounting of a round every ask of which is over.
func (g *Gateway) complete(r *round) {
	r.completed.Store(true)
	g.account(&r.qu, r.tally.Round())
	if r.held {
		g.straggle.Add(-1)
	}
	g.pending.Done()
	r.unref()
}

// udpLimit is the size a UDP answer to r may have: the client's EDNS(0) buffer size within
// 512..udpSize, 512 without EDNS.
func udpLimit(r *dns.Msg, udpSize int) int {
	if opt := r.IsEdns0(); opt != nil {
		return min(max(int(opt.UDPSize()), dns.MinMsgSize), udpSize)
	}
	return dns.MinMsgSize
}

// outbox gathers the datagrams one goroutine has to send, for one batched write per socket
// (sendmmsg on Linux): the executors' questions and the UDP clients' answers.
type outbox struct {
	asks, batch, rest    []outAsk
	replies, restReplies []outReply
	arena                []byte
	ms                   []ipv4.Message
	bufs                 [][]byte // the Buffers of ms
	oob                  []byte   // the control messages of ms
	ends                 []int    // where each segmented run of a batch ends
	run                  [][]byte // the datagrams of one run
	replyBatch           []outReply
}

// message is an ipv4.Message of the one buffer b (its Buffers in o.bufs, reused).
func (o *outbox) message(b []byte, to net.Addr) ipv4.Message {
	o.bufs = append(o.bufs, b)
	n := len(o.bufs)
	return ipv4.Message{Buffers: o.bufs[n-1 : n : n], Addr: to}
}

type outAsk struct {
	r    *round
	i    int
	gen  uint64
	sock *upSock
	id   uint16
	b    []byte
}

type outReply struct {
	f  *udpFront
	b  []byte
	to net.Addr
}

// room is room for n bytes in the arena: a slice of length 0 to append to, and take.
func (o *outbox) room(n int) []byte {
	if cap(o.arena)-len(o.arena) < n {
		o.arena = make([]byte, 0, max(32<<10, n)) // the old one stays with what is queued in it
	}
	return o.arena[len(o.arena):len(o.arena):cap(o.arena)]
}

// take keeps b, appended to room's slice within its capacity, in the arena.
func (o *outbox) take(b []byte) { o.arena = o.arena[:len(o.arena)+len(b)] }

// ask queues ask i of r: the packed question with the ask's ID.
func (o *outbox) ask(r *round, i int) {
	wire := r.up.wire
	b := append(o.room(len(wire)), wire...)
	o.take(b)
	id := r.asks[i].id
	b[0], b[1] = byte(id>>8), byte(id)
	o.asks = append(o.asks, outAsk{r: r, i: i, gen: r.gen, sock: r.asks[i].sock, id: id, b: b})
}

func (o *outbox) reply(f *udpFront, b []byte, to net.Addr) {
	if b == nil {
		return
	}
	o.replies = append(o.replies, outReply{f, b, to})
}

// flush sends everything queued: the questions first (a failed send fails its ask, which
// may decide a round and queue an answer), then the answers.
func (o *outbox) flush(g *Gateway) {
	for len(o.asks) > 0 {
		s := o.asks[0].sock
		batch, rest := o.batch[:0], o.rest[:0]
		for _, a := range o.asks {
			if a.sock == s {
				batch = append(batch, a)
			} else {
				rest = append(rest, a)
			}
		}
		o.asks, o.rest = rest, o.asks[:0]
		sendBatch(o, g, &s.udpConn, batch, askBytes, noAddr, sameSocket, func(a outAsk, err error) {
			// adding a failure queues at most an answer, never an ask
			s.forget(a.id, a.r, a.i, a.gen)
			a.r.add(a.i, a.gen, voter.Answer[*normalized, uint64]{Err: fmt.Errorf("dnsgw: send: %w", err)}, o)
		})
		clear(batch)
		o.batch = batch[:0]
	}
	clear(o.rest)
	for len(o.replies) > 0 {
		f := o.replies[0].f
		batch, rest := o.replyBatch[:0], o.restReplies[:0]
		for _, rp := range o.replies {
			if rp.f == f {
				batch = append(batch, rp)
			} else {
				rest = append(rest, rp)
			}
		}
		sendBatch(o, g, &f.udpConn, batch, replyBytes, replyAddr, byClient, func(rp outReply, err error) {
			g.log.Debug("write answer", "client", rp.to.String(), "error", err)
		})
		clear(batch)
		clear(o.replies)
		o.replyBatch, o.replies, o.restReplies = batch[:0], rest, o.replies[:0]
	}
	o.arena = o.arena[:0]
}

// sendBatch writes the datagrams of items (bytes, to) over u, in segmented runs (see
// segment.go; dest orders them by destination) while u.segment holds, and calls failed for
// each one it could not send. A run that fails is sent again one datagram at a time (an
// executor's ICMP error fails a send, whatever it carries); one the kernel refuses for its
// segmentation (segmentRefused) also turns u.segment off.
func sendBatch[T any](o *outbox, g *Gateway, u *udpConn, items []T,
	bytes func(T) []byte, to func(T) net.Addr, dest func(a, b T) int, failed func(T, error)) {
	if len(items) < 2 || !u.segment.Load() {
		sendEach(o, u, items, bytes, to, failed)
		return
	}
	ms := o.ms[:0]
	ends := segmentRuns(items, bytes, dest, o.ends[:0])
	from := 0
	for _, end := range ends {
		bs := o.run[:0]
		for _, it := range items[from:end] {
			bs = append(bs, bytes(it))
		}
		ms = append(ms, o.segmented(bs, to(items[from])))
		clear(bs)
		o.run = bs[:0]
		from = end
	}
	fails := writeAll(u.bc, ms)
	o.release(ms)
	for _, f := range fails {
		from, end := 0, ends[f.i]
		if f.i > 0 {
			from = ends[f.i-1]
		}
		if end-from == 1 {
			failed(items[from], f.err)
			continue
		}
		if segmentRefused(f.err) && u.segment.Swap(false) {
			g.log.Info("udp segmentation offload refused: sending one datagram at a time", "socket", u.name(), "error", f.err)
		}
		sendEach(o, u, items[from:end], bytes, to, failed)
	}
	o.ends = ends[:0]
}

// sendEach writes the datagrams of items one per sendmmsg entry and calls failed for each one
// it could not send.
func sendEach[T any](o *outbox, u *udpConn, items []T, bytes func(T) []byte, to func(T) net.Addr, failed func(T, error)) {
	ms := o.ms[:0]
	for _, it := range items {
		ms = append(ms, o.message(bytes(it), to(it)))
	}
	for _, f := range writeAll(u.bc, ms) {
		failed(items[f.i], f.err)
	}
	o.release(ms)
}

// release empties ms and the buffers and control messages it used, for the next batch.
func (o *outbox) release(ms []ipv4.Message) {
	clear(ms)
	o.ms = ms[:0]
	clear(o.bufs)
	o.bufs = o.bufs[:0]
	o.oob = o.oob[:0]
}

type sendFailure struct {
	i   int
	err error
}

// writeAll writes ms in as few batches as it can; a message that cannot be sent (twice in
// a row: a connected socket reports an earlier ICMP error on the next send) is given up.
func writeAll(bc *ipv4.PacketConn, ms []ipv4.Message) []sendFailure {
	var failed []sendFailure
	for off := 0; off < len(ms); {
		n, err := bc.WriteBatch(ms[off:], 0)
		if n > 0 {
			off += n
			continue
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				for i := off; i < len(ms); i++ {
					failed = append(failed, sendFailure{i, err})
				}
				return failed
			}
			if n, err = bc.WriteBatch(ms[off:], 0); n > 0 {
				off += n
				continue
			}
		}
		if err == nil {
			err = errors.New("nothing sent")
		}
		failed = append(failed, sendFailure{off, err})
		off++
	}
	return failed
}

// expiry fails the asks still open at their round's deadline. Every round has the same
// timeout, so the queue is in deadline order; rounds that completed are dropped from its
// head every expiryTick at least, so it holds about expiryTick's worth of finished rounds.
type expiry struct {
	mu      sync.Mutex
	q       []*round
	head    int
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

const expiryTick = 20 * time.Millisecond

func (e *expiry) push(g *Gateway, r *round) {
	e.once.Do(func() {
		e.wake, e.stop, e.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go e.run(g)
	})
	e.mu.Lock()
	idle := e.head == len(e.q)
	e.q = append(e.q, r)
	e.mu.Unlock()
	if idle {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

func (e *expiry) run(g *Gateway) {
	defer close(e.stopped)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []*round
	var out outbox
	for {
		now := time.Now()
		e.mu.Lock()
		for e.head < len(e.q) {
			r := e.q[e.head]
			if !r.completed.Load() {
				if r.deadline.After(now) {
					break
				}
				due = append(due, r)
			} else {
				r.unref()
			}
			e.q[e.head] = nil
			e.head++
		}
		if e.head == len(e.q) || e.head > 4096 && 2*e.head > len(e.q) {
			e.q = append(e.q[:0], e.q[e.head:]...)
			e.head = 0
		}
		wait := time.Duration(-1)
		if e.head < len(e.q) {
			wait = min(time.Until(e.q[e.head].deadline), expiryTick) + time.Millisecond
		}
		e.mu.Unlock()
		for i, r := range due {
			r.expire(&out)
			r.unref()
			due[i] = nil
		}
		due = due[:0]
		out.flush(g)
		if wait >= 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-e.wake:
			case <-e.stop:
				return
			}
			continue
		}
		select {
		case <-e.wake:
		case <-e.stop:
			return
		}
	}
}

// close stops the expiry goroutine (once no round is pending).
func (e *expiry) close() {
	e.once.Do(func() {}) // never started: nothing to stop
	if e.stop == nil {
		return
	}
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.stopped
}

// roundPool keeps the rounds of UDP clients done with (see round) for the next queries: a
// round is the front's largest allocation per query. It is a stack (the last round put is
// the next one taken, still in cache) of at most maxPooled.
type roundPool struct {
	mu   sync.Mutex
	free []*round
}

const maxPooled = 4096

func (p *roundPool) get() *round {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		r := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return r
	}
	return new(round)
}

func (p *roundPool) put(r *round) {
	p.mu.Lock()
	if len(p.free) < maxPooled {
		p.free = append(p.free, r)
	}
	p.mu.Unlock()
}
