package enclave

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestMemberRevocationsSignAndVerify(t *testing.T) {
	key, _ := GenerateEnclaveKey()
	pub := key.Public().(ed25519.PublicKey)
	a, b := newPeerID(t), newPeerID(t)
	l1, err := RevokeMembers(key, "lab", nil, []peer.ID{a}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l2, err := RevokeMembers(key, "lab", l1, []peer.ID{b, a}, time.Now())
	if err != nil || l2.Serial != 2 || len(l2.Peers) != 2 {
		t.Fatalf("second list %+v %v", l2, err)
	}
	back, err := DecodeMemberRevocations(l2.Marshal())
	if err != nil || back.Verify(pub, "lab") != nil {
		t.Fatalf("round trip: %v", err)
	}
	tampered := *back
	tampered.Peers = tampered.Peers[:1]
	if tampered.Verify(pub, "lab") == nil {
		t.Error("list with a peer removed still verifies")
	}
	tampered = *back
	tampered.Serial = 99
	if tampered.Verify(pub, "lab") == nil {
		t.Error("list with a raised serial still verifies")
	}
	if back.Verify(pub, "prod") == nil {
		t.Error("verifies for another enclave")
	}
	if _, err := RevokeMembers(key, "prod", l2, nil, time.Now()); err == nil {
		t.Error("extended another enclave's list")
	}
	for _, bad := range []string{`{`, `{"version":1,"peers":["nope"],"signature":"` + string(make([]byte, 0)) + `"}`, `{"version":1,"bogus":1}`} {
		if _, err := DecodeMemberRevocations([]byte(bad)); err == nil {
			t.Errorf("decoded %s", bad)
		}
	}
}

func FuzzDecodeMemberRevocations(f *testing.F) {
	key, _ := GenerateEnclaveKey()
	l, _ := RevokeMembers(key, "lab", nil, nil, time.Unix(1700000000, 0))
	f.Add(l.Marshal())
	f.Add([]byte(`{"version":1,"enclave":"lab","serial":1,"peers":[],"signature":null}`))
	pub := key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := DecodeMemberRevocations(data)
		if err != nil {
			return
		}
		if len(l.Peers) > MaxRevokedMembers {
			t.Fatalf("%d peers accepted", len(l.Peers))
		}
		_ = l.Verify(pub, "lab")
	})
}
