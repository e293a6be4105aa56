package enclave

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var testTrust = TrustParams{Neutral: 0.5, InvalidWeight: 3, HalfLife: time.Hour}

// The beta reputation: (r + 2a) / (r + s + 2) with a = 0.5.
func TestTrustEvents(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		name   string
		events func(tr *Trust) float64
		want   float64
	}{
		{"unknown is neutral", func(tr *Trust) float64 { return tr.Score("p") }, 0.5},
		{"confirmed", func(tr *Trust) float64 { return tr.Confirmed("p") }, 2.0 / 3},
		{"three times confirmed", func(tr *Trust) float64 { tr.Confirmed("p"); tr.Confirmed("p"); return tr.Confirmed("p") }, 0.8},
		{"contradicted", func(tr *Trust) float64 { return tr.Contradicted("p") }, 1.0 / 3},
		{"invalid is three contradictions", func(tr *Trust) float64 { return tr.Invalid("p") }, 0.2},
		{"confirmed then contradicted", func(tr *Trust) float64 { tr.Confirmed("p"); return tr.Contradicted("p") }, 0.5},
		{"never leaves (0,1)", func(tr *Trust) float64 {
			for i := 0; i < 100; i++ {
				tr.Invalid("p")
			}
			return math.Round(tr.Score("p")*1000) / 1000
		}, 0.003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := OpenTrust("", testTrust, clock)
			if got := tt.events(tr); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// Established needs the score and at least one confirmation; a pre-trusted peer starts
// there and falls like anyone when contradicted.
func TestTrustEstablishedAndPretrusted(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := testTrust
	p.Prior = map[string]float64{"boss": 4}
	tr, _ := OpenTrust("", p, func() time.Time { return now })
	if tr.Established("p", 0.8) {
		t.Error("unknown peer established")
	}
	tr.Confirmed("p")
	tr.Confirmed("p")
	if tr.Established("p", 0.8) {
		t.Errorf("two confirmations (%v) established at 0.8", tr.Score("p"))
	}
	tr.Confirmed("p")
	if !tr.Established("p", 0.8) {
		t.Errorf("three confirmations (%v) not established", tr.Score("p"))
	}
	if got := tr.Score("boss"); math.Abs(got-5.0/6) > 1e-9 || !tr.Established("boss", 0.8) {
		t.Errorf("pre-trusted %v", got)
	}
	tr.Contradicted("boss")
	if tr.Established("boss", 0.8) {
		t.Errorf("contradicted pre-trusted peer still established (%v)", tr.Score("boss"))
	}
	now = now.Add(100 * time.Hour) // the contradiction fades, the prior does not
	if !tr.Established("boss", 0.8) {
		t.Errorf("prior faded: %v", tr.Score("boss"))
	}
}

func TestTrustDecaysTowardNeutral(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr, _ := OpenTrust("", testTrust, func() time.Time { return now })
	tr.Invalid("liar")     // s = 3: 0.2
	tr.Confirmed("honest") // r = 1: 2/3
	now = now.Add(time.Hour)
	if got := tr.Score("liar"); math.Abs(got-1.0/3.5) > 1e-9 { // s = 1.5
		t.Errorf("liar after a half-life: %v, want %v", got, 1/3.5)
	}
	if got := tr.Score("honest"); math.Abs(got-1.5/2.5) > 1e-9 { // r = 0.5
		t.Errorf("honest after a half-life: %v, want 0.6", got)
	}
}

func TestTrustPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), TrustFile)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tr, err := OpenTrust(path, testTrust, clock)
	if err != nil {
		t.Fatal(err)
	}
	tr.Contradicted("a")
	tr.Confirmed("b")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("trust file: %v %v", fi, err)
	}
	back, err := OpenTrust(path, testTrust, clock)
	if err != nil {
		t.Fatal(err)
	}
	if back.Score("a") != tr.Score("a") || back.Score("b") != tr.Score("b") {
		t.Errorf("reloaded %v/%v, want %v/%v", back.Score("a"), back.Score("b"), tr.Score("a"), tr.Score("b"))
	}
	if rows := back.Snapshot(); len(rows) != 2 || rows[0].Contradicted != 1 || rows[1].Confirmed != 1 {
		t.Errorf("rows %+v", rows)
	}
	// A version 1 table (scores raised by peer agreement) is dropped, not trusted.
	v1 := filepath.Join(t.TempDir(), "v1")
	_ = os.WriteFile(v1, []byte(`{"version":1,"peers":[{"peer":"liar","score":1}]}`), 0o600)
	if old, err := OpenTrust(v1, testTrust, clock); err != nil || old.Score("liar") != 0.5 {
		t.Errorf("version 1 table: %v, liar %v", err, old.Score("liar"))
	}
	for name, body := range map[string]string{"garbage": "{", "version": `{"version":3}`,
		"negative": `{"version":2,"peers":[{"peer":"a","positive":-1}]}`} {
		p := filepath.Join(t.TempDir(), name)
		_ = os.WriteFile(p, []byte(body), 0o600)
		if _, err := OpenTrust(p, testTrust, clock); err == nil {
			t.Errorf("%s: accepted a bad trust file", name)
		}
	}
}

func TestCombineAndDecide(t *testing.T) {
	tests := []struct {
		name string
		ev   []Evidence
		want float64
	}{
		{"none", nil, 0},
		{"one neutral", []Evidence{{"a", 0.5, 1}}, 0.5},
		{"two neutral", []Evidence{{"a", 0.5, 1}, {"b", 0.5, 1}}, 0.75},
		{"repeats do not add", []Evidence{{"a", 0.5, 1}, {"a", 0.5, 1}, {"a", 0.4, 1}}, 0.5},
		{"confidence weighs", []Evidence{{"a", 1, 0.3}}, 0.3},
		{"liar adds little", []Evidence{{"a", 0.5, 0.9}, {"liar", 0.05, 1}}, 1 - 0.55*0.95},
		{"clamped", []Evidence{{"a", 2, 2}}, 1},
	}
	for _, tt := range tests {
		if got := Combine(tt.ev); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: Combine = %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct {
		e    float64
		want Decision
	}{{0.9, Act}, {0.7, Act}, {0.69, Defer}, {0.31, Defer}, {0.3, Ignore}, {0, Ignore}} {
		if got := Decide(tt.e, 0.7, 0.3); got != tt.want {
			t.Errorf("Decide(%v) = %s, want %s", tt.e, got, tt.want)
		}
	}
}

func BenchmarkCombine(b *testing.B) {
	ev := []Evidence{{"a", 0.5, 0.9}, {"b", 0.7, 0.8}, {"c", 0.2, 1}}
	for b.Loop() {
		Combine(ev)
	}
}
