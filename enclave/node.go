package enclave

import (
	"context"
	"crypto/ed25519"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/stix"
)

// Bus event kinds published by the enclave.
const (
	EventDecision = "enclave.decision"
	EventRejected = "enclave.rejected"
)

// TopicPrefix is prepended to the enclave name to form the GossipSub topic.
const TopicPrefix = "/proteus/enclave/1/"

// Options configure a Node.
type Options struct {
	Config  config.Enclave
	DataDir string // identity, trust table; required
	// Identity overrides the key in DataDir (tests, bench); nil loads or creates it.
	Identity crypto.PrivKey
	// Manager applies countermeasures; nil records decisions without acting.
	Manager *countermeasure.Manager
	// BlockActuator and VigilanceActuator name the actuators for act and defer.
	BlockActuator     string
	VigilanceActuator string
	// Sensing overrides enclave.sensing: whether this agent's own sensors would have seen
	// target (they run and watch the exposure it concerns; see Witness). The engine sets
	// it; nil uses the config.
	Sensing func(target stix.Target) bool
	Bus     *bus.Bus
	Logger  *slog.Logger
	Now     func() time.Time
	// Unpaced sends this node's own messages as fast as they are asked for, instead of
	// pacing them within limits.rate and limits.burst: what a flooding member does (its
	// peers ignore what is over its budget). Only for tests and `proteus enclave bench`.
	Unpaced bool
}

// Stats count what the topic validator did.
type Stats struct {
	Accepted  uint64 `json:"accepted"`
	Rejected  uint64 `json:"rejected"`   // invalid envelopes or bundles from members
	NonMember uint64 `json:"non_member"` // messages authored or forwarded by non-members
	Ignored   uint64 `json:"ignored"`    // replays, stale messages
	Denied    uint64 `json:"denied"`     // peers refused after a failed certificate exchange
	Limited   uint64 `json:"limited"`    // messages over their author's budget (limits.rate)
	// Unreadable counts payloads ignored because of sealing: unsealed in a sealed enclave,
	// sealed in one that is not, or sealed with an epoch's key this node does not hold.
	Unreadable uint64 `json:"unreadable"`
}

// Node is one enclave member: the libp2p host, the topic and the decision state.
type Node struct {
	cfg       config.Enclave
	dataDir   string
	log       *slog.Logger
	bus       *bus.Bus
	now       func() time.Time
	host      host.Host
	ps        *pubsub.PubSub
	topic     *pubsub.Topic
	tracer    *tracer // mesh membership (and debug logging) of the topic
	sub       *pubsub.Subscription
	self      peer.ID
	reporter  string // STIX identity id derived from self
	enclave   ed25519.PublicKey
	cert      *Certificate // own; nil in allowlist mode
	certBytes []byte
	exposure  stix.Exposure
	trust     *Trust
	replay    *stix.ReplayGuard
	manager   *countermeasure.Manager
	blockAct  string
	vigAct    string
	allow     map[peer.ID]bool
	sensingFn func(stix.Target) bool
	guard     *guard
	sealer    *sealer // nil: payloads are not sealed
	budget    *budget // per author, charged by the topic validator
	// relayBudget is per forwarder and author, charged before validation (see inspect).
	relayBudget *budget
	pace        *pacer    // this node's own messages; nil: unpaced
	gate        *fairGate // topic validations, in turn per author

	memMu       sync.Mutex
	verified    map[peer.ID]time.Time   // peer -> certificate expiry
	certCache   map[string]verifiedCert // certificate bytes -> its member and expiry, verified
	denied      map[peer.ID]time.Time   // peer -> until
	revoked     map[peer.ID]bool        // by the member revocation list
	members     *MemberRevocations      // newest verified list
	membersSent time.Time
	memberCh    chan struct{} // closed (and replaced) when membership changes

	scoreMu sync.Mutex
	scores  map[peer.ID]float64

	nameMu sync.Mutex
	names  map[peer.ID]peerNames // peer.ID.String() and reporterID cache (see peerName)

	mu          sync.Mutex
	targets     map[string][]*report
	byID        map[string]*report   // by reportKey
	perReporter map[string]int       // live reports per reporter (limits.reports)
	state       map[string]Decision  // per target key, what is applied
	until       map[string]time.Time // per target key, until when
	deferred    map[string]time.Time // deferred target keys, until when (one vigilance action)
	vigUntil    time.Time            // the coalesced vigilance action's expiry
	vigApplied  int                  // how often it was applied or extended
	decisions   []DecisionRecord

	// The state journal (state.go): what changed since the last flush, and the log file.
	dirtyReports map[*report]struct{} // under mu
	dirtyTargets map[string]struct{}  // under mu
	replayMu     sync.Mutex
	newReplay    []stix.ReplayEntry // under replayMu
	saveMu       sync.Mutex         // guards the rest
	lastSave     time.Time
	stateLog     *os.File // nil: the next flush writes a snapshot and a new log
	stateGen     int64
	snapBytes    int64
	logBytes     int64
	loggedVig    time.Time

	stats struct {
		accepted, rejected, nonMember, ignored, denied, limited, unreadable atomic.Uint64
	}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mdns   interface{ Close() error }
}

// DecisionRecord is one entry of the decision log: what arrived, how it was weighed and
// what was done. Read it with `proteus enclave decisions`.
type DecisionRecord struct {
	Time       time.Time `json:"time"`
	Event      string    `json:"event"` // sighting, revocation, unconfirmed, local
	Indicator  string    `json:"indicator"`
	Reporter   string    `json:"reporter"`
	Target     string    `json:"target"`
	Trust      float64   `json:"trust"`      // reporter's trust when it arrived
	Confidence float64   `json:"confidence"` // report confidence in [0,1]
	Evidence   float64   `json:"evidence"`   // combined over live relevant reports
	Reporters  int       `json:"reporters"`  // distinct reporters in the evidence
	// Established is how many independent reporters of established trust the evidence
	// holds; a block on peer reports alone needs the quorum (see Quorum).
	Established int       `json:"established"`
	Decision    Decision  `json:"decision"`
	Relevant    bool      `json:"relevant"`
	Why         string    `json:"why,omitempty"`
	Applied     bool      `json:"applied"` // a countermeasure was applied or extended
	AppliedAt   time.Time `json:"applied_at,omitzero"`
	Error       string    `json:"error,omitempty"`
}

const maxDecisionLog = 8192

// New starts a node: it opens the identity and trust table, starts the libp2p host and
// GossipSub, joins the enclave topic and begins connecting to bootstrap peers.
func New(ctx context.Context, o Options) (*Node, error) {
	cfg := o.Config
	if cfg.Name == "" {
		return nil, errors.New("enclave: no enclave name configured")
	}
	if o.DataDir == "" {
		return nil, errors.New("enclave: no data directory")
	}
	n := &Node{cfg: cfg, dataDir: o.DataDir, bus: o.Bus, now: o.Now, manager: o.Manager, sensingFn: o.Sensing,
		blockAct: o.BlockActuator, vigAct: o.VigilanceActuator}
	if n.now == nil {
		n.now = time.Now
	}
	n.initState()
	if !o.Unpaced {
		n.pace = newPacer(cfg.Limits.Rate, cfg.Limits.Burst)
	}
	n.log = o.Logger
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("component", "enclave", "enclave", cfg.Name)
	key := o.Identity
	if key == nil {
		var err error
		if key, err = LoadIdentity(o.DataDir); err != nil {
			return nil, err
		}
	}
	self, err := PeerIDOf(key)
	if err != nil {
		return nil, err
	}
	n.self = self
	n.reporter = reporterID(self)
	for _, s := range cfg.Allowlist {
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("enclave: allowlist %q: %w", s, err)
		}
		n.allow[id] = true
	}
	if cfg.Key != "" {
		if n.enclave, err = ParsePublicKey(cfg.Key); err != nil {
			return nil, err
		}
	}
	if cfg.Certificate != "" {
		path := cfg.Certificate
		if !filepath.IsAbs(path) {
			path = filepath.Join(o.DataDir, path)
		}
		c, err := ReadCertificate(path)
		if err != nil {
			return nil, err
		}
		if err := c.Verify(n.enclave, cfg.Name, self, n.now(), cfg.MaxClockSkew); err != nil {
			return nil, fmt.Errorf("enclave: own certificate %s: %w", path, err)
		}
		n.cert, n.certBytes = c, c.Marshal()
	}
	if n.cert == nil && !n.allow[self] {
		return nil, fmt.Errorf("%w: this node (%s) has no certificate and is not on the allowlist", ErrNotMember, self)
	}
	n.exposure = exposureOf(cfg.Exposure)
	prior := map[string]float64{}
	for _, p := range cfg.Trust.Pretrusted {
		if _, err := peer.Decode(p); err != nil {
			return nil, fmt.Errorf("enclave: trust.pretrusted %q: %w", p, err)
		}
		prior[p] = cfg.Trust.PretrustedWeight
	}
	if len(cfg.SealKeys) > 0 {
		var keys []*SealKey
		for _, f := range cfg.SealKeys {
			if !filepath.IsAbs(f) {
				f = filepath.Join(o.DataDir, f)
			}
			k, err := ReadSealKey(f)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
		if n.sealer, err = newSealer(cfg.Name, keys); err != nil {
			return nil, err
		}
	}
	if n.guard, err = newGuard(cfg.Protect, n.memberAddrs, n.now); err != nil {
		return nil, err
	}
	n.replay.SetPerOwner(cfg.Limits.Reports, self.String())
	if err := n.loadState(); err != nil {
		return nil, err
	}
	if err := n.loadMembers(); err != nil {
		return nil, err
	}
	n.trust, err = OpenTrust(filepath.Join(o.DataDir, TrustFile), TrustParams{Neutral: cfg.Trust.Neutral,
		InvalidWeight: cfg.Trust.InvalidWeight, SilenceWeight: cfg.Trust.SilenceWeight, HalfLife: cfg.Trust.HalfLife, Prior: prior}, n.now)
	if err != nil {
		return nil, err
	}

	n.ctx, n.cancel = context.WithCancel(context.Background())
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.ConnectionGater(&gater{n: n}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(), // no Prometheus collectors in every node
	)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("enclave: libp2p host: %w", err)
	}
	n.host = h
	h.SetStreamHandler(CertProtocol, n.handleCert)
	h.Network().Notify(&network.NotifyBundle{ConnectedF: n.connected})

	s := cfg.PeerScore
	topic := TopicPrefix + cfg.Name
	scoreParams, err := peerScoreParams(cfg, topic, n.appScore)
	if err != nil {
		n.closeHost()
		return nil, err
	}
	n.tracer = newTracer(n.log)
	psOpts := append([]pubsub.Option{pubsub.WithRawTracer(n.tracer), pubsub.WithGossipSubParams(gossipParams(cfg))},
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		// Own reports go straight to every topic peer above the publish threshold, not
		// only to the mesh: one hop for the reporter's neighbours, whatever the mesh state.
		pubsub.WithFloodPublish(true),
		pubsub.WithMaxMessageSize(cfg.MaxMessageBytes+4096), // room for the pubsub framing
		// A flood waits in a deep queue instead of pushing honest messages out of a shallow
		// one; the per-author budget then drops it cheaply.
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithValidateThrottle(validateQueue),
		// The peer gater throttles, before signature checks, a peer whose messages keep
		// being ignored (over budget) or rejected, when validation is under pressure.
		pubsub.WithPeerGater(pubsub.DefaultPeerGaterParams()),
		// Messages beyond their author's budget are dropped before the validation queue.
		pubsub.WithAppSpecificRpcInspector(n.inspect),
		pubsub.WithPeerScore(scoreParams, &pubsub.PeerScoreThresholds{GossipThreshold: s.Gossip, PublishThreshold: s.Publish,
			GraylistThreshold: s.Graylist, AcceptPXThreshold: s.AcceptPX, OpportunisticGraftThreshold: s.Opportune}),
		pubsub.WithPeerScoreInspect(n.inspectScores, time.Second),
	)
	ps, err := pubsub.NewGossipSub(n.ctx, memberHost{Host: h, n: n}, psOpts...)
	if err != nil {
		n.closeHost()
		return nil, fmt.Errorf("enclave: gossipsub: %w", err)
	}
	n.ps = ps
	// The validator is asynchronous (a goroutine per message, after GossipSub's signature
	// check) so that fairGate, not the order of arrival, decides which waiting message is
	// validated, delivered and forwarded next.
	if err := ps.RegisterTopicValidator(topic, n.validate, pubsub.WithValidatorConcurrency(validateQueue)); err != nil {
		n.closeHost()
		return nil, fmt.Errorf("enclave: %w", err)
	}
	if n.topic, err = ps.Join(topic); err != nil {
		n.closeHost()
		return nil, fmt.Errorf("enclave: join %s: %w", topic, err)
	}
	if n.sub, err = n.topic.Subscribe(pubsub.WithBufferSize(1024)); err != nil {
		n.closeHost()
		return nil, fmt.Errorf("enclave: subscribe: %w", err)
	}
	if cfg.MDNS {
		svc := mdns.NewMdnsService(h, "proteus-enclave-"+cfg.Name, mdnsNotifee{n})
		if err := svc.Start(); err != nil {
			n.closeHost()
			return nil, fmt.Errorf("enclave: mdns: %w", err)
		}
		n.mdns = svc
	}
	if n.bus != nil {
		events, cancel := n.bus.Subscribe(256, bus.KindPrefix(countermeasure.EventApplied))
		n.wg.Add(1)
		go func() { <-n.ctx.Done(); cancel() }()
		go n.watchLocalBlocks(events)
	}
	n.wg.Add(3)
	go n.receive()
	go n.sweep()
	go n.bootstrap()
	n.log.Info("enclave node started", "peer", self, "addrs", n.Addrs(), "topic", topic)
	return n, nil
}

func (n *Node) closeHost() {
	n.cancel()
	_ = n.host.Close()
}

// Close stops the node, writes the trust table and waits (up to closeSyncTimeout) until the
// countermeasures it applied are in the manager's journal, which is written in the
// background: a clean stop loses none of them.
func (n *Node) Close() error {
	n.cancel()
	if n.sub != nil {
		n.sub.Cancel()
	}
	if n.mdns != nil {
		_ = n.mdns.Close()
	}
	err := n.host.Close()
	n.wg.Wait()
	err = errors.Join(err, n.closeState())
	var serr error
	if n.manager != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeSyncTimeout)
		serr = n.manager.Sync(ctx)
		cancel()
	}
	return errors.Join(err, n.trust.Close(), serr)
}

// closeSyncTimeout bounds how long Close waits for the countermeasure journal.
const closeSyncTimeout = 5 * time.Second

// ID is this node's peer ID.
func (n *Node) ID() peer.ID { return n.self }

// Host is the libp2p host (for tests and tools).
func (n *Node) Host() host.Host { return n.host }

// Trust is the node's trust table.
func (n *Node) Trust() *Trust { return n.trust }

// Addrs are the node's listen addresses with /p2p/ID appended, loopback first.
func (n *Node) Addrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+n.self.String())
	}
	sort.SliceStable(out, func(i, j int) bool { return isLoopback(out[i]) && !isLoopback(out[j]) })
	return out
}

func isLoopback(a string) bool {
	m, err := ma.NewMultiaddr(a)
	if err != nil {
		return false
	}
	if v, err := m.ValueForProtocol(ma.P_IP4); err == nil {
		ip, err := netip.ParseAddr(v)
		return err == nil && ip.IsLoopback()
	}
	return false
}

// Connect dials a member at the full multiaddr addr (ending in /p2p/ID).
func (n *Node) Connect(ctx context.Context, addr string) error {
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	if err := n.host.Connect(ctx, *info); err != nil {
		return fmt.Errorf("enclave: connect %s: %w", info.ID, err)
	}
	return nil
}

// bootstrap keeps trying the configured bootstrap peers until connected to each.
func (n *Node) bootstrap() {
	defer n.wg.Done()
	var infos []peer.AddrInfo
	for _, a := range n.cfg.Bootstrap {
		info, err := peer.AddrInfoFromString(a)
		if err != nil {
			n.log.Warn("bad bootstrap address", "addr", a, "err", err)
			continue
		}
		if info.ID != n.self {
			infos = append(infos, *info)
		}
	}
	if len(infos) == 0 {
		return
	}
	delay := 100 * time.Millisecond
	for {
		pending := 0
		for _, info := range infos {
			if n.host.Network().Connectedness(info.ID) == network.Connected {
				continue
			}
			pending++
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
			if err := n.host.Connect(ctx, info); err != nil {
				n.log.Debug("bootstrap connect", "peer", info.ID, "err", err)
			}
			cancel()
		}
		if pending == 0 {
			delay = 5 * time.Second
		} else if delay < 2*time.Second {
			delay *= 2
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(info peer.AddrInfo) {
	if info.ID == m.n.self {
		return
	}
	go m.connect(info)
}

// connect dials a peer mDNS found, a few times with random pauses: two neighbours find each
// other at the same moment and dial each other at once (from their listening ports, so the two
// SYNs can make one TCP connection on which both start TLS as the client), and then both dials
// fail; mDNS does not announce the peer again soon, so one failed try would leave them apart.
// The swarm's dial backoff for the peer, set by that failure, is cleared before each retry:
// otherwise every retry within the backoff fails at once without dialing.
func (m mdnsNotifee) connect(info peer.AddrInfo) {
	for attempt := 1; attempt <= 5; attempt++ {
		if m.n.host.Network().Connectedness(info.ID) == network.Connected {
			return
		}
		if sw, ok := m.n.host.Network().(*swarm.Swarm); ok && attempt > 1 {
			sw.Backoff().Clear(info.ID)
		}
		ctx, cancel := context.WithTimeout(m.n.ctx, 5*time.Second)
		err := m.n.host.Connect(ctx, info)
		cancel()
		if err == nil || m.n.ctx.Err() != nil {
			return
		}
		m.n.log.Debug("mdns connect", "peer", info.ID, "attempt", attempt, "err", err)
		select {
		case <-time.After(time.Duration(attempt) * (100*time.Millisecond + rand.N(400*time.Millisecond))):
		case <-m.n.ctx.Done():
			return
		}
	}
}

// appScore maps trust into GossipSub's application-specific score. A denied peer scores
// below the graylist threshold. A peer still proving membership scores neutral: a negative
// score at that moment would make GossipSub drop its subscription announcement and refuse
// its GRAFT for the whole backoff period; its messages are rejected by the validator anyway.
func (n *Node) appScore(p peer.ID) float64 {
	if n.isDenied(p) {
		return 2 * n.cfg.PeerScore.Graylist
	}
	return (n.trust.Score(n.peerName(p)) - n.cfg.Trust.Neutral) * n.cfg.PeerScore.Weight
}

// maxNameCache bounds the peerName cache; when full it starts over.
const maxNameCache = 4096

// peerNames is what a peer ID is called: its base58 string and its STIX identity id.
type peerNames struct{ name, reporter string }

// peerName is p.String() (a base58 encoding), cached: GossipSub asks for the score of
// every peer it forwards to, and each ask used to re-encode the peer ID.
func (n *Node) peerName(p peer.ID) string { return n.namesOf(p).name }

// peerReporter is reporterID(p), cached with peerName: the validator compares it with the
// reporter of every report (a SHA-1 and a base58 encoding each time otherwise).
func (n *Node) peerReporter(p peer.ID) string { return n.namesOf(p).reporter }

func (n *Node) namesOf(p peer.ID) peerNames {
	n.nameMu.Lock()
	defer n.nameMu.Unlock()
	if s, ok := n.names[p]; ok {
		return s
	}
	if n.names == nil || len(n.names) >= maxNameCache {
		n.names = make(map[peer.ID]peerNames)
	}
	s := peerNames{name: p.String(), reporter: reporterID(p)}
	n.names[p] = s
	return s
}

func (n *Node) inspectScores(m map[peer.ID]float64) {
	n.scoreMu.Lock()
	n.scores = m
	n.scoreMu.Unlock()
}

// Score is GossipSub's latest score of p (refreshed every second) and whether it is known.
func (n *Node) Score(p peer.ID) (float64, bool) {
	n.scoreMu.Lock()
	defer n.scoreMu.Unlock()
	s, ok := n.scores[p]
	return s, ok
}

// reporterID is the STIX identity id of a peer: a name-based UUID of its peer ID, so every
// member derives the same id for the same peer.
func reporterID(p peer.ID) string {
	h := sha1.Sum([]byte("proteus/enclave/peer/" + p.String()))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	s := hex.EncodeToString(h[:16])
	return "identity--" + s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

func exposureOf(c config.EnclaveExposure) stix.Exposure {
	e := stix.Exposure{OS: c.OS}
	for _, s := range c.Software {
		e.Software = append(e.Software, stix.Software{Name: s.Name, Version: s.Version})
	}
	for _, s := range c.Services {
		e.Services = append(e.Services, stix.Service{Port: uint16(s.Port), Protocol: s.Protocol, Name: s.Name})
	}
	return e
}

func (n *Node) publishEvent(kind, subject string, attrs map[string]any) {
	n.bus.Publish(bus.Event{Kind: kind, Source: "enclave", Subject: subject, Attrs: attrs})
}

// Stats returns the validator counters.
func (n *Node) Stats() Stats {
	return Stats{Accepted: n.stats.accepted.Load(), Rejected: n.stats.rejected.Load(),
		NonMember: n.stats.nonMember.Load(), Ignored: n.stats.ignored.Load(), Denied: n.stats.denied.Load(),
		Limited: n.stats.limited.Load(), Unreadable: n.stats.unreadable.Load()}
}

// initState makes the empty tables of a node.
func (n *Node) initState() {
	n.allow = map[peer.ID]bool{}
	n.verified, n.certCache, n.denied = map[peer.ID]time.Time{}, map[string]verifiedCert{}, map[peer.ID]time.Time{}
	n.revoked, n.memberCh = map[peer.ID]bool{}, make(chan struct{})
	n.scores = map[peer.ID]float64{}
	n.targets, n.byID, n.perReporter = map[string][]*report{}, map[string]*report{}, map[string]int{}
	n.dirtyReports, n.dirtyTargets = map[*report]struct{}{}, map[string]struct{}{}
	n.state, n.until, n.deferred = map[string]Decision{}, map[string]time.Time{}, map[string]time.Time{}
	n.replay = stix.NewReplayGuard(stix.DefaultReplayCapacity)
	n.budget = newBudget(n.cfg.Limits.Rate, n.cfg.Limits.Burst)
	n.relayBudget = newBudget(n.cfg.Limits.Rate, n.cfg.Limits.Burst)
	n.gate = newFairGate(runtime.GOMAXPROCS(0), 2*n.cfg.Limits.Burst)
}

// validateQueue bounds the messages waiting for validation (GossipSub's queue before its
// signature check, and the validations in progress or waiting their turn in fairGate).
const validateQueue = 4096

// peerScoreParams is GossipSub's peer score for the enclave: the application-specific
// score (trust), topic scoring P1–P4 on the enclave topic and IP colocation P6. The
// positive parts (P1 time in mesh, P2 first deliveries) are capped at +4 together so that
// mesh behaviour never lifts a peer the trust table graylists; P3 (mesh delivery deficit)
// is kept mild because sightings are sparse; P4 (invalid messages) weighs most.
func peerScoreParams(cfg config.Enclave, topic string, app func(peer.ID) float64) (*pubsub.PeerScoreParams, error) {
	var white []*net.IPNet
	for _, c := range cfg.PeerScore.ColocationWhitelist {
		p, err := config.ParsePrefixOrAddr(c) // the config's own rule: host bits are refused, not masked
		if err != nil {
			return nil, fmt.Errorf("enclave: peer_score.colocation_whitelist: %w", err)
		}
		white = append(white, &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return &pubsub.PeerScoreParams{
		AppSpecificScore:            app,
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -10,
		IPColocationFactorThreshold: cfg.PeerScore.ColocationThreshold,
		IPColocationFactorWhitelist: white,
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
		Topics: map[string]*pubsub.TopicScoreParams{topic: {
			TopicWeight: 1,
			// P1: +0.01 per second in the mesh, at most +2.
			TimeInMeshWeight: 0.01, TimeInMeshQuantum: time.Second, TimeInMeshCap: 200,
			// P2: +0.5 per first delivery, at most +2.
			FirstMessageDeliveriesWeight: 0.5, FirstMessageDeliveriesDecay: 0.9, FirstMessageDeliveriesCap: 4,
			// P3/P3b: a mild deficit penalty (at most -1 each).
			MeshMessageDeliveriesWeight: -1, MeshMessageDeliveriesDecay: 0.97, MeshMessageDeliveriesCap: 10,
			MeshMessageDeliveriesThreshold: 1, MeshMessageDeliveriesWindow: 10 * time.Millisecond,
			MeshMessageDeliveriesActivation: time.Minute,
			MeshFailurePenaltyWeight:        -1, MeshFailurePenaltyDecay: 0.97,
			// P4: -10 per invalid message squared: two forwarded invalid messages graylist.
			InvalidMessageDeliveriesWeight: -10, InvalidMessageDeliveriesDecay: 0.9,
		}},
	}, nil
}

// gossipParams are GossipSub's router parameters for an enclave topic. Two differ from the
// defaults, because what a sighting costs a node is the number of RPCs it reads and writes
// for it (each a write and a read system call, a TLS record and a yamux frame, and the
// goroutine hand-offs between them), not its bytes:
//
//   - IDONTWANT is never sent. On receiving a message over 1 KiB (a sighting is a few), the
//     router would first write an IDONTWANT to every other mesh peer: an RPC per mesh peer
//     per message, as costly as the duplicate it may save.
//   - The mesh degree is D=4 (Dlo 3, Dhi 6, Dscore 3) instead of 6 (5, 12, 4). Every node
//     reads about D copies of each message and writes about D; an enclave has tens of
//     members, the author reaches all its direct peers at once (flood publish) and gossip
//     (IHAVE to Dlazy=6 other peers every heartbeat) repairs a missed delivery, so a mesh of 4
//     still reaches every member in a few hops.
//
// At 50 peers on one machine this took a node from 16.9 RPCs written per sighting to about 4,
// and its CPU per sighting down by about a third (docs/benchmarks.md, "enclave: propagation").
func gossipParams(cfg config.Enclave) pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.IDontWantMessageThreshold = cfg.MaxMessageBytes + 4096 + 1 // above the largest message
	p.D, p.Dlo, p.Dhi, p.Dscore = 4, 3, 6, 3                     // Dout stays 2 (< Dlo, <= D/2)
	return p
}
