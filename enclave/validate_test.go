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
	tr, _ := OpenTrust("", testTrust, nil)
	n := &Node{cfg: cfg, enclave: pub, self: newPeerID(t), trust: tr, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	n.initState()
	return n
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

func bundleFor(t testing.TB, author peer.ID, id, target string, created, modified time.Time, ttl time.Duration) []byte {
	t.Helper()
	tg, err := ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	s := stix.Sighting{ID: id, ReporterID: reporterID(author), ReporterName: author.String(), Target: tg,
		Exposure: stix.Exposure{OS: "linux"}, Confidence: 90, Created: created, Modified: modified, ValidUntil: created.Add(ttl)}
	b, err := stix.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What no honest member sends is refused as invalid: reserved targets in any spelling, and
// a new version of an indicator that names another target. A member over its budget is
// ignored (and penalized once per second, not once per message).
func TestValidatorRefusesHarmAndRebinding(t *testing.T) {
	now := time.Now().UTC()
	key, _ := GenerateEnclaveKey()
	pub := key.Public().(ed25519.PublicKey)
	member := newPeerID(t)
	cert, _ := Admit(key, "lab", member, now, time.Hour)
	send := func(n *Node, bundle []byte) pubsub.ValidationResult {
		data := (&Envelope{Version: 1, Enclave: "lab", Kind: KindSighting, Cert: cert.Marshal(), Bundle: bundle}).Encode()
		return n.validate(t.Context(), member, &pubsub.Message{Message: &pb.Message{From: []byte(member), Data: data}, ReceivedFrom: member})
	}
	created := now.Add(-time.Second)
	for _, target := range []string{"127.0.0.1", "::1", "169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0/0", "::/0",
		"::ffff:127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::/48", "64:ff9b:1::a00:1", "127.0.0.0/4"} {
		n := validatorNode(t, pub, now)
		n.verified[member] = now.Add(time.Hour)
		if got := send(n, bundleFor(t, member, stix.NewID("indicator"), target, created, created, time.Hour)); got != pubsub.ValidationReject || n.trust.Score(member.String()) >= 0.5 {
			t.Errorf("%s: %v, trust %v", target, got, n.trust.Score(member.String()))
		}
	}

	n := validatorNode(t, pub, now)
	n.verified[member] = now.Add(time.Hour)
	n.budget = newBudget(n.cfg.Limits.Rate, 4) // three versions at one instant, within budget
	id := stix.NewID("indicator")
	if got := send(n, bundleFor(t, member, id, "192.0.2.1", created, created, time.Hour)); got != pubsub.ValidationAccept {
		t.Fatalf("original: %v", got)
	}
	if got := send(n, bundleFor(t, member, id, "192.0.2.1", created, created.Add(time.Millisecond), time.Hour)); got != pubsub.ValidationAccept {
		t.Errorf("new version, same target: %v", got)
	}
	if got := send(n, bundleFor(t, member, id, "198.51.100.1", created, created.Add(2*time.Millisecond), time.Hour)); got != pubsub.ValidationReject {
		t.Errorf("new version, new target: %v", got)
	}
	if n.trust.Score(member.String()) >= 0.5 {
		t.Errorf("re-targeting not penalized")
	}

	n = validatorNode(t, pub, now)
	n.verified[member] = now.Add(time.Hour)
	accepted, limited := 0, 0
	for i := 0; i < 200; i++ {
		switch send(n, bundleFor(t, member, stix.NewID("indicator"), "192.0.2.7", created, created, time.Hour)) {
		case pubsub.ValidationAccept:
			accepted++
		case pubsub.ValidationIgnore:
			limited++
		}
	}
	if accepted != n.cfg.Limits.Burst || limited != 200-accepted || n.Stats().Limited != uint64(limited) {
		t.Errorf("accepted %d, limited %d (burst %d), stats %+v", accepted, limited, n.cfg.Limits.Burst, n.Stats())
	}
	if got := n.trust.Snapshot(); len(got) != 1 || got[0].Invalid != 1 {
		t.Errorf("budget penalty not once per second: %+v", got)
	}
}
