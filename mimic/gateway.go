package mimic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/mimic/voter"
)

// Bus event kinds published by the gateway (all but noise-learned are the voter core's).
const (
	EventDissent      = voter.EventDissent
	EventNoConsensus  = voter.EventNoConsensus
	EventNoiseLearned = "gateway.noise-learned"
	EventRebuild      = voter.EventRebuild
	EventEjected      = voter.EventEjected // an executor is left out of the picks for a while
	EventBack         = voter.EventBack    // ... and is back after answering its probe
)

// Dissent kinds.
const (
	DissentContent      = voter.DissentContent      // answered, but not like the decision
	DissentAvailability = voter.DissentAvailability // timed out, failed, or sent an oversized body
)

// Policy says how a route's requests reach the executors.
type Policy string

// Route policies.
const (
	PolicyVote    Policy = "vote"     // k executors, majority vote (default for GET, HEAD, OPTIONS)
	PolicyVoteAll Policy = "vote-all" // every healthy executor, for executors that keep their own state
	PolicySingle  Policy = "single"   // one executor, for writes to a shared store (default otherwise)
)

// Route applies a policy to the requests whose canonical path starts with Prefix and whose
// method is in Methods (empty: the read methods GET, HEAD and OPTIONS). The longest matching
// prefix wins. Requests with other methods are refused (405, or 501 for a method the gateway
// does not know) unless a route names their method: nothing reaches an executor unvoted unless
// a route says so.
type Route struct {
	Methods []string
	Prefix  string
	Policy  Policy
	// CompareErrorBodies votes on the whole of this route's error answers (headers and body),
	// for an application whose error bodies are equivalent and must be compared; nil: the
	// gateway's Options.CompareErrorBodies.
	CompareErrorBodies *bool
	// Pages are this route's own pages per status (a site's own 404, say), in place of the
	// identity's for the boilerplate answers of its requests.
	Pages map[int]Page
}

// Options configure a Gateway. Zero values take the documented defaults.
type Options struct {
	Backends  Backends  // required
	Blocklist Blocklist // optional
	Redirect  Redirect  // optional: clients served by a decoy executor instead of the vote
	// Canaries are the decoy executor's canary tokens: a request presenting one is published
	// as EventCanary (canary.go), and served as any other.
	Canaries []string
	Bus      *bus.Bus        // optional
	Logger   *slog.Logger    // optional
	Rebuild  func(id string) // optional: called (in its own goroutine) by the dissent policy
	Metrics  *Metrics        // optional

	Routes    []Route
	K         int    // executors per voted request; default 3
	Quorum    int    // equivalent responses needed; default a majority of k
	Scheduler string // random (default), round-robin, trust-weighted, max-diversity

	UpstreamTimeout time.Duration // per executor request, default 5s
	BodyLimit       int64         // request body bytes buffered, default 1 MiB; above: 413
	ResponseLimit   int64         // executor response body bytes on voted routes, default 8 MiB; above: availability dissent (single routes stream)
	MaxInFlight     int           // concurrent requests, default 1024; above: 503
	MaxPerClient    int           // concurrent requests from one client address (IPv6: /64), default 64; above: 429
	BodyTimeout     time.Duration // a request body must arrive whole within this, default 10s; then 408
	// ResponseHeaderLimit bounds an executor's response head (interim responses included), on
	// every transport, default 64 KiB; above: the connection is closed, an availability dissent.
	ResponseHeaderLimit int64
	// Voted response bodies are kept in memory up to SpoolThreshold bytes each (default 256
	// KiB), above it in an unlinked file in SpoolDir (default os.TempDir()), compared raw. All
	// bodies in memory share MemoryBudget (default 128 MiB), all spooled ones SpoolBudget
	// (default 2 GiB); over either, the executor request fails and, without a quorum, the
	// client gets 503. See spool.go.
	SpoolThreshold int64
	SpoolDir       string
	MemoryBudget   int64
	SpoolBudget    int64

	IgnoreHeaders  []string // extra headers left out of the vote
	IgnorePointers []string // JSON pointers left out of the vote
	FoldHTML       bool     // fold white space in HTML bodies before comparing
	// CompareErrorBodies compares headers and bodies of 4xx/5xx responses too, and forwards
	// the voted ones; by default only their status takes part, since every server words its
	// error pages its own way, and the client gets the gateway's own page for that status.
	CompareErrorBodies bool
	// ServerHeader is the Server value of every answer (empty: none); an executor's own never
	// reaches the client. Pages are the gateway's own pages per status (default: a plain
	// "404 Not Found" and the like). Both are the identity the gateway presents unless
	// Identities has one for Signal.
	ServerHeader string
	Pages        map[int]Page
	// Identities are the identities the gateway can present, per deception signal (see
	// SetSignal); Signal is the one presented at the start.
	Identities      map[string]Identity
	Signal          string
	Learn           bool // learn noise online
	LearnMinSamples int  // distinct paths on which a field differed everywhere before it is noise; default 20

	FailStatus int           // status when no quorum, default 502
	WaitAll    bool          // answer only when all k answered or timed out (timing side channel)
	Jitter     time.Duration // random delay up to Jitter before answering

	// EjectAfter consecutive availability failures leave an executor out of the picks for
	// EjectFor, doubling up to EjectMax while its probes fail (defaults 3, 1s, 30s; EjectAfter
	// negative: never). See ejector.
	EjectAfter         int
	EjectFor, EjectMax time.Duration

	TrustWindow      int           // requests in each executor's trust window, default 100
	RebuildThreshold int           // dissents within RebuildWindow that call Rebuild, default 5 (0: never)
	RebuildWindow    time.Duration // default 1m

	ExcerptBytes int // bound on the body excerpt in dissent events, default 256

	// AccessLogFile, when set, gets one JSON line per request with the vote's outcome (see
	// accesslog.go); "-" is standard error.
	AccessLogFile string

	// TrustedProxies are the peers whose X-Forwarded-For or Forwarded header names the client
	// (see clientOf); from any other peer those headers are ignored for the client's address.
	TrustedProxies []netip.Prefix

	// MaxHeaderBytes is the client-facing server's header limit (ServerOptions.MaxHeaderBytes),
	// enforced exactly: net/http alone allows 4 KiB more. 0: net/http's rule only.
	MaxHeaderBytes int

	// LearnedFile, when set, keeps the learned noise across restarts: New restores what it
	// holds (an unreadable file is logged and set aside, never overwritten) and every newly
	// learned field is saved to it in the background (see LoadLearned).
	LearnedFile string

	// Transport, when set, carries every executor request; by default http:// executors are
	// reached with the gateway's own keep-alive HTTP/1.1 client and https:// ones through a
	// shared http.Transport.
	Transport http.RoundTripper
}

func (o *Options) defaults() {
	if o.K <= 0 {
		o.K = 3
	}
	if o.Quorum == 0 {
		o.Quorum = o.K/2 + 1
	}
	if o.UpstreamTimeout <= 0 {
		o.UpstreamTimeout = 5 * time.Second
	}
	if o.BodyLimit <= 0 {
		o.BodyLimit = 1 << 20
	}
	if o.ResponseLimit <= 0 {
		o.ResponseLimit = 8 << 20
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.MaxPerClient <= 0 {
		o.MaxPerClient = 64
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 10 * time.Second
	}
	if o.ResponseHeaderLimit <= 0 {
		o.ResponseHeaderLimit = 64 << 10
	}
	if o.SpoolThreshold <= 0 {
		o.SpoolThreshold = 256 << 10
	}
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = 128 << 20
	}
	if o.SpoolBudget <= 0 {
		o.SpoolBudget = 2 << 30
	}
	if o.LearnMinSamples <= 0 {
		o.LearnMinSamples = 20
	}
	if o.FailStatus == 0 {
		o.FailStatus = http.StatusBadGateway
	}
	if o.ExcerptBytes <= 0 {
		o.ExcerptBytes = 256
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Gateway is the voting reverse proxy. It is an http.Handler.
type Gateway struct {
	o         Options
	log       *slog.Logger
	seed      maphash.Seed
	transport http.RoundTripper
	h1        *h1Client // http:// executors, unless Options.Transport is set
	// core chooses the executors and keeps trust, ejection, dissent and no-consensus events.
	core       *voter.Core
	metrics    *Metrics
	routes     []route
	defVote    *learner
	defRoute   route // requests with a read method that no route matches
	sem        chan struct{}
	spool      *spooler // voted response bodies (see spool.go)
	perClient  *clientLimit
	singles    singleCounts
	access     *slog.Logger // nil: no access log
	accessFile *os.File
	straggle   chan struct{} // slots for answered requests still waiting for slow executors
	seq        atomic.Uint64
	idPrefix   string
	urls       sync.Map       // backend URL -> *url.URL
	pending    sync.WaitGroup // calls not yet finished
	tunnels    tunnels        // upgraded connections (see tunnel.go)

	learnedDirty chan struct{} // a field was learned since the last save (LearnedFile)
	saverStop    chan struct{}
	saverDone    chan struct{}
	closeOnce    sync.Once
	workers      workers                   // goroutines that run executor requests (see workers.go)
	ident        atomic.Pointer[presented] // what the gateway presents (see identity.go)
}

type route struct {
	Route
	methods       map[string]bool // nil: the read methods
	learn         *learner
	compareErrors bool
}

// New builds a gateway; it does not listen (see Serve or use it as a handler).
func New(o Options) (*Gateway, error) {
	o.defaults()
	if o.Backends == nil {
		return nil, errors.New("mimic: no backends")
	}
	if o.Quorum < 0 || o.Quorum > o.K {
		return nil, fmt.Errorf("mimic: quorum %d outside 1..k=%d", o.Quorum, o.K)
	}
	for _, h := range o.IgnoreHeaders {
		if neverNoise(http.CanonicalHeaderKey(h)) {
			return nil, fmt.Errorf("mimic: ignore header %s: it decides how a client treats the answer and is always voted on", http.CanonicalHeaderKey(h))
		}
	}
	if o.FailStatus < 400 || o.FailStatus > 599 {
		return nil, fmt.Errorf("mimic: fail status %d is not an error status", o.FailStatus)
	}
	if err := checkIdentities(o); err != nil {
		return nil, err
	}
	g := &Gateway{
		o:         o,
		log:       o.Logger.With("component", "mimic"),
		seed:      maphash.MakeSeed(),
		metrics:   o.Metrics,
		sem:       make(chan struct{}, o.MaxInFlight),
		perClient: newClientLimit(o.MaxPerClient),
		straggle:  make(chan struct{}, o.MaxInFlight),
		idPrefix:  strconv.FormatUint(rand.Uint64()&0xffffffff, 16) + "-",
		tunnels:   tunnels{open: map[*tunnel]struct{}{}, slots: make(chan struct{}, o.MaxInFlight)},
		workers:   newWorkers(),
	}
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	g.initIdentity()
	if o.MemoryBudget < o.SpoolThreshold {
		return nil, fmt.Errorf("mimic: memory budget %d below the spool threshold %d: no body over it could be read", o.MemoryBudget, o.SpoolThreshold)
	}
	if st, err := os.Stat(o.SpoolDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("mimic: spool directory %q is not a directory", o.SpoolDir)
	}
	g.spool = newSpooler(g.seed, o.SpoolThreshold, o.SpoolDir, o.MemoryBudget, o.SpoolBudget)
	g.metrics.spool.Store(g.spool)
	// A weak vote is the configuration's choice (validation refuses it unless allowed), and
	// is said at every start. (A pool may still be starting its executors: only a fixed set
	// of backends is counted here.)
	st, fixed := o.Backends.(Static)
	if n := len(st); g.votesOnK() && (o.Quorum <= o.K/2 || fixed && n < o.K) {
		g.log.Warn("weak vote: fewer than a majority of k executors decide each voted request", "k", o.K, "quorum", o.Quorum, "backends", n)
	}
	var err error
	if g.core, err = voter.New(voter.Options{Source: "gateway", Bus: o.Bus, Logger: g.log, Rebuild: o.Rebuild, Metrics: g.metrics.core,
		Scheduler: o.Scheduler, TrustWindow: o.TrustWindow, RebuildThreshold: o.RebuildThreshold, RebuildWindow: o.RebuildWindow,
		EjectAfter: o.EjectAfter, EjectFor: o.EjectFor, EjectMax: o.EjectMax}); err != nil {
		return nil, fmt.Errorf("mimic: %w", err)
	}
	g.transport = o.Transport
	if g.transport == nil {
		g.h1 = newH1Client(max(o.MaxInFlight, 64), o.ResponseHeaderLimit)
		g.transport = g.h1.tls
	}
	newL := func(name string) *learner {
		l := newLearner(newNoiseSet(o.IgnoreHeaders, o.IgnorePointers), o.Learn, o.LearnMinSamples)
		l.onLearn = func(field string) {
			g.metrics.learned.Inc()
			g.log.Info("learned noise", "route", name, "field", field)
			g.o.Bus.Publish(bus.Event{Kind: EventNoiseLearned, Source: "gateway", Subject: field, Attrs: map[string]any{"route": name}})
			if g.learnedDirty != nil {
				select {
				case g.learnedDirty <- struct{}{}:
				default: // a save is already due
				}
			}
		}
		return l
	}
	for _, r := range o.Routes {
		switch r.Policy {
		case PolicyVote, PolicyVoteAll, PolicySingle:
		default:
			return nil, fmt.Errorf("mimic: route %q: unknown policy %q", r.Prefix, r.Policy)
		}
		if !strings.HasPrefix(r.Prefix, "/") {
			return nil, fmt.Errorf("mimic: route prefix %q must start with /", r.Prefix)
		}
		rt := route{Route: r, learn: newL(r.Prefix), compareErrors: o.CompareErrorBodies}
		if r.CompareErrorBodies != nil {
			rt.compareErrors = *r.CompareErrorBodies
		}
		if len(r.Methods) > 0 {
			rt.methods = map[string]bool{}
			for _, m := range r.Methods {
				rt.methods[strings.ToUpper(m)] = true
			}
			if rt.methods[http.MethodGet] {
				rt.methods[http.MethodHead] = true // HEAD is GET without the body (RFC 9110 §9.3.2)
			}
		}
		g.routes = append(g.routes, rt)
	}
	g.defVote = newL("default")
	g.defRoute = route{Route: Route{Prefix: "/", Policy: PolicyVote}, learn: g.defVote, compareErrors: o.CompareErrorBodies}
	if o.AccessLogFile != "" {
		if g.access, g.accessFile, err = openAccessLog(o.AccessLogFile); err != nil {
			return nil, err
		}
	}
	if o.LearnedFile != "" {
		g.restoreLearned()
		g.learnedDirty, g.saverStop, g.saverDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go g.saveLearned()
	}
	return g, nil
}

// restoreLearned seeds the learners from Options.LearnedFile. Nothing in it stops the gateway:
// an unreadable file is set aside (so no save overwrites it) and the gateway learns afresh.
func (g *Gateway) restoreLearned() {
	path := g.o.LearnedFile
	learned, err := LoadLearned(path)
	if err != nil {
		bad, rerr := setAsideBad(path, time.Now())
		if rerr != nil {
			bad = "(not moved: " + rerr.Error() + ")"
		}
		g.log.Error("learned noise unreadable, starting without it", "error", err, "moved_to", bad)
		return
	}
	n := 0
	for route, fields := range learned {
		l := g.learnerFor(route)
		switch {
		case l == nil:
			g.log.Warn("learned noise for a route no longer configured, dropped", "file", path, "route", route, "fields", len(fields))
			continue
		case !l.enabled:
			g.log.Info("noise learning is off: learned noise not restored", "file", path, "route", route, "fields", len(fields))
			continue
		}
		for _, f := range fields {
			if l.restore(f) {
				n++
			}
		}
	}
	if n > 0 {
		g.log.Info("restored learned noise", "file", path, "fields", n)
	}
}

// learnerFor returns the learner of a route prefix ("default": requests no route matches).
func (g *Gateway) learnerFor(route string) *learner {
	if route == "default" {
		return g.defVote
	}
	for _, r := range g.routes {
		if r.Prefix == route {
			return r.learn
		}
	}
	return nil
}

// saveLearned writes the learned noise to Options.LearnedFile whenever a field was learned,
// and once more when the gateway closes if one was learned since.
func (g *Gateway) saveLearned() {
	defer close(g.saverDone)
	save := func() {
		if err := SaveLearned(g.o.LearnedFile, g.Learned()); err != nil {
			g.log.Warn("learned noise not saved", "error", err)
		}
	}
	for {
		select {
		case <-g.learnedDirty:
			save()
		case <-g.saverStop:
			select {
			case <-g.learnedDirty:
				save()
			default:
			}
			return
		}
	}
}

// NewTransport returns the shared upstream transport: keep-alive connections to every
// executor (up to perHost idle ones), no proxy from the environment, no transparent
// compression (executors answer identity bodies, which are compared as sent).
func NewTransport(perHost int) *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    max(perHost, 64),
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		ResponseHeaderTimeout:  0,
		ForceAttemptHTTP2:      false,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Trust exposes the per-executor trust scores.
func (g *Gateway) Trust() *Trust { return g.core.Trust() }

// Learned lists the noise fields learned so far, per route prefix ("default" for requests
// no route matches).
func (g *Gateway) Learned() map[string][]string {
	out := map[string][]string{"default": g.defVote.learned()}
	for _, r := range g.routes {
		out[r.Prefix] = r.learn.learned()
	}
	return out
}

// ResetLearned forgets the noise learned so far on every route (the configured ignore lists
// stay) and, with a LearnedFile, saves that; what is noise is then learned afresh.
func (g *Gateway) ResetLearned() {
	g.defVote.reset()
	for _, r := range g.routes {
		r.learn.reset()
	}
	g.log.Info("learned noise reset")
	if g.learnedDirty != nil {
		select {
		case g.learnedDirty <- struct{}{}:
		default:
		}
	}
}

// Wait blocks until the accounting of answered requests (dissent, trust, learning) is done,
// including the requests still waiting for slow executors.
func (g *Gateway) Wait() { g.pending.Wait() }

// Close ends every open tunnel, waits like Wait, then closes the idle executor connections.
// Call it after the server has stopped.
func (g *Gateway) Close() {
	g.tunnels.closeAll()
	g.pending.Wait()
	if g.saverStop != nil {
		g.closeOnce.Do(func() { close(g.saverStop) })
		<-g.saverDone
	}
	if g.h1 != nil {
		g.h1.CloseIdle()
	}
	if g.accessFile != nil {
		g.accessFile.Close()
	}
	if t, ok := g.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// votesOnK reports whether some requests are voted on by k executors (see routeFor): not when
// a catch-all route takes the read methods elsewhere and no route votes.
func (g *Gateway) votesOnK() bool {
	catchAll := false
	for _, r := range g.o.Routes {
		if r.Policy == PolicyVote {
			return true
		}
		if r.Prefix == "/" && len(r.Methods) == 0 {
			catchAll = true
		}
	}
	return !catchAll
}

// readMethod reports whether m is one of the methods voted on by default.
func readMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// knownMethod reports whether m is a method of RFC 9110 or RFC 5789 (PATCH): one the gateway
// refuses with 405 when no route names it, rather than 501.
func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch:
		return true
	}
	return false
}

// routeFor returns the route of a request with a canonical path, or nil and the status that
// refuses it: a method no route names is not sent anywhere.
func (g *Gateway) routeFor(method, path string) (*route, int) {
	best := -1
	for i := range g.routes {
		r := &g.routes[i]
		if !strings.HasPrefix(path, r.Prefix) {
			continue
		}
		if r.methods == nil && !readMethod(method) || r.methods != nil && !r.methods[method] {
			continue
		}
		if best < 0 || len(r.Prefix) > len(g.routes[best].Prefix) {
			best = i
		}
	}
	switch {
	case method == http.MethodConnect || method == http.MethodTrace:
		return nil, http.StatusMethodNotAllowed // never forwarded: tunnels and header echoes
	case best >= 0:
		return &g.routes[best], 0
	case readMethod(method):
		return &g.defRoute, 0
	case knownMethod(method):
		return nil, http.StatusMethodNotAllowed
	}
	return nil, http.StatusNotImplemented
}

// call is the state of one client request.
type call struct {
	g      *Gateway
	policy Policy
	learn  *learner
	ballot ballot
	ch     chan *response
	n, q   int
	got    int
	win    *response
	id     uint64
	path   string
	// upMethod is the method sent to the executors: the client's, or GET for a voted HEAD
	upMethod   string
	method     string     // the client's
	clientAddr netip.Addr // the client's address (see Gateway.clientOf), invalid when unknown
	cancel     context.CancelFunc
	picked     []Backend
	entry      accessEntry // for the access log
	altMu      sync.Mutex
	alts       []Backend // executors asked instead of one that refused the connection
	hosts      []string  // per picked executor: host:port for the h1 client, or "" (see fetchJob)
	reqBody    *bytes.Buffer
	pages      map[int]Page // the route's own pages (see writePage)
	filter     outFilter    // which client headers go to the executors
	// stream: a single route's answer, copied to the client by the executor request through
	// sink as it arrives, instead of buffered and written once decided.
	stream bool
	sink   streamSink
	gone   bool // the client went away before the decision and cancelled the fan-out
	busy   bool // answered 503: the gateway could not buffer enough answers (errBudget)
	// conns are the call's executor connections in use, interrupted at once by abort:
	// cheaper than a context.AfterFunc per executor request; deadline is the context's.
	conns    connGroup
	deadline time.Time
	// refs counts who still uses the call: each executor request until it has delivered its
	// response, and the client's goroutine until it has answered. The last one out runs finish,
	// so stragglers are accounted for without a goroutine of their own.
	refs       atomic.Int32
	straggling bool // holds a slot of Gateway.straggle
	// onGone is c.clientGone, bound once per pooled call; goneDone lets the client's goroutine
	// wait for a clientGone that already started, so it never runs on a recycled call.
	onGone   func()
	goneDone sync.WaitGroup
}

// clientGone runs when the client goes away before the decision.
func (c *call) clientGone() {
	c.abort()
	c.goneDone.Done()
}

// abort cancels the executor requests still running.
func (c *call) abort() {
	c.cancel()
	c.conns.cancel()
}

var callPool = sync.Pool{New: func() any { return &call{} }}

// reject answers a request the gateway refuses with its own page for status.
func (g *Gateway) reject(w http.ResponseWriter, policy Policy, outcome string, status int) {
	g.metrics.requests.WithLabelValues(string(policy), outcome).Inc()
	g.writePage(w, nil, status)
}

// ServeHTTP votes on one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	client, _ := g.clientOf(r)
	if g.o.Blocklist != nil && client.IsValid() && g.o.Blocklist.Blocked(client) {
		g.reject(w, "", "blocked", http.StatusForbidden)
		return
	}
	if key, ok := g.perClient.acquire(client); ok {
		defer g.perClient.release(key)
	} else {
		w.Header().Set("Connection", "close")
		g.reject(w, "", "client-limit", http.StatusTooManyRequests)
		return
	}
	// Ambiguous framing is refused even where net/http would pick one reading.
	if status, _ := framingFault(r, g.o.MaxHeaderBytes); status != 0 {
		w.Header().Set("Connection", "close")
		g.reject(w, "", "rejected", status)
		return
	}
	if err := canonicalizeRequest(r); err != nil {
		g.reject(w, "", "rejected", http.StatusBadRequest)
		return
	}
	rt, refused := g.routeFor(r.Method, r.URL.Path)
	if rt == nil {
		if refused == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		}
		g.reject(w, "", "rejected", refused)
		return
	}
	if r.Method == http.MethodOptions && rt.methods == nil {
		// Every server answers OPTIONS its own way: the gateway answers it, unless a route
		// names OPTIONS (a CORS preflight the application answers).
		g.metrics.requests.WithLabelValues(string(rt.Policy), "ok").Inc()
		g.writeOptions(w, r.URL.Path)
		return
	}
	if r.Host == "" {
		// HTTP/1.0 without Host: executors would each answer their own way (400 here, the
		// default site there); they get the address the client reached.
		r.Host = localHost(r)
	}
	policy, learn := rt.Policy, rt.learn
	decoy, decision, redirected := g.redirectOf(client)
	if redirected {
		if isUpgrade(r) { // no tunnel to the decoy
			g.reject(w, policy, "redirected", http.StatusForbidden)
			return
		}
		policy = PolicySingle
	}
	if policy == PolicySingle && isUpgrade(r) {
		g.serveUpgrade(w, r, start) // holds a tunnel slot, not a request slot
		return
	}
	reqBody, held, ok := g.readBody(w, r, policy) // before a slot is taken (see clientlimit.go)
	if !ok {
		return
	}
	if held > 0 {
		defer g.spool.mem.give(held)
	}
	if len(g.o.Canaries) > 0 {
		var b []byte
		if reqBody != nil {
			b = reqBody.Bytes()
		}
		g.checkCanary(r, client, b, redirected)
	}
	select {
	case g.sem <- struct{}{}:
	default:
		putBuf(reqBody)
		g.reject(w, "", "unavailable", http.StatusServiceUnavailable)
		return
	}
	defer func() { <-g.sem }()

	var all []Backend
	if redirected {
		if decoy.Addr != "" { // else no decoy is healthy: 503, never the vote
			all = []Backend{decoy}
		}
		g.publishRedirected(r, client, decoy, decision)
	} else {
		all = g.o.Backends.Backends()
	}
	k, q := g.voters(len(all))
	switch policy {
	case PolicySingle:
		k, q = 1, 1
	case PolicyVoteAll:
		k, q = len(all), len(all)/2+1
	}
	if !redirected {
		all = g.core.Eligible(all, q, start) // ejected executors sit out, unless that left too few for a quorum
	}
	n := min(k, len(all))
	if n == 0 || n < q {
		putBuf(reqBody)
		g.tooFewExecutors(w, r, policy, client, len(all), q)
		return
	}

	c := callPool.Get().(*call)
	c.g, c.policy, c.learn, c.n, c.q, c.got, c.win = g, policy, learn, n, q, 0, nil
	c.busy = false
	c.refs.Store(int32(n) + 1)
	c.straggling = false
	g.pending.Add(1)
	defer c.release() // the client's goroutine's reference, also if anything below panics
	c.id = g.seq.Add(1)
	c.path = r.URL.Path
	c.method, c.clientAddr = r.Method, client
	c.reqBody = reqBody
	// A voted HEAD is sent as GET: the answer's Content-Length is then the voted body's, not
	// a number one executor made up.
	c.upMethod = r.Method
	if r.Method == http.MethodHead && policy != PolicySingle {
		c.upMethod = http.MethodGet
	}
	c.stream = policy == PolicySingle
	var sink *streamSink
	if c.stream {
		c.sink.reset(w, r, g.o.Jitter)
		sink = &c.sink
	}
	c.picked = g.core.Pick(c.picked[:0], all, n)
	if cap(c.ch) < n {
		c.ch = make(chan *response, n)
	}
	c.ballot.reset(g.seed, learn.noise(), g.o.FoldHTML, rt.compareErrors, r.Host, c.path)
	c.pages = rt.Pages

	c.filter.reset(r, policy != PolicySingle)
	filter := &c.filter
	var hdr http.Header // only for executors reached through an http.RoundTripper
	c.hosts = c.hosts[:0]
	for _, b := range c.picked {
		host, plain := plainHTTPHost(b.Addr)
		if !plain || g.h1 == nil {
			host = ""
			if hdr == nil {
				hdr = outboundHeader(r, filter)
			}
		}
		c.hosts = append(c.hosts, host)
	}
	// The h1 client bounds each executor request by its connection's deadline (and dials by
	// c.deadline), so the context only needs a timer of its own for an http.RoundTripper, and
	// not even then for a stream (see roundTrip).
	c.deadline = start.Add(g.o.UpstreamTimeout)
	var ctx context.Context
	if hdr == nil || c.stream {
		ctx, c.cancel = context.WithCancel(context.Background())
	} else {
		ctx, c.cancel = context.WithDeadline(context.Background(), c.deadline)
	}
	c.conns.reset()
	// A client that goes away before the decision cancels the executor requests; after the
	// decision the stragglers run on (bounded by UpstreamTimeout) for dissent accounting.
	if c.onGone == nil {
		c.onGone = c.clientGone
	}
	c.goneDone.Add(1)
	stop := context.AfterFunc(r.Context(), c.onGone)

	var body []byte
	if reqBody != nil {
		body = reqBody.Bytes()
	}
	for i, b := range c.picked {
		g.dispatch(fetchJob{ctx: ctx, c: c, b: b, host: c.hosts[i], r: r, filter: filter, hdr: hdr, body: body, sink: sink})
	}

	for c.got < n {
		resp := <-c.ch
		c.got++
		cnt := c.ballot.add(resp)
		if c.win == nil && cnt >= q {
			c.win = resp
			if !g.o.WaitAll {
				break
			}
		}
		if c.win == nil && !g.o.WaitAll {
			_, lead := c.ballot.leader()
			if lead+(n-c.got) < q {
				break // no group can reach the quorum any more
			}
		}
	}
	c.gone = !stop()
	if c.gone {
		c.goneDone.Wait() // clientGone started: let it finish before c can be recycled
	} else {
		c.goneDone.Done() // clientGone will not run
	}
	if g.o.Jitter > 0 && !c.stream {
		time.Sleep(rand.N(g.o.Jitter))
	}
	outcome := "ok"
	aborted := false
	switch {
	case c.gone:
		outcome = "client-gone"
	case c.stream && c.win != nil:
		// already copied to the client
	case c.win != nil:
		g.writeVoted(w, r, c)
	case c.ballot.overBudget():
		// The gateway could not hold enough answers to vote: its shortage, not a dissent.
		outcome = "unavailable"
		c.busy = true
		w.Header().Set("Retry-After", "1")
		g.writePage(w, nil, http.StatusServiceUnavailable)
	case c.stream && c.sink.started:
		// The executor failed after its head went to the client: all that is left is to cut
		// the connection, so the client sees an incomplete response rather than a short one.
		outcome, aborted = "aborted", true
	default:
		outcome = "no-consensus"
		g.writePage(w, c.pages, g.o.FailStatus)
	}
	g.metrics.requests.WithLabelValues(string(policy), outcome).Inc()
	g.metrics.duration.WithLabelValues(string(policy)).Observe(time.Since(start).Seconds())
	c.entry = accessEntry{start: start, outcome: outcome, status: g.o.FailStatus}
	if c.win != nil {
		c.entry.status = c.win.status
	}
	if c.got < n {
		select {
		case g.straggle <- struct{}{}:
			c.straggling = true
		default:
			// As many answered requests as MaxInFlight already wait for slow executors:
			// stop waiting (those executors count as unavailable) so memory stays bounded.
			c.abort()
		}
	}
	if aborted {
		panic(http.ErrAbortHandler)
	}
}

// release drops one reference to c; the last one runs finish.
func (c *call) release() {
	if c.refs.Add(-1) == 0 {
		c.finish()
	}
}

// finish collects the responses the client's goroutine did not wait for (all delivered by
// now), accounts for dissent and learns noise, then recycles c.
func (c *call) finish() {
	g := c.g
	for c.got < c.n {
		c.ballot.add(<-c.ch)
		c.got++
	}
	c.abort()
	b := &c.ballot
	now := time.Now()
	unanimous := len(b.failed) == 0
	for _, r := range b.resps {
		if r.key() != b.resps[0].key() {
			unanimous = false
		}
	}
	if c.win == nil && !c.gone && !c.sink.started && !c.busy {
		c.noConsensus()
	}
	if c.policy != PolicySingle && !unanimous {
		c.learn.observe(c.path, g.seed, b.resps, b.noise)
	}
	if c.policy == PolicySingle {
		for _, r := range append(b.resps, b.failed...) {
			g.singles.add(r.backend.ID)
			g.metrics.single.WithLabelValues(r.backend.Variant).Inc()
			g.log.Info("single", "executor", r.backend.ID, "variant", r.backend.Variant, "request", c.requestID(),
				"client", c.client(), "method", c.method, "path", c.path, "status", r.status)
		}
	}
	if g.access != nil {
		c.logAccess(now)
	}
	for _, r := range b.failed {
		if c.gone && errors.Is(r.err, context.Canceled) || errors.Is(r.err, errClientWrite) || errors.Is(r.err, errBudget) {
			continue // cancelled on the client's behalf, or the client failed: not the executor's fault
		}
		g.dissent(c, r, DissentAvailability, diff{}, now)
		if unreachable(r.err) {
			g.ejectResult(r.backend, r.err, now)
		}
	}
	for _, r := range b.resps {
		g.ejectResult(r.backend, nil, now)
		switch {
		case c.win == nil:
		case r.key() == c.win.key():
			g.core.Agreed(r.backend, now)
		default:
			g.dissent(c, r, DissentContent, b.diff(r, c.win), now)
		}
	}
	for _, r := range b.resps {
		r.release()
	}
	for _, r := range b.failed {
		r.release()
	}
	putBuf(c.reqBody)
	if cap(b.scratch) > 1<<20 {
		b.scratch = nil
	}
	clear(b.resps)
	clear(b.failed)
	clear(c.picked)
	clear(c.alts)
	c.alts = c.alts[:0]
	clear(c.hosts)
	if c.straggling {
		<-g.straggle
	}
	c.reqBody, c.win, c.learn, c.g = nil, nil, nil, nil
	c.sink = streamSink{}
	callPool.Put(c)
	g.pending.Done()
}

func (c *call) requestID() string { return c.g.idPrefix + strconv.FormatUint(c.id, 16) }

// client is the client's address as text, "" when unknown (formatted only for events and logs).
func (c *call) client() string {
	if !c.clientAddr.IsValid() {
		return ""
	}
	return c.clientAddr.String()
}

// tooFewExecutors answers a request that has fewer executors than its quorum (apart from
// ServeHTTP, to keep its frame small).
func (g *Gateway) tooFewExecutors(w http.ResponseWriter, r *http.Request, policy Policy, client netip.Addr, executors, q int) {
	cl := ""
	if client.IsValid() {
		cl = client.String()
	}
	g.core.NoConsensus("", map[string]any{
		"route": r.URL.Path, "path": r.URL.Path, "method": r.Method, "client": cl,
		"reason": "too few executors", "executors": executors, "quorum": q})
	g.reject(w, policy, "no-consensus", http.StatusServiceUnavailable)
}

func (c *call) noConsensus() {
	g := c.g
	votes := make([]map[string]any, 0, len(c.ballot.resps)+len(c.ballot.failed))
	for _, r := range c.ballot.resps {
		votes = append(votes, map[string]any{"executor": r.backend.ID, "variant": r.backend.Variant,
			"status": r.status, "vote": strconv.FormatUint(r.key().body^r.key().hdr, 16)})
	}
	for _, r := range c.ballot.failed {
		votes = append(votes, map[string]any{"executor": r.backend.ID, "variant": r.backend.Variant, "error": r.err.Error()})
	}
	g.core.NoConsensus(c.path, map[string]any{
		"request": c.requestID(), "route": c.path, "path": c.path, "method": c.method, "client": c.client(),
		"policy": string(c.policy), "quorum": c.q, "votes": votes},
		"request", c.requestID(), "client", c.client(), "method", c.method, "path", c.path, "quorum", c.q, "executors", c.n)
}

func (g *Gateway) dissent(c *call, r *response, kind string, d diff, now time.Time) {
	attrs := map[string]any{
		"route": c.path, "path": c.path, "method": c.method, "client": c.client(),
		"policy": string(c.policy), "request": c.requestID(),
	}
	var err error
	if kind == DissentAvailability {
		err = r.err
	} else {
		attrs["status"] = r.status
		attrs["want_status"] = c.win.status
		attrs["differs"] = d
		if d.Body {
			attrs["excerpt"] = bodyExcerpt(r, c.win, g.o.ExcerptBytes)
		}
	}
	g.core.Dissent(voter.Dissent{Member: r.backend, Kind: kind, Err: err, Attrs: attrs, Log: func() []any {
		args := []any{"request", c.requestID(), "client", c.client(), "method", c.method, "path", c.path}
		if kind != DissentAvailability {
			args = append(args, "differs", d)
		}
		return args
	}}, now)
}

// unreachable says whether an executor request's failure means the executor could not be
// reached or did not answer in time (what ejection counts), rather than an answer refused
// (too large, a protocol switch) or a request the gateway itself cancelled.
func unreachable(err error) bool {
	return !errors.Is(err, context.Canceled) && !errors.Is(err, errTooLarge) && !errors.Is(err, errHeadTooLarge) &&
		!errors.Is(err, errUnaskedSwitch) && !errors.Is(err, errClientWrite) && !errors.Is(err, errBudget)
}

// ejectResult records an executor request's outcome for ejection (err nil: it answered).
func (g *Gateway) ejectResult(b Backend, err error, now time.Time) { g.core.Reached(b, err, now) }

// outFilter says which client headers go to the executors: the client's minus hop-by-hop
// headers (and those its Connection header names) and Accept-Encoding (executors answer
// identity bodies that can be compared); on voted routes also minus conditional and range
// headers, since executors disagree on validators; X-Forwarded-For gains the client's
// address. The h1 client applies it while writing, without a copy of the header per request.
type outFilter struct {
	voted  bool
	conn   string // the client's Connection header
	setXFF bool   // send xff as X-Forwarded-For instead of the client's
	xff    string
}

// reset makes f the filter for r (a call keeps one, so none is allocated per request).
func (f *outFilter) reset(r *http.Request, voted bool) {
	*f = outFilter{voted: voted, conn: r.Header.Get("Connection")}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 && !f.skip("X-Forwarded-For") {
			host = strings.Join(prior, ", ") + ", " + host
		}
		f.setXFF, f.xff = true, host
	}
}

func (f *outFilter) skip(k string) bool {
	if isHopByHop(k) {
		return true
	}
	switch k {
	case "Accept-Encoding",
		"Expect": // the body is sent at once; net/http already answered the client's 100-continue
		return true
	case "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range":
		if f.voted {
			return true
		}
	case "X-Forwarded-For":
		if f.setXFF {
			return true
		}
	}
	return f.conn != "" && httpTokenContains(f.conn, k)
}

// outboundHeader is the header sent to executors through an http.RoundTripper (see outFilter).
func outboundHeader(r *http.Request, f *outFilter) http.Header {
	h := make(http.Header, len(r.Header)+1)
	for k, vs := range r.Header {
		if !f.skip(k) {
			h[k] = vs
		}
	}
	if f.setXFF {
		h["X-Forwarded-For"] = []string{f.xff}
	}
	return h
}

var errTooLarge = errors.New("mimic: executor response body over the limit")

// fetchJob is one executor request of a call.
type fetchJob struct {
	ctx    context.Context
	c      *call
	b      Backend
	host   string // host:port for the h1 client; "" when b goes through the RoundTripper
	r      *http.Request
	filter *outFilter
	hdr    http.Header
	body   []byte
	sink   *streamSink // a single route's response, streamed to the client instead of buffered
}

// fetch sends the request to one executor, delivers its buffered response on the call's
// channel and releases the call (see call.refs).
func (g *Gateway) fetch(j fetchJob) {
	b, ch := j.b, j.c.ch
	res := respPool.Get().(*response)
	res.backend = b
	defer func() {
		ch <- res
		j.c.release()
	}()
	err := g.fetchFrom(&j, b, j.host, j.hdr, res)
	if err != nil && errors.Is(err, syscall.ECONNREFUSED) && (j.sink == nil || !j.sink.started) {
		err = g.retryRefused(&j, b, err, &res)
	}
	if err != nil {
		res.err = err
	}
}

// retryRefused sends j's request to an executor not asked yet, in place of b, which refused
// the connection: the request never arrived, so it may go elsewhere on every method, and the
// refusing executor counts as unavailable. It returns the new executor request's error, or
// err when there is no other executor. (Apart from fetch so that fetch's frame stays small:
// every executor request runs on a fresh goroutine stack.)
func (g *Gateway) retryRefused(j *fetchJob, b Backend, err error, res **response) error {
	alt, ok := g.alternate(j.c, b)
	if !ok {
		return err
	}
	g.dissent(j.c, &response{backend: b, err: err}, DissentAvailability, diff{}, time.Now())
	g.ejectResult(b, err, time.Now())
	(*res).release()
	*res = respPool.Get().(*response)
	(*res).backend = alt
	host, plain := plainHTTPHost(alt.Addr)
	hdr := j.hdr
	if !plain || g.h1 == nil {
		host = ""
		if hdr == nil {
			hdr = outboundHeader(j.r, j.filter)
		}
	}
	return g.fetchFrom(j, alt, host, hdr, *res)
}

// alternate picks an executor for c that it has not used yet, among those not ejected.
func (g *Gateway) alternate(c *call, not Backend) (Backend, bool) {
	all := g.core.Available(g.o.Backends.Backends(), time.Now())
	c.altMu.Lock()
	defer c.altMu.Unlock()
	var free []Backend
	for _, b := range all {
		if !slices.ContainsFunc(c.picked, func(p Backend) bool { return p.ID == b.ID }) &&
			!slices.ContainsFunc(c.alts, func(p Backend) bool { return p.ID == b.ID }) && b.ID != not.ID {
			free = append(free, b)
		}
	}
	if len(free) == 0 {
		return Backend{}, false
	}
	alt := free[rand.IntN(len(free))]
	c.alts = append(c.alts, alt)
	return alt, true
}

// fetchFrom sends j's request to b (at host for the h1 client, "" for the RoundTripper with
// header hdr) and fills in res; the error is the executor request's failure.
func (g *Gateway) fetchFrom(j *fetchJob, b Backend, host string, hdr http.Header, res *response) (ferr error) {
	ctx, r, filter, body := j.ctx, j.r, j.filter, j.body
	group, deadline := &j.c.conns, j.c.deadline
	plain := host != ""
	var base *url.URL
	var err error
	if host == "" {
		if base, err = g.baseURL(b.Addr); err != nil {
			return err
		}
		host = base.Host
	}
	if inf, ok := g.o.Backends.(InFlight); ok {
		inf.OnAcquire(b.ID)
		defer inf.OnRelease(b.ID)
	}
	var buf io.ReaderFrom
	limit := g.o.ResponseLimit
	if j.sink != nil {
		buf, limit = j.sink, math.MaxInt64-1
	} else {
		res.bb = g.spool.get()
		buf = res.bb
		defer func() {
			if ferr != nil { // failed: the buffer's budget is free at once, also for a retry
				res.bb.release()
				res.bb = nil
			}
		}()
	}
	var status int
	var header http.Header
	var n int64
	if g.h1 != nil && (plain || base.Scheme == "http") {
		uri := r.RequestURI
		if !strings.HasPrefix(uri, "/") {
			uri = r.URL.RequestURI() // absolute-form or asterisk-form from the client
		}
		if res.hmap == nil {
			res.hmap = make(http.Header, 8)
		}
		status, header, n, err = g.h1.fetch(&h1Request{ctx: ctx, addr: host, method: j.c.upMethod, uri: uri,
			host: r.Host, header: r.Header, filter: filter, body: body, group: group, deadline: deadline, timeout: g.o.UpstreamTimeout}, buf, limit, res.hmap, &res.vals)
	} else {
		status, header, n, err = g.fetchViaTransport(j, base, hdr, buf, limit)
	}
	switch {
	case err != nil:
		return fmt.Errorf("mimic: %s: %w", b.ID, err)
	case n > limit:
		return fmt.Errorf("%w (%d bytes)", errTooLarge, limit)
	case status == http.StatusSwitchingProtocols:
		return fmt.Errorf("mimic: %s: %w", b.ID, errUnaskedSwitch)
	}
	res.status, res.header = status, header
	res.body = res.bb.bytes()
	return nil
}

// fetchViaTransport sends j's request through the gateway's http.RoundTripper to base (apart
// from fetchFrom, whose frame every executor request's goroutine carries).
func (g *Gateway) fetchViaTransport(j *fetchJob, base *url.URL, hdr http.Header, buf io.ReaderFrom, limit int64) (int, http.Header, int64, error) {
	r := j.r
	u := *r.URL
	u.Scheme, u.Host, u.User = base.Scheme, base.Host, nil
	out := (&http.Request{
		Method:     j.c.upMethod,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Host:       r.Host,
		Body:       http.NoBody,
	}).WithContext(j.ctx)
	if j.body != nil {
		out.Body = io.NopCloser(bytes.NewReader(j.body))
		out.ContentLength = int64(len(j.body))
	}
	return g.roundTrip(out, buf, limit)
}

// roundTrip sends out through the gateway's http.RoundTripper and reads at most limit+1 body
// bytes into buf. A streamed response (buf is a headSink) is bounded by UpstreamTimeout
// between two reads instead of by out's context deadline, which it must not have.
func (g *Gateway) roundTrip(out *http.Request, buf io.ReaderFrom, limit int64) (int, http.Header, int64, error) {
	sink, stream := buf.(headSink)
	var idle *time.Timer
	if stream {
		ctx, cancel := context.WithCancel(out.Context())
		defer cancel()
		idle = time.AfterFunc(g.o.UpstreamTimeout, cancel)
		defer idle.Stop()
		out = out.WithContext(ctx)
	}
	resp, err := g.transport.RoundTrip(out)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	var body io.Reader = io.LimitReader(resp.Body, limit+1)
	if stream {
		if err := sink.head(resp.StatusCode, resp.Header, resp.ContentLength); err != nil {
			return 0, nil, 0, err
		}
		body = &idleReader{r: body, ctx: out.Context(), timeout: g.o.UpstreamTimeout, timer: idle}
	}
	n, err := buf.ReadFrom(body)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, resp.Header, n, nil
}

// plainHTTPHost returns host:port of a base URL of the form http://host:port[/], the common
// case, without parsing it or looking it up in the shared map (both measurable per executor
// request).
func plainHTTPHost(s string) (string, bool) {
	h, ok := strings.CutPrefix(s, "http://")
	if !ok {
		return "", false
	}
	h = strings.TrimSuffix(h, "/")
	if h == "" {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		if notInPlainHost[h[i]] {
			return "", false
		}
	}
	return h, true
}

// notInPlainHost marks the bytes that send an executor URL to url.Parse.
var notInPlainHost = func() (t [256]bool) {
	for _, c := range "/?#@%[] \\" {
		t[c] = true
	}
	return t
}()

func (g *Gateway) baseURL(s string) (*url.URL, error) {
	if u, ok := g.urls.Load(s); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("mimic: backend URL %q: %w", s, err)
	}
	g.urls.Store(s, u)
	return u, nil
}

// writeHead sends a single route's executor status and header, minus its hop-by-hop and
// identifying fields (see keepStreamed), as the head of an answer whose body of length bytes
// (-1: unknown, then it goes chunked) follows; for HEAD the executor's Content-Length stays.
// Into the fast path's writer the header is serialized straight from h, without a copy into
// the writer's map first.
func writeHead(w http.ResponseWriter, method string, status int, h http.Header, length int64) {
	if fw, ok := w.(*fastWriter); ok && len(fw.h) == 0 && status >= 200 && status <= 999 {
		fw.startProxied(status, h, length)
		return
	}
	out := w.Header()
	for k, vs := range h {
		if keepStreamed(k) {
			out[k] = vs
		}
	}
	out["Date"] = []string{httpDate()} // the gateway's, among the fields as on the fast path
	// The executor's own value, when it is one plain number equal to the body's length (as
	// parseHead checked on the fast path), saves formatting a new one.
	if cl := h["Content-Length"]; method != http.MethodHead && (len(cl) != 1 || length < 0 || parseLength(cl[0]) != length) {
		delete(out, "Content-Length")
		if length >= 0 {
			out["Content-Length"] = []string{strconv.FormatInt(length, 10)}
		}
	}
	w.WriteHeader(status)
}
