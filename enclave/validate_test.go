package enclave

import (
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/stix"
)

// validatorNode is a Node with just what the topic validator uses (no host).
func validatorNode(t testing.TB, pub ed25519.PublicKey, now time.Time) *Node {
	t.Helper()
	cfg := config.Enclave{Name: "lab", Key: PublicKeyString(pub)}
	cfg.ApplyDefaults()
	tr, _ := OpenTrust("", TrustParams{Neutral: 0.5, Reward: 0.2, Penalty: 0.3, InvalidPenalty: 0.6, HalfLife: time.Hour}, nil)
	return &Node{cfg: cfg, enclave: pub, self: newPeerID(t), allow: map[peer.ID]bool{}, trust: tr,
		verified: map[peer.ID]time.Time{}, certCache: map[string]time.Time{}, denied: map[peer.ID]time.Time{},
		replay: stix.NewReplayGuard(100), log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
}

func sightingBundle(t testing.TB, author peer.ID, name string, now time.Time, ttl time.Duration) []byte {
	t.Helper()
	s := stix.Sighting{ID: stix.NewID("indicator"), ReporterID: reporterID(author), ReporterName: name,
		Target: stix.AddrTarget(netip.MustParseAddr("192.0.2.1")), Exposure: stix.Exposure{OS: "linux"},
		Confidence: 90, Created: now.Add(-time.Second), ValidUntil: now.Add(ttl)}
	b, err := stix.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidator(t *testing.T) {
	now := time.Now().UTC()
	key, _ := GenerateEnclaveKey()
	outsiderKey, _ := GenerateEnclaveKey()
	pub := key.Public().(ed25519.PublicKey)
	member, outsider := newPeerID(t), newPeerID(t)
	cert, _ := Admit(key, "lab", member, now, time.Hour)
	outCert, _ := Admit(outsiderKey, "lab", outsider, now, time.Hour)
	good := sightingBundle(t, member, member.String(), now, time.Hour)
	env := func(enclave string, k Kind, c *Certificate, bundle []byte) []byte {
		var cb []byte
		if c != nil {
			cb = c.Marshal()
		}
		return (&Envelope{Version: 1, Enclave: enclave, Kind: k, Cert: cb, Bundle: bundle}).Encode()
	}
	tests := []struct {
		name      string
		from      peer.ID // forwarder; zero means the author
		author    peer.ID
		data      []byte
		want      pubsub.ValidationResult
		penalized bool // the author's trust falls
	}{
		{"member", "", member, env("lab", KindSighting, cert, good), pubsub.ValidationAccept, false},
		{"replay of the same report", "", member, env("lab", KindSighting, cert, good), pubsub.ValidationIgnore, false},
		{"outsider author", "", outsider, env("lab", KindSighting, outCert, sightingBundle(t, outsider, outsider.String(), now, time.Hour)), pubsub.ValidationReject, false},
		{"no certificate", "", outsider, env("lab", KindSighting, nil, sightingBundle(t, outsider, outsider.String(), now, time.Hour)), pubsub.ValidationReject, false},
		{"forwarded by an outsider", outsider, member, env("lab", KindSighting, cert, sightingBundle(t, member, member.String(), now, time.Hour)), pubsub.ValidationReject, false},
		{"garbage envelope", "", member, []byte("PE\x01\x01garbage"), pubsub.ValidationReject, true},
		{"other enclave", "", member, env("prod", KindSighting, cert, sightingBundle(t, member, member.String(), now, time.Hour)), pubsub.ValidationReject, true},
		{"bad bundle", "", member, env("lab", KindSighting, cert, []byte(`{"type":"bundle"}`)), pubsub.ValidationReject, true},
		{"speaks for another peer", "", member, env("lab", KindSighting, cert, sightingBundle(t, member, outsider.String(), now, time.Hour)), pubsub.ValidationReject, true},
		{"kind mismatch", "", member, env("lab", KindRevocation, cert, sightingBundle(t, member, member.String(), now, time.Hour)), pubsub.ValidationReject, true},
		{"ttl beyond max", "", member, env("lab", KindSighting, cert, sightingBundle(t, member, member.String(), now, 48*time.Hour)), pubsub.ValidationReject, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validatorNode(t, pub, now)
			n.verified[member] = now.Add(time.Hour)       // a direct neighbour that passed the exchange
			n.replay.Admit(mustDecode(t, good, now), now) // "replay" case: already seen
			if tt.name == "member" {
				n.replay = stix.NewReplayGuard(100)
			}
			from := tt.from
			if from == "" {
				from = tt.author
			}
			msg := &pubsub.Message{Message: &pb.Message{From: []byte(tt.author), Data: tt.data}, ReceivedFrom: from}
			before := n.trust.Score(tt.author.String())
			got := n.validate(t.Context(), from, msg)
			if got != tt.want {
				t.Fatalf("validate = %v, want %v (stats %+v)", got, tt.want, n.Stats())
			}
			if fell := n.trust.Score(tt.author.String()) < before; fell != tt.penalized {
				t.Errorf("trust fell: %v, want %v", fell, tt.penalized)
			}
			if got == pubsub.ValidationAccept {
				if _, ok := msg.ValidatorData.(*stix.Sighting); !ok {
					t.Errorf("ValidatorData = %T", msg.ValidatorData)
				}
			}
		})
	}
}

func mustDecode(t *testing.T, b []byte, now time.Time) stix.Message {
	t.Helper()
	m, err := stix.Decode(b, now, stix.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
