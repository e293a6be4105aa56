package stix

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDecodeBadBundles decodes every testdata/bad/NAME.json and expects an error wrapping
// ErrInvalid whose text contains the line in NAME.err.
func TestDecodeBadBundles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.json"))
	if err != nil || len(files) < 20 {
		t.Fatalf("bad cases: %d files, %v", len(files), err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".err")
			if err != nil {
				t.Fatalf("missing expected error: %v", err)
			}
			m, err := Decode(data, testNow.Add(10*time.Second), DecodeOptions{})
			if err == nil {
				t.Fatalf("decoded %+v, want an error containing %q", m, strings.TrimSpace(string(want)))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "stix: ") {
				t.Errorf("error %q lacks the stix: prefix", err)
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Errorf("error %q, want it to contain %q", err, strings.TrimSpace(string(want)))
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"golden", "bad"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	now := testNow.Add(10 * time.Second)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, now, DecodeOptions{})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// Whatever decodes must re-encode and decode to the same message.
		var again []byte
		switch x := m.(type) {
		case *Sighting:
			if !x.Target.Valid() || !x.ValidUntil.After(now) {
				t.Fatalf("accepted an unusable sighting %+v", x)
			}
			again, err = Encode(*x)
		case *Revocation:
			again, err = EncodeRevocation(*x)
		default:
			t.Fatalf("unexpected message type %T", m)
		}
		if err != nil {
			t.Fatalf("decoded message does not re-encode: %v (%+v)", err, m)
		}
		m2, err := Decode(again, now, DecodeOptions{})
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n%s", err, again)
		}
		if m2.ObjectID() != m.ObjectID() || !m2.Version().Equal(m.Version()) || !m2.Expiry().Equal(m.Expiry()) {
			t.Fatalf("round trip changed the message: %+v -> %+v", m, m2)
		}
	})
}
