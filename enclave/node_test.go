package enclave

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/config"
)

// decisionFor is the decision taken when indicator's report arrived.
func decisionFor(n *testNode, indicator string) (DecisionRecord, bool) {
	for _, r := range n.Decisions(indicator) {
		if r.Event == "sighting" {
			return r, true
		}
	}
	return DecisionRecord{}, false
}

// A sighting published by one member reaches every member; the relevant ones, with only a
// peer's word for it, raise vigilance (defer), the one with a different exposure stores it
// as irrelevant; a revocation reverts.
func TestSightingActsWhereRelevantAndRevocationReverts(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Decision.Act, cfg.Decision.Defer = 0.4, 0.2
	other := cfg
	other.Exposure = config.EnclaveExposure{OS: "windows", Services: []config.EnclaveService{{Port: 3389, Protocol: "tcp"}}}
	var nodes []*testNode
	for i := 0; i < 4; i++ {
		c := cfg
		if i == 3 {
			c = other
		}
		nodes = append(nodes, e.start(t.TempDir(), nil, c))
	}
	defer func() {
		for _, n := range nodes {
			n.close(t)
		}
	}()
	connectAll(t, nodes)

	s, rec, err := nodes[0].Publish(context.Background(), PublishRequest{Target: "203.0.113.7", Confidence: 100, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Decision != Act || !nodes[0].blocklist.Blocked(mustAddr("203.0.113.7")) {
		t.Fatalf("publisher's own sighting: %+v", rec)
	}
	for i, n := range nodes[1:3] {
		eventually(t, fmt.Sprintf("node %d defers", i+1), func() bool { return n.vigilance.Level() == 1 })
		d, _ := decisionFor(n, s.ID)
		if d.Decision != Defer || d.Evidence != 0.5 || d.Reporters != 1 || !d.Relevant || n.blocklist.Blocked(mustAddr("203.0.113.7")) {
			t.Errorf("node %d: %+v", i+1, d)
		}
	}
	eventually(t, "irrelevant node records", func() bool { _, ok := decisionFor(nodes[3], s.ID); return ok })
	if d, _ := decisionFor(nodes[3], s.ID); d.Decision != Irrelevant || nodes[3].blocklist.Blocked(mustAddr("203.0.113.7")) {
		t.Errorf("node with other exposure acted: %+v", d)
	}

	if err := nodes[0].Revoke(context.Background(), s.ID, "false positive"); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes[:3] {
		eventually(t, fmt.Sprintf("node %d reverts", i), func() bool {
			return !n.blocklist.Blocked(mustAddr("203.0.113.7")) && n.vigilance.Level() == 0
		})
	}
}

// A member whose reports this agent's sensors contradict loses trust at every peer until
// its reports are ignored and GossipSub graylists it; a reporter confirmed by a member's own
// evidence gains trust there.
func TestLiarIgnoredAndGraylisted(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Decision.Act, cfg.Decision.Defer = 0.45, 0.3
	cfg.Trust.Window = 300 * time.Millisecond
	var nodes []*testNode
	for i := 0; i < 5; i++ {
		nodes = append(nodes, e.start(t.TempDir(), nil, cfg))
	}
	defer func() {
		for _, n := range nodes {
			n.close(t)
		}
	}()
	connectAll(t, nodes)
	honest, liar := nodes[:4], nodes[4]
	liarID := liar.ID().String()

	// Two honest members see the same attacker: the second one's own evidence confirms the
	// first one's report.
	s1, _, err := honest[0].Publish(context.Background(), PublishRequest{Target: "198.51.100.1", Confidence: 90, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "first report arrives", func() bool { _, ok := decisionFor(honest[1], s1.ID); return ok })
	if _, _, err := honest[1].Publish(context.Background(), PublishRequest{Target: "198.51.100.1", Confidence: 90, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "honest reporter gains trust", func() bool { return honest[1].trust.Score(honest[0].ID().String()) > cfg.Trust.Neutral })

	// The liar reports addresses nobody else ever sees.
	var last DecisionRecord
	for i := 0; ; i++ {
		if i > 40 {
			t.Fatalf("liar never ignored; last decision %+v", last)
		}
		s, _, err := liar.Publish(context.Background(), PublishRequest{Target: fmt.Sprintf("192.0.2.%d", i+1), Confidence: 100, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		// Wait until the report's window has passed at the observer (settled or dropped).
		time.Sleep(cfg.Trust.Window + 100*time.Millisecond)
		if d, ok := decisionFor(honest[3], s.ID); ok {
			last = d
		}
		sc, _ := honest[3].Score(liar.ID())
		t.Logf("lie %d: trust %.3f score %.1f decision %s stats %+v", i, honest[3].trust.Score(liarID), sc, last.Decision, honest[3].Stats())
		if honest[3].trust.Score(liarID) < cfg.Decision.Act && last.Decision == Ignore {
			break
		}
	}
	for _, n := range honest {
		if got := n.trust.Score(liarID); got >= cfg.Decision.Act {
			t.Errorf("%s still trusts the liar: %v", n.ID(), got)
		}
	}
	// Keep lying until the mesh graylists the liar at every honest peer.
	for _, n := range honest {
		eventually(t, "liar graylisted", func() bool {
			if n.trust.Score(liarID) > 0.15 {
				_, _, _ = liar.Publish(context.Background(), PublishRequest{Target: "192.0.2.250", Confidence: 100, TTL: time.Hour})
				time.Sleep(cfg.Trust.Window)
			}
			s, ok := n.Score(liar.ID())
			return ok && s < cfg.PeerScore.Graylist
		})
	}
	// A graylisted liar's new report reaches nobody.
	before := honest[0].Stats().Accepted
	s, _, err := liar.Publish(context.Background(), PublishRequest{Target: "192.0.2.251", Confidence: 100, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// An honest report published afterwards arrives; the liar's (published first) must not have.
	h, _, err := honest[1].Publish(context.Background(), PublishRequest{Target: "198.51.100.2", Confidence: 90, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "honest report after the lie", func() bool { _, ok := decisionFor(honest[0], h.ID); return ok })
	if _, ok := decisionFor(honest[0], s.ID); ok {
		t.Errorf("graylisted liar's report was processed (accepted before %d, now %d)", before, honest[0].Stats().Accepted)
	}
}

// A node holding a certificate from another enclave key is refused and its messages never
// reach members.
func TestOutsiderRefused(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Decision.Act, cfg.Decision.Defer = 0.4, 0.2
	a := e.start(t.TempDir(), nil, cfg)
	defer a.close(t)
	b := e.start(t.TempDir(), nil, cfg)
	defer b.close(t)
	connectAll(t, []*testNode{a, b})

	evil := newTestEnclave(t, "lab") // same name, different key
	out := evil.start(t.TempDir(), nil, evil.baseConfig())
	defer out.close(t)
	_ = out.Connect(context.Background(), a.Addrs()[0]) // may fail or be closed right after
	eventually(t, "outsider denied", func() bool { return a.Stats().Denied >= 1 })
	if err := out.Connect(context.Background(), a.Addrs()[0]); err == nil {
		// The gater refuses a denied peer on every later attempt.
		t.Errorf("denied outsider reconnected")
	}
	s, _, err := out.Publish(context.Background(), PublishRequest{Target: "192.0.2.66", Confidence: 100, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := b.Publish(context.Background(), PublishRequest{Target: "192.0.2.67", Confidence: 100, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "member report", func() bool { _, ok := decisionFor(a, h.ID); return ok })
	if _, ok := decisionFor(a, s.ID); ok || a.blocklist.Blocked(mustAddr("192.0.2.66")) {
		t.Errorf("outsider's sighting was processed")
	}
	for _, p := range a.Peers() {
		if p.ID == out.ID().String() && (p.Connected || p.Membership != "denied") {
			t.Errorf("outsider row %+v", p)
		}
	}
}

// A restarted node keeps its trust table and its pending reverts.
func TestRestartKeepsTrustAndPendingReverts(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Trust.Window = 200 * time.Millisecond
	a := e.start(t.TempDir(), nil, cfg)
	defer a.close(t)
	dir := t.TempDir()
	b := e.start(dir, nil, cfg)
	connectAll(t, []*testNode{a, b})

	// Contradicted: a's report lowers its trust at b (b's sensors saw nothing).
	if _, _, err := a.Publish(context.Background(), PublishRequest{Target: "192.0.2.10", Confidence: 100, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "trust falls", func() bool { return b.trust.Score(a.ID().String()) < cfg.Trust.Neutral })
	// Confirmed: b's own evidence confirms a's next report and blocks it.
	s2, _, err := a.Publish(context.Background(), PublishRequest{Target: "192.0.2.11", Confidence: 100, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "b got s2", func() bool { _, ok := decisionFor(b, s2.ID); return ok })
	if _, _, err := b.Publish(context.Background(), PublishRequest{Target: "192.0.2.11", Confidence: 100, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	trustBefore := b.trust.Score(a.ID().String())
	actions := b.manager.Active()
	if len(actions) == 0 || !b.blocklist.Blocked(mustAddr("192.0.2.11")) {
		t.Fatal("no active block before restart")
	}
	b.close(t)

	b2 := e.start(dir, b.key, cfg)
	defer b2.close(t)
	if got := b2.trust.Score(a.ID().String()); got < trustBefore-0.01 || got > trustBefore+0.01 {
		t.Errorf("trust after restart %v, before %v", got, trustBefore)
	}
	after := b2.manager.Active()
	if len(after) != len(actions) {
		t.Fatalf("active actions after restart %+v, before %+v", after, actions)
	}
	for i := range after {
		if after[i].ID != actions[i].ID || !after[i].Expires.Equal(actions[i].Expires) {
			t.Errorf("action %d after restart %+v, before %+v", i, after[i], actions[i])
		}
	}
	if !b2.blocklist.Blocked(mustAddr("192.0.2.11")) {
		t.Errorf("restored action not re-applied")
	}
}

// In an allowlist-only enclave (no enclave key) the gater refuses every peer not on the
// list right after the security handshake, in both directions.
func TestAllowlistOnlyEnclave(t *testing.T) {
	e := newTestEnclave(t, "lab")
	keys := make([]crypto.PrivKey, 3)
	ids := make([]string, 3)
	for i := range keys {
		keys[i], _, _ = crypto.GenerateEd25519Key(nil)
		id, _ := PeerIDOf(keys[i])
		ids[i] = id.String()
	}
	cfg := e.baseConfig()
	cfg.Key, cfg.Certificate = "", ""
	cfg.Decision.Act, cfg.Decision.Defer = 0.4, 0.2
	cfg.Allowlist = ids[:2]
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var nodes []*testNode
	for i := 0; i < 2; i++ {
		nodes = append(nodes, e.start(t.TempDir(), keys[i], cfg))
		defer nodes[i].close(t)
	}
	connectAll(t, nodes)
	// The stranger allowlists itself and the members, but they do not list it.
	scfg := cfg
	scfg.Allowlist = ids
	stranger := e.start(t.TempDir(), keys[2], scfg)
	defer stranger.close(t)
	if err := stranger.Connect(context.Background(), nodes[0].Addrs()[0]); err == nil {
		eventually(t, "stranger dropped", func() bool { return len(nodes[0].Host().Network().ConnsToPeer(stranger.ID())) == 0 })
	}
	if err := nodes[1].Connect(context.Background(), stranger.Addrs()[0]); err == nil {
		t.Errorf("member dialed a peer that is not on the allowlist")
	}
	s, _, err := nodes[0].Publish(context.Background(), PublishRequest{Target: "192.0.2.80", Confidence: 100, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "member receives", func() bool { _, ok := decisionFor(nodes[1], s.ID); return ok })
	if _, ok := decisionFor(stranger, s.ID); ok {
		t.Errorf("stranger received a member's report")
	}
	if _, err := New(context.Background(), Options{Config: func() config.Enclave { c := cfg; c.Allowlist = ids[1:2]; return c }(),
		DataDir: t.TempDir(), Identity: keys[0]}); !errors.Is(err, ErrNotMember) {
		t.Errorf("node not on its own allowlist started: %v", err)
	}
}

// GossipSub scores the enclave topic (P1–P4) and IP colocation (P6), not only trust; the
// positive parts stay small enough that mesh behaviour never lifts a graylisted peer.
func TestPeerScoreParams(t *testing.T) {
	cfg := newTestEnclave(t, "lab").baseConfig()
	p, err := peerScoreParams(cfg, TopicPrefix+"lab", func(peer.ID) float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	tp := p.Topics[TopicPrefix+"lab"]
	if tp == nil || tp.TimeInMeshWeight <= 0 || tp.FirstMessageDeliveriesWeight <= 0 || tp.MeshMessageDeliveriesWeight >= 0 ||
		tp.InvalidMessageDeliveriesWeight >= 0 || p.IPColocationFactorWeight >= 0 || p.IPColocationFactorThreshold != cfg.PeerScore.ColocationThreshold {
		t.Fatalf("scoring not enabled: %+v %+v", p, tp)
	}
	if maxPositive := tp.TimeInMeshWeight*tp.TimeInMeshCap + tp.FirstMessageDeliveriesWeight*tp.FirstMessageDeliveriesCap; maxPositive > 5 {
		t.Errorf("P1+P2 can add %v", maxPositive)
	}
	if len(p.IPColocationFactorWhitelist) != 1 {
		t.Errorf("whitelist %v", p.IPColocationFactorWhitelist)
	}
	if w := p.IPColocationFactorWhitelist[0]; w.String() != "127.0.0.0/8" {
		t.Errorf("whitelist %v, want 127.0.0.0/8", w)
	}
	// One parser for every address list: host bits are refused, not masked into a wider
	// range that would exempt more peers than written; a single address is itself.
	cfg.PeerScore.ColocationWhitelist = []string{"10.1.2.3/8"}
	if _, err := peerScoreParams(cfg, "t", nil); err == nil || !strings.Contains(err.Error(), "host bits set (want 10.0.0.0/8)") {
		t.Errorf("whitelist with host bits: %v", err)
	}
	cfg.PeerScore.ColocationWhitelist = []string{"192.0.2.7", "::ffff:198.51.100.0/120"}
	if p, err := peerScoreParams(cfg, "t", nil); err != nil || len(p.IPColocationFactorWhitelist) != 2 ||
		p.IPColocationFactorWhitelist[0].String() != "192.0.2.7/32" || p.IPColocationFactorWhitelist[1].String() != "198.51.100.0/24" ||
		!p.IPColocationFactorWhitelist[1].Contains(net.ParseIP("198.51.100.9")) {
		t.Errorf("whitelist %v, %v", p, err)
	}
	cfg.PeerScore.ColocationWhitelist = []string{"nope"}
	if _, err := peerScoreParams(cfg, "t", nil); err == nil {
		t.Error("bad whitelist accepted")
	}
}
