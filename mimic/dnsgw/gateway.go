package dnsgw

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/mimic/voter"
)

// Options configure a Gateway. Zero values take the documented defaults.
type Options struct {
	Backends voter.Backends  // required; each Member's Addr is host:port
	Bus      *bus.Bus        // optional
	Logger   *slog.Logger    // optional
	Rebuild  func(id string) // optional: called (in its own goroutine) by the dissent policy
	Metrics  *Metrics        // optional
	// Blocklist, when set, is asked for every client before anything else: a blocked client's
	// UDP query is dropped (no reflection), its TCP query REFUSED.
	Blocklist Blocklist

	K         int    // executors per query, default 3
	Quorum    int    // equivalent answers needed, default a majority of k
	Scheduler string // random (default), round-robin, trust-weighted, max-diversity
	WaitAll   bool   // answer only when all k answered or timed out

	Timeout time.Duration // per executor query, UDP and its TCP retry together, default 2s
	// TTLTolerance: TTLs of the deciding group that exceed its lowest by more than this make
	// their executor a dissenter (the answer carries the lowest anyway); default 1h. A cache
	// counts TTLs down, so an honest difference can be as large as the record's TTL.
	TTLTolerance time.Duration
	// UDPSize bounds a UDP answer: the client's EDNS(0) buffer size is respected up to it
	// (512 without EDNS); a longer answer is truncated (TC set) so the client asks over TCP.
	// Default 1232, at least 512. It is also the size the front advertises to executors.
	UDPSize int
	// MaxQueryBytes: a longer client message is dropped (UDP) or ends its connection (TCP)
	// unread; default 512.
	MaxQueryBytes int
	// Rate and Burst bound each client's queries (per address, IPv6 per /64): over them a UDP
	// query is dropped and a TCP one REFUSED. Defaults 200/s and 400; Rate < 0: no bound.
	Rate  float64
	Burst int
	// MaxInFlight bounds the queries being voted at once, default 1024; above, a query is
	// dropped (UDP) or answered SERVFAIL (TCP). As many answered queries may still wait for
	// slow servers (for their dissent); beyond that their asks are cancelled, an availability
	// dissent.
	MaxInFlight int
	// MaxTCPConns and MaxTCPPerClient bound open TCP connections (defaults 256 and 16).
	MaxTCPConns, MaxTCPPerClient int
	// TCPReadTimeout bounds the first query on a connection, TCPIdleTimeout the wait for the
	// next, WriteTimeout each answer (defaults 2s, 8s, 2s).
	TCPReadTimeout, TCPIdleTimeout, WriteTimeout time.Duration

	TrustWindow        int           // queries in each executor's trust window, default 100
	RebuildThreshold   int           // dissents within RebuildWindow that call Rebuild (0: never)
	RebuildWindow      time.Duration // default 1m
	EjectAfter         int           // consecutive availability failures that eject, default 3; < 0 never
	EjectFor, EjectMax time.Duration // defaults 1s and 30s
}

func (o *Options) defaults() {
	if o.K <= 0 {
		o.K = 3
	}
	if o.Quorum == 0 {
		o.Quorum = o.K/2 + 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.TTLTolerance <= 0 {
		o.TTLTolerance = time.Hour
	}
	if o.UDPSize <= 0 {
		o.UDPSize = 1232
	}
	o.UDPSize = min(max(o.UDPSize, dns.MinMsgSize), dns.MaxMsgSize)
	if o.MaxQueryBytes <= 0 {
		o.MaxQueryBytes = 512
	}
	if o.Rate == 0 {
		o.Rate = 200
	}
	if o.Burst <= 0 {
		o.Burst = max(int(2*o.Rate), 1)
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.MaxTCPConns <= 0 {
		o.MaxTCPConns = 256
	}
	if o.MaxTCPPerClient <= 0 {
		o.MaxTCPPerClient = 16
	}
	if o.TCPReadTimeout <= 0 {
		o.TCPReadTimeout = 2 * time.Second
	}
	if o.TCPIdleTimeout <= 0 {
		o.TCPIdleTimeout = 8 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Blocklist says whether a client address is blocked (countermeasure.Blocklist fits).
type Blocklist interface {
	Blocked(netip.Addr) bool
}

// Gateway is the voting DNS front. It is a dns.Handler; Listen serves it over UDP and TCP.
type Gateway struct {
	o        Options
	log      *slog.Logger
	core     *voter.Core
	metrics  *Metrics
	seed     maphash.Seed
	up       upstreams
	stat     counters
	rate     *rateLimit
	inflight atomic.Int64 // queries being voted (at most MaxInFlight)
	straggle atomic.Int64 // rounds answered and still waiting for slow executors (at most MaxInFlight)
	expiry   expiry
	seq      atomic.Uint64
	idPrefix string
	cookie   string  // the gateway's client cookie for the executors (hex, 8 bytes)
	cookieB  [8]byte // cookie's bytes
	pending  pending // rounds whose accounting is not done
	rounds   roundPool

	mu      sync.Mutex
	servers []*dns.Server
	fronts  []*udpFront
}

// New builds a gateway; it does not listen (see Listen).
func New(o Options) (*Gateway, error) {
	o.defaults()
	if o.Backends == nil {
		return nil, errors.New("dnsgw: no backends")
	}
	if o.Quorum < 1 || o.Quorum > o.K {
		return nil, fmt.Errorf("dnsgw: quorum %d outside 1..k=%d", o.Quorum, o.K)
	}
	g := &Gateway{
		o:        o,
		log:      o.Logger.With("component", "dnsgw"),
		metrics:  o.Metrics,
		seed:     maphash.MakeSeed(),
		idPrefix: "dns-" + strconv.FormatUint(rand.Uint64()&0xffffffff, 16) + "-",
	}
	binary.BigEndian.PutUint64(g.cookieB[:], rand.Uint64())
	g.cookie = hex.EncodeToString(g.cookieB[:])
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	g.up = upstreams{m: map[string]*upMux{}, g: g}
	if o.Rate > 0 {
		g.rate = newRateLimit(o.Rate, o.Burst)
	}
	if o.Quorum <= o.K/2 {
		g.log.Warn("weak vote: fewer than a majority of k executors decide each query", "k", o.K, "quorum", o.Quorum)
	}
	var err error
	g.core, err = voter.New(voter.Options{Source: "dns", Bus: o.Bus, Logger: g.log, Rebuild: o.Rebuild, Metrics: g.metrics.core,
		Scheduler: o.Scheduler, TrustWindow: o.TrustWindow, RebuildThreshold: o.RebuildThreshold, RebuildWindow: o.RebuildWindow,
		EjectAfter: o.EjectAfter, EjectFor: o.EjectFor, EjectMax: o.EjectMax})
	if err != nil {
		return nil, fmt.Errorf("dnsgw: %w", err)
	}
	return g, nil
}

// Trust exposes the per-executor trust scores.
func (g *Gateway) Trust() *voter.Trust { return g.core.Trust() }

// Tighten applies the agent's vigilance (voter.Core.Tighten): at least k servers answer each
// query, the quorum a majority of those asked but never below Options.Quorum, and a server
// is rebuilt after threshold dissents when that is fewer than Options.RebuildThreshold; k ≤
// Options.K and threshold ≤ 0 restore the configured behaviour.
func (g *Gateway) Tighten(k, threshold int) { g.core.Tighten(k, threshold) }

// Voters returns how many servers a query is asked of with n in service, and its quorum.
func (g *Gateway) Voters(n int) (k, quorum int) { return g.core.Voters(g.o.K, g.o.Quorum, n) }

// Wait blocks until the accounting of answered queries (dissent, trust) is done.
func (g *Gateway) Wait() { g.pending.Wait() }

// Malformed is the number of client messages that could not be parsed.
func (g *Gateway) Malformed() uint64 { return g.stat.malformed.Load() }

// query is one client query on its way. Its ID and text are made only for an event or a
// log line (most queries have neither).
type query struct {
	prefix    string
	seq       uint64
	client    netip.Addr
	transport string
	q         dns.Question
}

func (qu *query) id() string   { return qu.prefix + strconv.FormatUint(qu.seq, 16) }
func (qu *query) text() string { return qu.q.Name + " " + dns.Type(qu.q.Qtype).String() } // "example.org. A"

func (g *Gateway) count(transport, outcome string, start time.Time) {
	g.metrics.count(transport, outcome, time.Since(start))
}

// ServeDNS answers one client query (Listen serves UDP without it: see udpFront).
func (g *Gateway) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	transport := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		transport = "tcp"
	}
	client := addrOf(w.RemoteAddr())
	if !g.screen(client, transport, start) {
		if transport == "tcp" {
			g.write(w, new(dns.Msg).SetRcode(r, dns.RcodeRefused))
		}
		return // UDP: dropped, so a spoofed source gains no reflected traffic
	}
	if !g.acquire(transport, start) {
		if transport == "tcp" {
			g.write(w, new(dns.Msg).SetRcode(r, dns.RcodeServerFailure))
		}
		return
	}
	if m := g.refusal(r, transport, start); m != nil {
		g.inflight.Add(-1)
		g.write(w, m)
		return
	}
	qu := query{prefix: g.idPrefix, seq: g.seq.Add(1), client: client, transport: transport, q: r.Question[0]}
	var out outbox
	rd, m := g.begin(r, qu, start, nil, nil, &out)
	out.flush(g)
	if m != nil {
		g.inflight.Add(-1)
		g.write(w, m)
		return
	}
	d := <-rd.result
	m, outcome := g.reply(r, d.group, d.ok)
	if transport == "udp" {
		if limit := udpLimit(r, g.o.UDPSize); m.Len() > limit {
			m.Truncate(limit)
			outcome = "truncated"
		}
	}
	g.write(w, m)
	g.count(transport, outcome, start)
}

// screen applies the blocklist and the rate bound to a client's message: false, it is
// dropped (UDP; no reflected traffic for a spoofed source) or refused (TCP).
func (g *Gateway) screen(client netip.Addr, transport string, start time.Time) bool {
	if g.o.Blocklist != nil && g.o.Blocklist.Blocked(client) {
		g.count(transport, "blocked", start)
		return false
	}
	if g.rate != nil && !g.rate.allow(client, start) {
		g.count(transport, "rate-limited", start)
		return false
	}
	return true
}

// acquire takes one of the MaxInFlight slots of queries being voted (given back at the
// decision); false, there is none.
func (g *Gateway) acquire(transport string, start time.Time) bool {
	if g.inflight.Add(1) > int64(g.o.MaxInFlight) {
		g.inflight.Add(-1)
		g.count(transport, "overloaded", start)
		return false
	}
	return true
}

// refusal is the answer to a query that is not asked of the executors (see validQuery),
// nil for one that is.
func (g *Gateway) refusal(r *dns.Msg, transport string, start time.Time) *dns.Msg {
	rcode, why := validQuery(r)
	if rcode == dns.RcodeSuccess {
		return nil
	}
	g.metrics.invalid.WithLabelValues("client", why).Inc()
	g.count(transport, "refused", start)
	m := new(dns.Msg).SetRcode(r, rcode)
	if rcode == dns.RcodeBadVers {
		m.SetEdns0(uint16(g.o.UDPSize), false)
		m.Rcode = dns.RcodeBadVers
	}
	return m
}

// begin starts the vote on a valid query, its questions queued in out: a round whose
// decision goes to the client at to over front, or to the round's result without a front.
// Without enough executors it returns SERVFAIL to send instead. The caller holds an
// in-flight slot (acquire), which the round gives back at its decision.
func (g *Gateway) begin(r *dns.Msg, qu query, start time.Time, front *udpFront, to net.Addr, out *outbox) (*round, *dns.Msg) {
	all := g.o.Backends.Backends()
	g.up.prune(all, start)
	k, quorum := g.core.Voters(g.o.K, g.o.Quorum, len(all))
	var rd *round
	if front != nil { // a recycled one (see round): late answers to its last use may still hold it
		rd = g.rounds.get()
	} else {
		rd = new(round)
	}
	rd.mu.Lock() // no answer is taken before every ask is set, and a stale one sees the new gen
	rd.gen++
	gen := rd.gen
	picked, err := g.core.Choose(rd.pickedBuf[:0], all, k, quorum, start)
	if err != nil {
		rd.mu.Unlock()
		if front != nil {
			g.rounds.put(rd)
		}
		g.core.NoConsensus(qu.text(), g.attrs(&qu, map[string]any{"reason": "too few executors", "quorum": quorum}))
		g.count(qu.transport, "no-consensus", start)
		return nil, new(dns.Msg).SetRcode(r, dns.RcodeServerFailure)
	}
	if err := rd.upq.pack(rd.wireBuf[:], r, g.o.UDPSize, g.cookie); err != nil { // the question parsed, so it packs; a bug if not
		rd.mu.Unlock()
		if front != nil {
			g.rounds.put(rd)
		}
		g.count(qu.transport, "refused", start)
		return nil, new(dns.Msg).SetRcode(r, dns.RcodeServerFailure)
	}
	rd.g, rd.qu, rd.req, rd.up, rd.start, rd.deadline, rd.front, rd.to = g, qu, r, &rd.upq, start, start.Add(g.o.Timeout), front, to
	rd.held = false
	rd.completed.Store(false)
	rd.refs.Store(3) // the decision, the accounting, the expiry queue
	if front == nil {
		rd.result = make(chan decision, 1)
	}
	if n := len(picked); n <= inlineK {
		rd.asksBuf = [inlineK]upAsk{}
		rd.tally.ResetIn(rd.answersBuf[:n], quorum, g.o.WaitAll)
		rd.tally.GroupIn(rd.groupBuf[:])
		rd.asks = rd.asksBuf[:n]
		rd.slots = rd.slotsBuf[:n]
	} else {
		rd.tally.Reset(n, quorum, g.o.WaitAll)
		rd.tally.GroupIn(nil)
		rd.asks = make([]upAsk, n)
		rd.slots = make([]normalized, n)
	}
	g.pending.Add(1)
	held, _ := g.o.Backends.(voter.InFlight) // the pool drains an executor before it stops it
	var failed []int
	var errs []error
	for i, m := range picked {
		a := &rd.asks[i]
		a.m = m
		if held != nil {
			held.OnAcquire(m.ID)
			a.held = true
		}
		s, id, err := g.up.register(m.Addr, rd, i)
		if err != nil {
			failed, errs = append(failed, i), append(errs, err)
			continue
		}
		a.sock, a.id = s, id
	}
	rd.mu.Unlock()
	for i := range rd.asks {
		if rd.asks[i].sock != nil {
			out.ask(rd, i)
		}
	}
	g.expiry.push(g, rd)
	for j, i := range failed {
		rd.add(i, gen, voter.Answer[*normalized, uint64]{Err: errs[j]}, out)
	}
	return rd, nil
}

// reply is the client's answer to r: the deciding group's (ok), or SERVFAIL; and the outcome
// it is counted as.
func (g *Gateway) reply(r *dns.Msg, group []voter.Answer[*normalized, uint64], ok bool) (*dns.Msg, string) {
	if !ok {
		return new(dns.Msg).SetRcode(r, dns.RcodeServerFailure), "no-consensus"
	}
	return g.answer(r, group), "ok"
}

func (g *Gateway) write(w dns.ResponseWriter, m *dns.Msg) {
	if err := w.WriteMsg(m); err != nil {
		g.log.Debug("write answer", "client", w.RemoteAddr().String(), "error", err)
	}
}

// validQuery returns the rcode a query is refused with (success: it may be asked) and why.
// miekg/dns has already refused messages that are not single-question queries (see
// acceptQuery) or that do not parse.
func validQuery(r *dns.Msg) (int, string) {
	if r.Response || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		return dns.RcodeFormatError, "not-a-query"
	}
	if len(r.Answer) > 0 || len(r.Ns) > 0 {
		return dns.RcodeFormatError, "records-in-query"
	}
	for _, rr := range r.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			return dns.RcodeRefused, "additional-records" // TSIG and the like: not supported
		}
	}
	if opt := r.IsEdns0(); opt != nil && opt.Version() != 0 {
		return dns.RcodeBadVers, "edns-version"
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET {
		return dns.RcodeRefused, "class"
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeNone:
		return dns.RcodeRefused, "qtype" // zone transfers and meta types are not voted on
	}
	return dns.RcodeSuccess, ""
}

// acceptQuery is the miekg/dns server's first check, on the header alone: responses are
// ignored, other opcodes NOTIMP, anything but one question and at most one additional
// record (OPT) FORMERR.
func acceptQuery(h dns.Header) dns.MsgAcceptAction {
	if h.Bits&(1<<15) != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(h.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if h.Qdcount != 1 || h.Ancount != 0 || h.Nscount != 0 || h.Arcount > 1 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// upstreamQuery is the question the executors get: the client's question and its RD, CD and
// DO bits, in a message the gateway builds itself (its ID is set per executor), with the
// gateway's own EDNS buffer size and options: an NSID request (each server names itself in
// its answer, which dissent events report) and the gateway's client cookie (RFC 7873: an
// answer must echo it), never the client's.
func upstreamQuery(r *dns.Msg, udpSize int, cookie string) *dns.Msg {
	q := new(dns.Msg)
	q.Question = []dns.Question{r.Question[0]}
	q.Opcode = dns.OpcodeQuery
	q.RecursionDesired = r.RecursionDesired
	q.CheckingDisabled = r.CheckingDisabled
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	q.SetEdns0(uint16(udpSize), do)
	opt := q.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID}, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
	return q
}

// packedQuery is the executors' question, packed once (ID 0; each ask sets its own): the
// bytes upstreamQuery(client, udpSize, cookie) packs to, built without the message.
type packedQuery struct {
	client  *dns.Msg // the client's query, for msg
	udpSize int
	cookie  string
	q       dns.Question
	wire    []byte
	qend    int // wire[12:qend] is the question: name, type, class
}

// msg is the question as a message (for a retry over TCP).
func (p *packedQuery) msg() *dns.Msg { return upstreamQuery(p.client, p.udpSize, p.cookie) }

// packQuery packs upstreamQuery(r, udpSize, cookie) (cookie: 16 hex digits) without building
// it; TestUpstreamWire and FuzzClientQuery hold the two to the same bytes.
func packQuery(r *dns.Msg, udpSize int, cookie string) (*packedQuery, error) {
	p := new(packedQuery)
	return p, p.pack(nil, r, udpSize, cookie)
}

// pack is packQuery into p, the bytes in buf if it is long enough (a round's own array).
func (p *packedQuery) pack(buf []byte, r *dns.Msg, udpSize int, cookie string) error {
	q := r.Question[0]
	var ck [8]byte
	if n, err := hex.Decode(ck[:], []byte(cookie)); err != nil || n != len(ck) {
		return fmt.Errorf("dnsgw: client cookie %q", cookie)
	}
	// the name's wire form is at most a byte longer than its text; the rest is fixed
	if n := 12 + len(q.Name) + 1 + 4 + 11 + 4 + 4 + len(ck); n <= len(buf) {
		buf = buf[:n]
		clear(buf)
	} else {
		buf = make([]byte, n)
	}
	if r.RecursionDesired {
		buf[2] |= 1
	}
	if r.CheckingDisabled {
		buf[3] |= 0x10
	}
	buf[5], buf[11] = 1, 1 // one question, one additional record (OPT)
	off, err := dns.PackDomainName(q.Name, buf, 12, nil, false)
	if err != nil {
		return err
	}
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	var flags byte
	if do {
		flags = 0x80
	}
	tail := []byte{
		byte(q.Qtype >> 8), byte(q.Qtype), byte(q.Qclass >> 8), byte(q.Qclass),
		0, 0, 41, byte(udpSize >> 8), byte(udpSize), 0, 0, flags, 0, 0, 16, // OPT: root, type 41, class = size, TTL, rdlength 16
		0, 3, 0, 0, // NSID, empty: a request
		0, 10, 0, 8, // COOKIE, the client cookie alone
	}
	if n := off + len(tail) + len(ck); n > dns.MinMsgSize || n > len(buf) {
		return fmt.Errorf("dnsgw: question of %d bytes", n)
	}
	qend := off + 4
	off += copy(buf[off:], tail)
	off += copy(buf[off:], ck[:])
	*p = packedQuery{client: r, udpSize: udpSize, cookie: cookie, q: q, wire: buf[:off:off], qend: qend}
	return nil
}

// nsidOf returns the NSID an answer carries, as text ("" without).
func nsidOf(m *dns.Msg) string {
	opt := m.IsEdns0()
	if opt == nil {
		return ""
	}
	for _, o := range opt.Option {
		if n, ok := o.(*dns.EDNS0_NSID); ok {
			b, err := hex.DecodeString(n.Nsid)
			if err != nil {
				return ""
			}
			return excerpt(string(b))
		}
	}
	return ""
}

// answer builds the client's answer from the deciding group: the first member's rcode and
// voted records in its order (each record once), every TTL the group's lowest for that
// record, flags AA, RA and AD only when every member of the group set them (AD only when the
// client asked with DO or AD), no additional records but the gateway's own OPT.
func (g *Gateway) answer(r *dns.Msg, group []voter.Answer[*normalized, uint64]) *dns.Msg {
	win := group[0].Value
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	m.Rcode = win.rcode
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.Authoritative, m.RecursionAvailable, m.AuthenticatedData = groupFlags(r, group)
	opt := r.IsEdns0()
	// the records in the first member's order, once each
	sections := votedSections(win.message())
	pos := map[[2]int]int{}
	for i, rec := range win.recs {
		pos[[2]int{rec.sec, rec.idx}] = i
	}
	for sec, rrs := range sections {
		var out []dns.RR
		for idx, rr := range rrs {
			i, ok := pos[[2]int{sec, idx}]
			if !ok {
				continue // a duplicate
			}
			c := dns.Copy(rr)
			c.Header().Ttl = lowestTTL(group, i)
			out = append(out, c)
		}
		if sec == 0 {
			m.Answer = out
		} else {
			m.Ns = out
		}
	}
	if opt != nil {
		m.SetEdns0(uint16(g.o.UDPSize), opt.Do())
	}
	return m
}

// groupFlags is the client's AA, RA and AD for query r: set only when every member of the
// deciding group set them, AD only when the client asked with DO or AD.
func groupFlags(r *dns.Msg, group []voter.Answer[*normalized, uint64]) (aa, ra, ad bool) {
	aa, ra, ad = true, true, true
	for _, a := range group {
		aa, ra, ad = aa && a.Value.aa, ra && a.Value.ra, ad && a.Value.ad
	}
	opt := r.IsEdns0()
	return aa, ra, ad && (r.AuthenticatedData || opt != nil && opt.Do())
}

// lowestTTL is the deciding group's lowest TTL for the first member's record i (the members'
// records are sorted alike: the group agreed on them).
func lowestTTL(group []voter.Answer[*normalized, uint64], i int) uint32 {
	ttl := group[0].Value.recs[i].ttl
	for _, a := range group[1:] {
		if i < len(a.Value.recs) {
			ttl = min(ttl, a.Value.recs[i].ttl)
		}
	}
	return ttl
}

// ttlRoom is room for n TTLs, in room when they fit.
func ttlRoom(room *[16]uint32, n int) []uint32 {
	if n <= len(room) {
		return room[:n]
	}
	return make([]uint32, n)
}

// ttlMark sets apart the key of an answer whose TTLs exceed the deciding group's lowest by
// more than the tolerance, so the accounting counts it as a content dissent.
const ttlMark = 0x9e3779b97f4a7c15

// account marks TTL outliers of the deciding group and hands the round to the voter core.
func (g *Gateway) account(qu *query, round *voter.Round[*normalized, uint64]) {
	now := time.Now()
	if round.Winner >= 0 {
		g.markTTL(round)
	}
	voter.Account(g.core, round, voter.Report[*normalized, uint64]{
		Describe: func() (map[string]any, []any) {
			return g.attrs(qu, nil), []any{"request", qu.id(), "client", clientText(qu.client), "query", qu.text(), "transport", qu.transport}
		},
		Differs: func(a, win *voter.Answer[*normalized, uint64]) any {
			if a.Value.ttlExcess != "" {
				return Differs{TTL: a.Value.ttlExcess}
			}
			return differs(a.Value, win.Value)
		},
		Extra: func(a, _ *voter.Answer[*normalized, uint64], attrs map[string]any) {
			if id := nsidOf(a.Value.message()); id != "" {
				attrs["nsid"] = id // the server's own name for itself
			}
		},
		Vote: func(a *voter.Answer[*normalized, uint64]) any {
			return dns.RcodeToString[a.Value.rcode] + " " + strconv.FormatUint(a.Key, 16)
		},
		Reachable: func(err error) bool {
			return !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMismatch) && !errors.Is(err, context.Canceled)
		},
	}, now)
}

func (g *Gateway) markTTL(round *voter.Round[*normalized, uint64]) {
	idx := round.Group()
	win := round.Answers[round.Winner].Value
	var room [16]uint32
	lowest := ttlRoom(&room, len(win.recs))
	for i := range win.recs {
		lowest[i] = win.recs[i].ttl
		for _, j := range idx {
			if recs := round.Answers[j].Value.recs; i < len(recs) {
				lowest[i] = min(lowest[i], recs[i].ttl)
			}
		}
	}
	tol := uint64(g.o.TTLTolerance / time.Second)
	var marked []int
	for _, j := range idx {
		a := &round.Answers[j]
		for i, rec := range a.Value.recs {
			if i < len(lowest) && uint64(rec.ttl) > uint64(lowest[i])+tol {
				a.Value.ttlExcess = fmt.Sprintf("%d, want at most %d+%d", rec.ttl, lowest[i], tol)
				marked = append(marked, j)
				break
			}
		}
	}
	if len(marked) == 0 {
		return
	}
	key := round.Answers[round.Winner].Key
	for _, j := range marked {
		round.Answers[j].Key ^= ttlMark
	}
	for _, j := range idx { // the winner must be one that kept its key
		if round.Answers[j].Key == key {
			round.Winner = j
			return
		}
	}
}

func (g *Gateway) attrs(qu *query, extra map[string]any) map[string]any {
	m := map[string]any{
		"request": qu.id(), "query": qu.text(), "qname": qu.q.Name, "qtype": dns.Type(qu.q.Qtype).String(),
		"client": clientText(qu.client), "transport": qu.transport, "protocol": "dns",
		// what the engine reads of a gateway event
		"path": qu.text(), "method": "QUERY",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func clientText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func addrOf(a net.Addr) netip.Addr {
	switch x := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(x.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(x.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// pending counts rounds whose accounting is not done. Unlike a sync.WaitGroup it may be
// waited on while new rounds start (each query starts one, whenever a client asks).
type pending struct {
	mu   sync.Mutex
	cond sync.Cond
	n    int
}

func (p *pending) Add(n int) {
	p.mu.Lock()
	p.n += n
	if p.n == 0 && p.cond.L != nil {
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

func (p *pending) Done() { p.Add(-1) }

// Wait blocks until no round is pending.
func (p *pending) Wait() {
	p.mu.Lock()
	if p.cond.L == nil {
		p.cond.L = &p.mu
	}
	for p.n > 0 {
		p.cond.Wait()
	}
	p.mu.Unlock()
}
