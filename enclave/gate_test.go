package enclave

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestUnverifiedPeerIsSentNothing is the outgoing half of the membership gate (memberHost):
// a real admitted node opens no GossipSub stream to a connected peer, so it sends it nothing
// (not even the subscription hello that names the enclave's topic), until the peer's
// certificate has verified: not to one that never presents a certificate, and not to one
// whose certificate does not verify, for as long as it stays connected and after. A member
// connected the same way is sent the hello, so the counter can see it. Without the gate in
// memberHost.NewStream (the incoming gate alone left in place) both liars are sent the hello
// on connecting and the test fails.
func TestUnverifiedPeerIsSentNothing(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	cfg.CertTimeout = 2 * time.Second
	node := startAll(t, e, 1, cfg)[0]

	// A peer that is connected only after the test has seen the node's streams to it settle.
	connect := func(r *rawPeer) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.h.Connect(ctx, peer.AddrInfo{ID: node.ID(), Addrs: node.host.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}

	member := e.rawPeer(true)
	member.join(node)
	eventually(t, "the member sent the node's hello", func() bool { return member.rpcs.Load() > 0 })

	silent := e.rawPeer(false) // never opens the certificate exchange
	connect(silent)

	forged := e.rawPeer(false)
	other := newTestEnclave(t, "lab") // the same enclave name, another enclave key
	c, err := Admit(other.key, "lab", forged.id, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged.cert = c.Marshal()
	connect(forged)
	// Connected and unverified for a while first (GossipSub greets a new peer at once), then
	// the certificate that does not verify.
	time.Sleep(cfg.CertTimeout / 2)
	forged.presentCert(node)

	eventually(t, "the forger refused", func() bool { return node.isDenied(forged.id) })
	eventually(t, "the silent peer refused", func() bool { return node.isDenied(silent.id) })
	time.Sleep(200 * time.Millisecond) // anything already on its way arrives
	for _, r := range []struct {
		name string
		p    *rawPeer
	}{{"a peer that presents no certificate", silent}, {"a peer whose certificate does not verify", forged}} {
		if n, m := r.p.streams.Load(), r.p.rpcs.Load(); n != 0 || m != 0 {
			t.Errorf("%s was sent %d RPCs on %d GossipSub streams before it was refused", r.name, m, n)
		}
		for _, p := range node.topic.ListPeers() {
			if p == r.p.id {
				t.Errorf("%s listed as a topic peer", r.name)
			}
		}
	}
	if node.isMember(silent.id) || node.isMember(forged.id) {
		t.Errorf("an unverified peer counts as a member")
	}
}
