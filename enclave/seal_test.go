package enclave

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/stix"
)

func TestSealKeyDerivation(t *testing.T) {
	k, _ := GenerateEnclaveKey()
	a, err := DeriveSealKey(k, "lab", 1)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := DeriveSealKey(k, "lab", 1)
	e2, _ := DeriveSealKey(k, "lab", 2)
	other, _ := DeriveSealKey(k, "lab2", 1)
	k2, _ := GenerateEnclaveKey()
	otherKey, _ := DeriveSealKey(k2, "lab", 1)
	if !bytes.Equal(a.Key, again.Key) || len(a.Key) != SealKeySize {
		t.Fatalf("derivation not deterministic: %x %x", a.Key, again.Key)
	}
	for name, b := range map[string]*SealKey{"epoch": e2, "enclave": other, "enclave key": otherKey} {
		if bytes.Equal(a.Key, b.Key) {
			t.Errorf("another %s derives the same key", name)
		}
	}
	if _, err := DeriveSealKey(k, "lab", 0); err == nil {
		t.Error("epoch 0 accepted")
	}
	// The key file round-trips and is checked.
	dir := t.TempDir()
	p := filepath.Join(dir, "seal.key")
	if err := os.WriteFile(p, a.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSealKey(p); err != nil || !bytes.Equal(got.Key, a.Key) || got.Epoch != 1 || got.Enclave != "lab" {
		t.Fatalf("read back %+v, %v", got, err)
	}
	for name, text := range map[string]string{
		"short key": `{"enclave":"lab","epoch":1,"key":"AAAA"}`,
		"no epoch":  `{"enclave":"lab","key":"` + strings.Repeat("A", 43) + `="}`,
		"not json":  "key",
	} {
		_ = os.WriteFile(p, []byte(text), 0o600)
		if _, err := ReadSealKey(p); !errors.Is(err, ErrSeal) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	k, _ := GenerateEnclaveKey()
	e1, _ := DeriveSealKey(k, "lab", 1)
	e2, _ := DeriveSealKey(k, "lab", 2)
	both, err := newSealer("lab", []*SealKey{e1, e2})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := newSealer("lab", []*SealKey{e1})
	author, other := []byte(newPeerID(t)), []byte(newPeerID(t))
	bundle := []byte(`{"type":"bundle","target":"198.51.100.77"}`)
	sealed, err := both.seal(author, KindSighting, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("198.51.100.77")) {
		t.Fatal("the target is readable in the sealed payload")
	}
	if again, _ := both.seal(author, KindSighting, bundle); bytes.Equal(again, sealed) {
		t.Error("two seals of the same payload are equal (nonce reused)")
	}
	kind, got, err := both.open(author, sealed)
	if err != nil || kind != KindSighting || !bytes.Equal(got, bundle) {
		t.Fatalf("open: %v %q %v", kind, got, err)
	}
	// The newest epoch seals; a node with only the old key cannot read it.
	if _, _, err := old.open(author, sealed); !errors.Is(err, errUnknownEpoch) {
		t.Errorf("old-epoch node: %v", err)
	}
	// An old-epoch payload still opens where its key is held (during a rotation).
	olds, _ := old.seal(author, KindRevocation, bundle)
	if kind, _, err := both.open(author, olds); err != nil || kind != KindRevocation {
		t.Errorf("old epoch at a node holding both: %v %v", kind, err)
	}
	// Bound to the author and the enclave; any flipped bit fails.
	if _, _, err := both.open(other, sealed); !errors.Is(err, ErrSeal) || errors.Is(err, errUnknownEpoch) {
		t.Errorf("other author: %v", err)
	}
	lab2key, _ := DeriveSealKey(k, "lab", 2)
	lab2key.Enclave = "lab2"
	lab2, _ := newSealer("lab2", []*SealKey{lab2key}) // same key bytes, another enclave name
	if _, _, err := lab2.open(author, sealed); !errors.Is(err, ErrSeal) {
		t.Errorf("other enclave: %v", err)
	}
	for i := 4; i < len(sealed); i += 7 {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 0x40
		if _, _, err := both.open(author, bad); !errors.Is(err, ErrSeal) {
			t.Fatalf("bit flipped at %d opened", i)
		}
	}
	for _, short := range [][]byte{nil, sealed[:3], sealed[:20]} {
		if _, _, err := both.open(author, short); !errors.Is(err, ErrSeal) {
			t.Errorf("%d bytes: %v", len(short), err)
		}
	}
	if _, err := newSealer("lab", []*SealKey{e1, e1}); err == nil {
		t.Error("two keys for one epoch accepted")
	}
	if _, err := newSealer("other", []*SealKey{e1}); err == nil {
		t.Error("a key for another enclave accepted")
	}
}

// FuzzUnseal: whatever bytes arrive as a sealed payload, open never panics and accepts only
// what seal made.
func FuzzUnseal(f *testing.F) {
	k, _ := GenerateEnclaveKey()
	e1, _ := DeriveSealKey(k, "lab", 1)
	s, _ := newSealer("lab", []*SealKey{e1})
	author := []byte("author")
	good, _ := s.seal(author, KindSighting, []byte("bundle"))
	f.Add(good)
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, bundle, err := s.open(author, data)
		if err == nil && (bytes.Equal(data, good) != (kind == KindSighting && string(bundle) == "bundle")) {
			t.Fatalf("opened forged payload: %v %q", kind, bundle)
		}
	})
}

// With seal keys, sightings reach the members that hold the key, and a member that sits in
// the mesh without it (an admitted peer left out of the key, speaking GossipSub itself)
// receives every message and reads none: no target in any payload, and a payload that is
// sealed, not a plain envelope. A member that holds only an older epoch's key reads nothing
// newer either. A plain (unsealed) sighting in a sealed enclave is ignored, not acted on.
func TestSealedEnclave(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig()
	start := func(epochs ...uint32) *testNode {
		dir := t.TempDir()
		c := cfg
		for _, ep := range epochs {
			k, err := DeriveSealKey(e.key, e.name, ep)
			if err != nil {
				t.Fatal(err)
			}
			name := "seal-" + string(rune('0'+ep)) + ".key"
			if err := os.WriteFile(filepath.Join(dir, name), k.Marshal(), 0o600); err != nil {
				t.Fatal(err)
			}
			c.SealKeys = append(c.SealKeys, name)
		}
		return e.start(dir, nil, c)
	}
	a, b, old := start(1, 2), start(2), start(1)
	nodes := []*testNode{a, b, old}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close(t)
		}
	})
	connectAll(t, nodes)
	r := e.rawPeer(true)
	r.join(a)

	const target = "198.51.100.77"
	s := publish(t, a, target, 90)
	eventually(t, "the key holder decides on the sealed sighting", func() bool { _, ok := decisionFor(b, s.ID); return ok })
	eventually(t, "the raw member is sent the message", func() bool { return len(r.payloads()) > 0 })
	for _, data := range r.payloads() {
		if bytes.Contains(data, []byte(target)) || bytes.Contains(data, []byte(s.ID)) {
			t.Fatalf("a payload sent to the member without the key shows the sighting: %q", data)
		}
		env, err := DecodeEnvelope(data, cfg.MaxMessageBytes)
		if err != nil || env.Kind != KindSealed {
			t.Fatalf("payload is not a sealed envelope: %v %v", env, err)
		}
	}
	// The epoch-1 member got it too (same mesh) and could not read it.
	eventually(t, "the old-epoch member counts it unreadable", func() bool { return old.Stats().Unreadable > 0 })
	if _, ok := decisionFor(old, s.ID); ok {
		t.Error("the old-epoch member decided on a newer epoch's sighting")
	}

	// A plain sighting from an admitted member is ignored in a sealed enclave.
	before := b.Stats().Unreadable
	now := time.Now().UTC()
	bundle := bundleFor(t, r.id, stix.NewID("indicator"), "198.51.100.88", now, now, time.Hour)
	r.join(b)
	if err := r.send(b, r.message(r.key, r.envelope(KindSighting, bundle))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the plain sighting is counted unreadable", func() bool { return b.Stats().Unreadable > before })
	for _, d := range b.Decisions("") {
		if d.Target == "198.51.100.88" {
			t.Errorf("acted on a plain sighting in a sealed enclave: %+v", d)
		}
	}
	if b.trust.Score(r.id.String()) < 0.5 {
		t.Errorf("a plain payload cost its author trust (it is a configuration fault, not a lie)")
	}
}
