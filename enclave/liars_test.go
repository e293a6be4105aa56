package enclave

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/stix"
)

func startAll(t *testing.T, e *testEnclave, n int, cfg config.Enclave) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i := 0; i < n; i++ {
		nodes = append(nodes, e.start(t.TempDir(), nil, cfg))
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close(t)
		}
	})
	connectAll(t, nodes)
	return nodes
}

func publish(t *testing.T, n *testNode, target string, conf int) *stix.Sighting {
	t.Helper()
	s, _, err := n.Publish(context.Background(), PublishRequest{Target: target, Confidence: conf, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func blockedAnywhere(nodes []*testNode, target string) []string {
	var out []string
	for _, n := range nodes {
		for _, a := range n.manager.Active() {
			if a.Kind == "block" && a.Target.String() == target {
				out = append(out, n.ID().String())
			}
		}
	}
	return out
}

// Two admitted colluders agree on clean addresses, echo an honest report and ask for a port
// block: no honest member blocks anything they said, and their agreement earns them no
// trust; the honest attack is blocked where this agent's own sensors saw it and deferred
// (vigilance) everywhere else.
func TestCollusionAndEchoNeverBlockCleanAddresses(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Trust.Window = time.Second
	nodes := startAll(t, e, 6, cfg)
	honest, liars := nodes[:4], nodes[4:]

	var lies []*stix.Sighting
	for i := 0; i < 8; i++ {
		target := fmt.Sprintf("192.0.2.%d", 50+i)
		for _, l := range liars {
			lies = append(lies, publish(t, l, target, 100))
		}
	}
	for _, h := range honest {
		eventually(t, "lies arrive", func() bool { _, ok := decisionFor(h, lies[len(lies)-1].ID); return ok })
	}
	// Echo an honest attack report, then lie again.
	attack := publish(t, honest[0], "203.0.113.9", 90)
	for _, h := range honest[1:] {
		eventually(t, "attack report arrives", func() bool { _, ok := decisionFor(h, attack.ID); return ok })
	}
	for _, l := range liars {
		publish(t, l, "203.0.113.9", 90) // the echo, before honest[1]'s own evidence
	}
	// honest[1]'s own sensors see it too, well within the report's trust window (on a loaded
	// machine publishing everything else first can take longer than the window).
	publish(t, honest[1], "203.0.113.9", 90)
	for _, l := range liars {
		publish(t, l, "port/443", 100)
	}
	time.Sleep(2 * cfg.Trust.Window)
	for i := 0; i < 8; i++ {
		if b := blockedAnywhere(honest, fmt.Sprintf("192.0.2.%d", 50+i)); len(b) > 0 {
			t.Errorf("clean 192.0.2.%d blocked by %v", 50+i, b)
		}
	}
	if b := blockedAnywhere(honest, "port/443"); len(b) > 0 {
		t.Errorf("port 443 blocked by %v", b)
	}
	for _, h := range honest {
		for _, l := range liars {
			if s := h.trust.Score(l.ID().String()); s >= cfg.Trust.Neutral {
				t.Errorf("%s trusts colluder %s at %v", h.ID(), l.ID(), s)
			}
		}
	}
	if b := blockedAnywhere(honest, "203.0.113.9"); len(b) != 2 {
		t.Errorf("attack blocked by %d honest members, want the 2 that saw it", len(b))
	}
	for _, h := range honest[2:] {
		if d, _ := decisionFor(h, attack.ID); d.Decision != Defer {
			t.Errorf("%s: the reported attack was not deferred (vigilance): %+v", h.ID(), d)
		}
	}
	if s := honest[1].trust.Score(honest[0].ID().String()); s <= cfg.Trust.Neutral {
		t.Errorf("reporter confirmed by honest[1]'s own evidence has trust %v", s)
	}
}

// A member re-publishing its own indicator with a new target is refused as invalid: the
// new target is never decided and the member's trust falls.
func TestReversionedIndicatorRefused(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Decision.Act, cfg.Decision.Defer = 0.4, 0.2
	b := e.start(t.TempDir(), nil, cfg)
	defer b.close(t)
	r := e.rawPeer(true)
	r.join(b)
	eventually(t, "raw peer in topic", func() bool { return len(b.topic.ListPeers()) == 1 })
	now := time.Now().UTC().Add(-time.Second)
	id := stix.NewID("indicator")
	orig := bundleFor(t, r.id, id, "192.0.2.1", now, now, time.Hour)
	moved := bundleFor(t, r.id, id, "198.51.100.77", now, now.Add(10*time.Millisecond), time.Hour)
	if err := r.send(b, r.message(r.key, r.envelope(KindSighting, orig))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "original decided", func() bool { _, ok := decisionFor(b, id); return ok })
	if err := r.send(b, r.message(r.key, r.envelope(KindSighting, moved))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "re-targeted version rejected", func() bool { return b.Stats().Rejected >= 1 })
	for _, d := range b.Decisions(id) {
		if d.Target != "192.0.2.1" {
			t.Errorf("decision on the new target: %+v", d)
		}
	}
	if b.blocklist.Blocked(mustAddr("198.51.100.77")) || b.trust.Score(r.id.String()) >= cfg.Trust.Neutral {
		t.Errorf("new target blocked %v, trust %v", b.blocklist.Blocked(mustAddr("198.51.100.77")), b.trust.Score(r.id.String()))
	}
}

// A restarted member remembers what it saw: a retraction that arrives after the restart
// lifts the block, and replayed signed sightings (captured before the restart) are ignored.
func TestRestartRemembersReplaysAndRetractions(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	pubs := []*testNode{e.start(t.TempDir(), nil, cfg), e.start(t.TempDir(), nil, cfg)}
	for _, p := range pubs {
		defer p.close(t)
		cfg.Trust.Pretrusted = append(cfg.Trust.Pretrusted, p.ID().String())
	}
	dir := t.TempDir()
	b := e.start(dir, nil, cfg)
	connectAll(t, append([]*testNode{b}, pubs...))
	var ss []*stix.Sighting
	for _, p := range pubs {
		ss = append(ss, publish(t, p, "192.0.2.33", 100))
	}
	eventually(t, "b blocks on two pre-trusted reporters", func() bool { return b.blocklist.Blocked(mustAddr("192.0.2.33")) })
	b.close(t)

	b2 := e.start(dir, b.key, cfg)
	defer b2.close(t)
	connectAll(t, append([]*testNode{b2}, pubs...))
	if !b2.blocklist.Blocked(mustAddr("192.0.2.33")) {
		t.Fatal("block not restored")
	}
	for i, p := range pubs {
		if err := p.Revoke(context.Background(), ss[i].ID, "false positive"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "retraction after the restart lifts the block", func() bool { return !b2.blocklist.Blocked(mustAddr("192.0.2.33")) })

	// Replay the original signed sightings (same author keys, same indicator versions).
	r := e.rawPeer(true)
	r.join(b2.testNode())
	ignored := b2.Stats().Ignored
	for i, p := range pubs {
		bundle, err := stix.Encode(*ss[i])
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := os.ReadFile(filepath.Join(p.dir, "member.cert"))
		data := (&Envelope{Version: EnvelopeVersion, Enclave: "lab", Kind: KindSighting, Cert: cert, Bundle: bundle}).Encode()
		if err := r.send(b2.testNode(), r.message(p.key, data)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "replays ignored", func() bool { return b2.Stats().Ignored >= ignored+2 })
	if b2.blocklist.Blocked(mustAddr("192.0.2.33")) {
		t.Errorf("replay re-armed the block")
	}
}

func (tn *testNode) testNode() *testNode { return tn }

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An outsider that connects and subscribes but never proves membership is sent nothing,
// however many sightings are published while it waits, and is then refused.
func TestUnverifiedPeerReceivesNothing(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.CertTimeout = 3 * time.Second
	nodes := startAll(t, e, 2, cfg)
	out := e.rawPeer(false)
	out.join(nodes[0])
	for i := 0; i < 10; i++ {
		publish(t, nodes[0], fmt.Sprintf("192.0.2.%d", 100+i), 100)
		publish(t, nodes[1], fmt.Sprintf("192.0.2.%d", 150+i), 100)
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, "outsider refused", func() bool { return nodes[0].isDenied(out.id) })
	if got := out.received.Load(); got != 0 {
		t.Errorf("outsider received %d of 20 sightings", got)
	}
	for _, p := range nodes[0].topic.ListPeers() {
		if p == out.id {
			t.Errorf("outsider listed as a topic peer")
		}
	}
}

// A member revocation list signed by the enclave key cuts the member off everywhere at
// once and survives a restart; a member whose certificate expires while connected is
// disconnected.
func TestMemberRevocationAndExpiry(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.MaxClockSkew = time.Second // so the short certificate below expires soon
	// Each connection is checked for membership once, cert_timeout after it opens; the
	// revocation and the expiry below come later, so only their own checks can cut them off.
	cfg.CertTimeout = time.Second
	settled := func(n *testNode) bool {
		for _, c := range n.host.Network().Conns() {
			if time.Since(c.Stat().Opened) <= 2*cfg.CertTimeout {
				return false
			}
		}
		return true
	}
	dir := t.TempDir()
	a := e.start(dir, nil, cfg)
	nodes := append([]*testNode{a}, e.start(t.TempDir(), nil, cfg), e.start(t.TempDir(), nil, cfg))
	defer func() {
		for _, n := range nodes[1:] {
			n.close(t)
		}
	}()
	connectAll(t, nodes)
	for _, n := range nodes {
		eventually(t, "connections past their membership check", func() bool { return settled(n) })
	}
	cut := nodes[2]
	l, err := RevokeMembers(e.key, "lab", nil, peerIDers{cut}.ids(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a.RevokeMembers(context.Background(), l); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	for _, n := range nodes[:2] {
		eventually(t, "revoked member disconnected", func() bool {
			return n.isRevoked(cut.ID()) && n.host.Network().Connectedness(cut.ID()) != network.Connected
		})
	}
	// Whatever the revoked node sends now (it may be cut off before the list even reaches
	// it), members refuse its certificate (below) and have disconnected it (above).
	h := publish(t, nodes[1], "192.0.2.201", 100)
	eventually(t, "member's report", func() bool { _, ok := decisionFor(a, h.ID); return ok })
	if err := a.admitCert(cut.ID(), mustRead(t, filepath.Join(cut.dir, "member.cert"))); err == nil {
		t.Errorf("revoked member's certificate still admitted")
	}
	a.close(t)
	a2 := e.start(dir, a.key, cfg)
	defer a2.close(t)
	if !a2.isRevoked(cut.ID()) {
		t.Errorf("revocation list not persisted")
	}
	if err := cut.Connect(context.Background(), a2.Addrs()[0]); err == nil {
		eventually(t, "revoked member refused after restart", func() bool { return a2.host.Network().Connectedness(cut.ID()) != network.Connected })
	}
	// A forged list (another key) is refused.
	other, _ := GenerateEnclaveKey()
	forged, _ := RevokeMembers(other, "lab", l, peerIDers{nodes[1]}.ids(), time.Now())
	if _, err := a2.RevokeMembers(context.Background(), forged); err == nil || a2.isRevoked(nodes[1].ID()) {
		t.Errorf("forged list accepted: %v", err)
	}

	// Expiry while connected.
	short := e.startWithValidity(t.TempDir(), cfg, 3*time.Second)
	defer short.close(t)
	if err := short.Connect(context.Background(), nodes[1].Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "short-lived member admitted", func() bool { return nodes[1].isMember(short.ID()) })
	if time.Since(short.cert.Issued) > 2*time.Second {
		t.Skip("the short certificate was nearly spent before its connection's membership check passed (machine too slow)")
	}
	eventually(t, "expired member disconnected", func() bool {
		return !nodes[1].isMember(short.ID()) && nodes[1].host.Network().Connectedness(short.ID()) != network.Connected
	})
}

// One member floods thousands of signed sightings at two members at once: the flooder's
// messages beyond its budget are dropped, it holds at most limits.reports reports, its
// score falls below the graylist threshold, and an honest member's report published during
// the flood still reaches every other member.
func TestFloodFromOneMember(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	nodes := startAll(t, e, 3, cfg)
	targets := nodes[1:] // the flooder's neighbours
	r := e.rawPeer(true)
	for _, b := range targets {
		r.join(b)
	}
	now := time.Now().UTC().Add(-time.Second)
	const flood = 3000
	var h *stix.Sighting
	for i := 0; i < flood; i += 10 {
		var ms = make([]*pbMessage, 0, 10)
		for j := i; j < i+10; j++ {
			bundle := bundleFor(t, r.id, stix.NewID("indicator"), fmt.Sprintf("10.%d.%d.%d", j/65536, j/256%256, j%256), now, now, time.Hour)
			ms = append(ms, r.message(r.key, r.envelope(KindSighting, bundle)))
		}
		if i == 0 {
			sz := 0
			for _, m := range ms {
				sz += m.Size()
			}
			t.Logf("one RPC of %d messages: %d bytes", len(ms), sz)
		}
		if i == 20 {
			h = publish(t, nodes[0], "192.0.2.9", 90) // while the flood is arriving
		}
		sent := 0
		for _, b := range targets {
			if err := r.send(b, ms...); err == nil {
				sent++
			}
		}
		if sent == 0 {
			t.Logf("flood stopped after %d: every target cut the flooder off", i)
			break
		}
	}
	if h == nil {
		h = publish(t, nodes[0], "192.0.2.9", 90)
	}
	for _, b := range targets {
		eventually(t, "honest report published during the flood reaches every member", func() bool { _, ok := decisionFor(b, h.ID); return ok })
		// Once graylisted, GossipSub drops the flooder's RPCs before validation.
		eventually(t, "flooder graylisted (or already cut off)", func() bool {
			s, ok := b.Score(r.id)
			return ok && s < cfg.PeerScore.Graylist || b.isDenied(r.id)
		})
		st := b.Stats()
		t.Logf("flood of %d: accepted %d, over budget %d, the rest dropped unread", flood, st.Accepted, st.Limited)
		if st.Accepted > uint64(cfg.Limits.Burst)+200 {
			t.Errorf("accepted %d flood messages (burst %d)", st.Accepted, cfg.Limits.Burst)
		}
		b.mu.Lock()
		held := b.perReporter[r.id.String()]
		b.mu.Unlock()
		if held > cfg.Limits.Reports {
			t.Errorf("flooder holds %d reports", held)
		}
	}
	// A flood that goes on for seconds gets the flooder disconnected and refused.
	for _, b := range targets {
		eventually(t, "sustained flooder cut off", func() bool {
			bundle := bundleFor(t, r.id, stix.NewID("indicator"), "10.9.9.9", now, now, time.Hour)
			_ = r.send(b, r.message(r.key, r.envelope(KindSighting, bundle)))
			time.Sleep(100 * time.Millisecond)
			return b.isDenied(r.id)
		})
	}
}

type pbMessage = pb.Message

type peerIDer interface{ ID() peer.ID }

type peerIDers []peerIDer

func (ps peerIDers) ids() []peer.ID {
	out := make([]peer.ID, len(ps))
	for i, p := range ps {
		out[i] = p.ID()
	}
	return out
}

// Liars with all the power a coalition can have (established trust at every honest member,
// independent, and as many as the quorum) make every honest member block a clean address,
// which is what the quorum allows by design; but they cannot make one harm itself: not its
// own host's address, not an address on enclave.protect, not link-local or loopback in any
// IPv6 spelling, not a port (without decision.peer_ports).
func TestEstablishedQuorumNeverSelfHarms(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.Protect = []string{"198.18.0.0/15"}
	var liarKeys []crypto.PrivKey
	for i := 0; i < 2; i++ {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := PeerIDOf(k)
		liarKeys = append(liarKeys, k)
		cfg.Trust.Pretrusted = append(cfg.Trust.Pretrusted, id.String())
	}
	var nodes []*testNode
	for i := 0; i < 3; i++ {
		nodes = append(nodes, e.start(t.TempDir(), nil, cfg))
	}
	for _, k := range liarKeys {
		nodes = append(nodes, e.start(t.TempDir(), k, cfg))
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close(t)
		}
	})
	connectAll(t, nodes)
	honest, liars := nodes[:3], nodes[3:]
	if q := honest[0].quorum(); q != 2 {
		t.Fatalf("quorum %d at 5 members, want 2", q)
	}

	// The control: a clean address both liars report is blocked everywhere.
	var last *stix.Sighting
	for _, l := range liars {
		last = publish(t, l, "192.0.2.77", 100)
	}
	for _, h := range honest {
		eventually(t, "the established quorum's report is decided", func() bool { _, ok := decisionFor(h, last.ID); return ok })
	}
	if b := blockedAnywhere(honest, "192.0.2.77"); len(b) != len(honest) {
		t.Fatalf("the control target was blocked by %d of %d honest members: the liars lack the power this test needs", len(b), len(honest))
	}

	protected := []string{"198.18.7.7", "port/22"} // port 22 is in the test exposure: relevant, so only the port rule stops it
	if a, ok := nonLoopbackAddr(); ok {
		protected = append(protected, a) // this host's own address (every node here shares the host)
	} else {
		t.Log("no non-loopback address on this host: its-own-address case skipped")
	}
	lie := func(targets []string) {
		for _, target := range targets {
			for _, l := range liars {
				if _, _, err := l.Publish(context.Background(), PublishRequest{Target: target, Confidence: 100, TTL: time.Hour}); err != nil {
					t.Fatalf("%s: %v", target, err)
				}
			}
		}
	}
	// Protected targets first (while the liars are still established: a reserved target is
	// an invalid message, which costs its author trust).
	lie(protected)
	for _, h := range honest {
		for _, target := range protected {
			eventually(t, "both reports on protected target "+target+" decided", func() bool {
				seen := 0
				for _, d := range h.Decisions("") {
					if d.Target == target && d.Event == "sighting" {
						seen++
					}
				}
				return seen == len(liars)
			})
		}
	}
	rejectedBefore := map[*testNode]uint64{}
	for _, h := range honest {
		rejectedBefore[h] = h.Stats().Rejected
	}
	reserved := []string{"169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "fe80::1"}
	lie(reserved)
	for _, h := range honest {
		// Each liar's first reserved target is refused as invalid; two invalid messages
		// graylist their author (P4), so GossipSub may drop the rest unread.
		eventually(t, "reserved targets refused as invalid", func() bool {
			return h.Stats().Rejected >= rejectedBefore[h]+uint64(len(liars))
		})
	}
	for _, target := range append(protected, reserved...) {
		if b := blockedAnywhere(honest, target); len(b) > 0 {
			t.Errorf("%s blocked by %v", target, b)
		}

	}
	for _, h := range honest {
		for _, d := range h.Decisions("") {
			for _, target := range reserved {
				if d.Target == target {
					t.Errorf("%s: reserved target decided: %+v", h.ID(), d)
				}
			}
			// Not only nothing applied (the gateway blocklist cannot block a port anyway):
			// nothing decided act.
			for _, target := range protected {
				if d.Target == target && d.Decision == Act {
					t.Errorf("%s: protected target %s decided act: %+v", h.ID(), target, d)
				}
			}
		}
	}
}

// nonLoopbackAddr is one of this host's own unicast addresses that is not loopback or
// link-local, if it has one.
func nonLoopbackAddr() (string, bool) {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				ip = ip.Unmap()
				if !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && ip.IsGlobalUnicast() {
					return ip.String(), true
				}
			}
		}
	}
	return "", false
}
