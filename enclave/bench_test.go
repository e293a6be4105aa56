package enclave

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/proteus-defense/proteus/stix"
)

// BenchmarkValidate is the topic validator's cost for one valid sighting from a member
// (envelope, cached certificate, STIX decode, attribution, replay guard).
func BenchmarkValidate(b *testing.B) {
	now := time.Now().UTC()
	key, _ := GenerateEnclaveKey()
	member := newPeerID(b)
	cert, _ := Admit(key, "lab", member, now, time.Hour)
	data := (&Envelope{Version: 1, Enclave: "lab", Kind: KindSighting, Cert: cert.Marshal(),
		Bundle: sightingBundle(b, member, member.String(), now, time.Hour)}).Encode()
	n := validatorNode(b, key.Public().(ed25519.PublicKey), now)
	n.verified[member] = now.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		n.replay = stix.NewReplayGuard(16)
		n.budget = newBudget(n.cfg.Limits.Rate, n.cfg.Limits.Burst) // one member, always within its burst
		n.newReplay = n.newReplay[:0]
		msg := &pubsub.Message{Message: &pb.Message{From: []byte(member), Data: data}, ReceivedFrom: member}
		if r := n.validate(b.Context(), member, msg); r != pubsub.ValidationAccept {
			b.Fatalf("validate = %v", r)
		}
	}
}

// BenchmarkPublishToApplied is one sighting from publish at one node to the countermeasure
// applied at two others (three real libp2p hosts on loopback in this process).
func BenchmarkPublishToApplied(b *testing.B) {
	e := newTestEnclave(b, "lab")
	cfg := e.baseConfig()
	cfg.Decision.Act, cfg.Decision.Defer = 0.4, 0.2
	var nodes []*testNode
	for i := 0; i < 3; i++ {
		nodes = append(nodes, e.start(b.TempDir(), nil, cfg))
	}
	defer func() {
		for _, n := range nodes {
			_ = n.Close()
			n.stop()
		}
	}()
	for i := range nodes {
		for j := 0; j < i; j++ {
			if err := nodes[i].Connect(b.Context(), nodes[j].Addrs()[0]); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, n := range nodes {
		for len(n.topic.ListPeers()) < 2 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s, _, err := nodes[0].Publish(b.Context(), PublishRequest{Target: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Confidence: 100, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range nodes[1:] {
			for {
				if d, ok := decisionFor(n, s.ID); ok && d.Applied {
					break
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
}
