package stix

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
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

// TestDecodeAcceptsContextObjects: a bundle that also carries observed-data (referenced
// from the sighting) and a course-of-action, as other STIX producers may add, still
// decodes, and is itself schema-valid, so the tolerance matches real STIX.
func TestDecodeAcceptsContextObjects(t *testing.T) {
	data, err := Encode(sample(targets["ipv4"]))
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	const od = "observed-data--6b1a4b3c-2d5e-4f60-8a7b-9c0d1e2f3a4b"
	objs := b["objects"].([]any)
	for _, o := range objs {
		if m := o.(map[string]any); m["type"] == "sighting" {
			m["observed_data_refs"] = []any{od}
		}
	}
	objs = append(objs,
		map[string]any{"type": "observed-data", "spec_version": "2.1", "id": od,
			"created": "2026-03-01T11:59:59.000Z", "modified": "2026-03-01T11:59:59.000Z",
			"first_observed": "2026-03-01T11:59:00.000Z", "last_observed": "2026-03-01T11:59:58.000Z",
			"number_observed": 3, "object_refs": []any{"ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"}},
		map[string]any{"type": "course-of-action", "spec_version": "2.1",
			"id":      "course-of-action--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
			"created": "2026-03-01T11:59:59.000Z", "modified": "2026-03-01T11:59:59.000Z",
			"name": "block 203.0.113.7 for an hour"})
	b["objects"] = objs
	data, err = json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	validateSTIX(t, data)
	m, err := Decode(data, testNow, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := m.(*Sighting); !ok || s.Target != targets["ipv4"] {
		t.Fatalf("decoded %+v", m)
	}
	// A reference to observed-data that is not in the bundle is refused.
	bad := strings.Replace(string(data), od+`"]`, `observed-data--00000000-0000-4000-8000-000000000000"]`, 1)
	if _, err := Decode([]byte(bad), testNow, DecodeOptions{}); err == nil || !strings.Contains(err.Error(), "observed_data_refs") {
		t.Fatalf("dangling observed_data_refs: %v", err)
	}
}

// TestStixTimestamp pins the timestamp form Decode accepts to the regular expression it
// replaced (the STIX schema's UTC timestamp pattern).
func TestStixTimestamp(t *testing.T) {
	re := regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$`)
	for _, v := range []string{"2026-03-01T12:00:00Z", "2026-03-01T12:00:00.000Z", "2026-03-01T12:00:00.123456789Z",
		"2026-03-01T12:00:00.1234567890Z", "2026-03-01T12:00:00.Z", "2026-13-01T12:00:00Z", "2026-00-01T12:00:00Z",
		"2026-03-32T12:00:00Z", "2026-03-00T12:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T12:60:00Z",
		"2026-03-01T12:00:60Z", "2026-03-01 12:00:00Z", "2026-03-01T12:00:00+00:00", "2026-03-01T12:00:00z",
		"2026-3-01T12:00:00Z", "x026-03-01T12:00:00Z", "", "2026-03-01T12:00:00.12a4Z", "2026-03-01T12:00:00,1Z"} {
		if got, want := stixTimestamp(v), re.MatchString(v); got != want {
			t.Errorf("stixTimestamp(%q) = %v, the pattern says %v", v, got, want)
		}
	}
}

// FuzzStixTimestamp: the hand-written check agrees with the pattern it replaced.
func FuzzStixTimestamp(f *testing.F) {
	re := regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$`)
	f.Add("2026-03-01T12:00:00.000Z")
	f.Add("2026-03-01T12:00:00Z")
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := stixTimestamp(v), re.MatchString(v); got != want {
			t.Fatalf("stixTimestamp(%q) = %v, the pattern says %v", v, got, want)
		}
	})
}
