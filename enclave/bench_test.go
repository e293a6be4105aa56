package enclave

import (
	"crypto/ed25519"
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
		msg := &pubsub.Message{Message: &pb.Message{From: []byte(member), Data: data}, ReceivedFrom: member}
		if r := n.validate(b.Context(), member, msg); r != pubsub.ValidationAccept {
			b.Fatalf("validate = %v", r)
		}
	}
}
