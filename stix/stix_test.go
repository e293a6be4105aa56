package stix

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testNow is the fixed clock of every test; no test reads the wall clock.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testIndicator = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
	testReporter  = "identity--a463ffb3-1bd9-4d94-b02d-74e4f1658283"
)

func sample(t Target) Sighting {
	return Sighting{
		ID: testIndicator, ReporterID: testReporter, ReporterName: "12D3KooWProteusAgentA",
		Target: t, Action: ActionBlock, Confidence: 80, Count: 3,
		Exposure: Exposure{OS: "linux", Software: []Software{{Name: "openssh", Version: "9.6p1"}, {Name: "nginx", Version: "1.24.0"}},
			Services: []Service{{Port: 22, Protocol: "tcp", Name: "ssh"}, {Port: 443, Protocol: "tcp", Name: "https"}}},
		Created: testNow.Add(-time.Second), ValidUntil: testNow.Add(time.Hour),
		FirstSeen: testNow.Add(-time.Minute), LastSeen: testNow.Add(-2 * time.Second),
		Description: "ssh brute force",
	}
}

var targets = map[string]Target{
	"ipv4":   AddrTarget(netip.MustParseAddr("203.0.113.7")),
	"ipv6":   AddrTarget(netip.MustParseAddr("2001:db8::7")),
	"cidr4":  PrefixTarget(netip.MustParsePrefix("198.51.100.0/24")),
	"cidr6":  PrefixTarget(netip.MustParsePrefix("2001:db8:1::/48")),
	"port22": PortTarget(22),
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, tg := range targets {
		t.Run(name, func(t *testing.T) {
			in := sample(tg)
			data, err := Encode(in)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Decode(data, testNow, DecodeOptions{})
			if err != nil {
				t.Fatalf("decode: %v\n%s", err, data)
			}
			got, ok := m.(*Sighting)
			if !ok {
				t.Fatalf("decoded %T, want *Sighting", m)
			}
			want := in
			want.SightingID = got.SightingID
			want.Modified = want.Created
			want.ValidFrom = want.Created
			if !checkID(got.SightingID, "sighting") {
				t.Errorf("sighting id %q", got.SightingID)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("round trip\n got %+v\nwant %+v", *got, want)
			}
			if got.TTL() != time.Hour+time.Second {
				t.Errorf("ttl %s", got.TTL())
			}
		})
	}
}

func TestRevocationRoundTrip(t *testing.T) {
	s := sample(targets["cidr4"])
	r := s.Revoke(testNow, "false positive")
	data, err := EncodeRevocation(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(data, testNow.Add(time.Second), DecodeOptions{})
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	got, ok := m.(*Revocation)
	if !ok {
		t.Fatalf("decoded %T, want *Revocation", m)
	}
	r.ValidFrom = s.Created
	if !reflect.DeepEqual(*got, r) {
		t.Errorf("round trip\n got %+v\nwant %+v", *got, r)
	}
	if got.ObjectID() != s.ID || !got.Version().After(s.Version()) {
		t.Errorf("revocation does not supersede the sighting: %s %s", got.ObjectID(), got.Version())
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Sighting)
		want   string
	}{
		{"no id", func(s *Sighting) { s.ID = "" }, "indicator id"},
		{"uppercase uuid", func(s *Sighting) { s.ID = strings.ToUpper(s.ID) }, "indicator id"},
		{"bad reporter", func(s *Sighting) { s.ReporterID = "identity--x" }, "reporter id"},
		{"no target", func(s *Sighting) { s.Target = Target{} }, "target"},
		{"both targets", func(s *Sighting) { s.Target.Port = 22 }, "target"},
		{"action", func(s *Sighting) { s.Action = "nuke" }, "action"},
		{"confidence", func(s *Sighting) { s.Confidence = 101 }, "confidence"},
		{"ttl", func(s *Sighting) { s.ValidUntil = s.Created }, "valid_until"},
		{"seen order", func(s *Sighting) { s.LastSeen = s.FirstSeen.Add(-time.Second) }, "last_seen"},
		{"service port", func(s *Sighting) { s.Exposure.Services = []Service{{Port: 0}} }, "port"},
		{"protocol", func(s *Sighting) { s.Exposure.Services = []Service{{Port: 1, Protocol: "sctp"}} }, "protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sample(targets["ipv4"])
			tc.mutate(&s)
			_, err := Encode(s)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDecodeTimeBounds(t *testing.T) {
	data, err := Encode(sample(targets["ipv4"]))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		now  time.Time
		opts DecodeOptions
		want error
	}{
		{"fresh", testNow, DecodeOptions{}, nil},
		{"receiver clock behind", testNow.Add(-4 * time.Minute), DecodeOptions{}, nil},
		{"too old", testNow.Add(6 * time.Minute), DecodeOptions{}, ErrClockSkew},
		{"from the future", testNow.Add(-6 * time.Minute), DecodeOptions{}, ErrClockSkew},
		{"tight skew", testNow.Add(2 * time.Second), DecodeOptions{MaxSkew: time.Second}, ErrClockSkew},
		{"expired", testNow.Add(2 * time.Hour), DecodeOptions{MaxSkew: 3 * time.Hour}, ErrExpired},
		{"ttl above max", testNow, DecodeOptions{MaxTTL: 30 * time.Minute}, ErrTTLTooLong},
		{"too large", testNow, DecodeOptions{MaxSize: 100}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(data, tc.now, tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEncodeIsDeterministic(t *testing.T) {
	a, err := Encode(sample(targets["ipv6"]))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Encode(sample(targets["ipv6"]))
	if string(a) != string(b) {
		t.Fatal("two encodings of one sighting differ")
	}
}

func TestNewIDIsValid(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := NewID("indicator")
		if !checkID(id, "indicator") || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if checkID(NewID("identity"), "indicator") {
		t.Fatal("type not checked")
	}
}

// BenchmarkDecode measures strict decoding of one sighting bundle (the per-message cost
// of the enclave's validator): go test -run '^$' -bench 'Encode|Decode' -benchmem ./stix
func BenchmarkDecode(b *testing.B) {
	data, err := Encode(sample(targets["ipv4"]))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, testNow, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	s := sample(targets["ipv4"])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(s); err != nil {
			b.Fatal(err)
		}
	}
}
