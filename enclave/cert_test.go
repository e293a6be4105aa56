package enclave

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func newPeerID(t testing.TB) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := PeerIDOf(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCertificateVerify(t *testing.T) {
	key, _ := GenerateEnclaveKey()
	other, _ := GenerateEnclaveKey()
	pub := key.Public().(ed25519.PublicKey)
	member, stranger := newPeerID(t), newPeerID(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	good, err := Admit(key, "lab", member, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := Admit(other, "lab", member, now, time.Hour)
	tampered := *good
	tampered.Expires = tampered.Expires.Add(24 * time.Hour)
	tests := []struct {
		name    string
		c       *Certificate
		enclave string
		peer    peer.ID
		at      time.Time
		want    string
	}{
		{"valid", good, "lab", member, now.Add(time.Minute), ""},
		{"valid within skew before issue", good, "lab", member, now.Add(-time.Minute), ""},
		{"not yet valid", good, "lab", member, now.Add(-time.Hour), "not valid before"},
		{"expired", good, "lab", member, now.Add(2 * time.Hour), "expired"},
		{"other enclave", good, "prod", member, now, "for enclave"},
		{"other peer", good, "lab", stranger, now, "names peer"},
		{"signed by another key", forged, "lab", member, now, "signature"},
		{"tampered expiry", &tampered, "lab", member, now, "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Verify(pub, tt.enclave, tt.peer, tt.at, 5*time.Minute)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCertificate) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrCertificate containing %q", err, tt.want)
			}
		})
	}
	back, err := DecodeCertificate(good.Marshal())
	if err != nil || back.Verify(pub, "lab", member, now, 0) != nil {
		t.Fatalf("round trip: %v", err)
	}
}

func TestDecodeCertificateStrict(t *testing.T) {
	tests := map[string]string{
		"unknown field": `{"version":1,"enclave":"lab","peer":"x","issued":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","signature":"` + strings.Repeat("A", 86) + `==","extra":1}`,
		"trailing":      `{"version":1,"signature":"` + strings.Repeat("A", 86) + `=="} {}`,
		"short sig":     `{"version":1,"signature":"AAAA"}`,
		"too large":     `{"enclave":"` + strings.Repeat("a", MaxCertificateSize) + `"}`,
		"not json":      `certificate`,
	}
	for name, in := range tests {
		if _, err := DecodeCertificate([]byte(in)); !errors.Is(err, ErrCertificate) {
			t.Errorf("%s: got %v, want ErrCertificate", name, err)
		}
	}
}

func FuzzDecodeCertificate(f *testing.F) {
	key, _ := GenerateEnclaveKey()
	c, _ := Admit(key, "lab", newPeerID(f), time.Now(), time.Hour)
	f.Add(c.Marshal())
	f.Add([]byte(`{"version":1}`))
	pub := key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCertificate(data)
		if err != nil {
			if !errors.Is(err, ErrCertificate) {
				t.Fatalf("error does not wrap ErrCertificate: %v", err)
			}
			return
		}
		id, err := peer.Decode(c.Peer)
		if err != nil {
			return
		}
		_ = c.Verify(pub, c.Enclave, id, c.Issued, time.Minute) // must not panic
	})
}

func TestPublicKeyString(t *testing.T) {
	key, _ := GenerateEnclaveKey()
	pub := key.Public().(ed25519.PublicKey)
	back, err := ParsePublicKey(PublicKeyString(pub))
	if err != nil || !back.Equal(pub) {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "ed25519:", "rsa:AAAA", "ed25519:AAAA", "ed25519:!!"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
