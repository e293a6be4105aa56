package enclave

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var testTrust = TrustParams{Neutral: 0.5, Reward: 0.2, Penalty: 0.3, InvalidPenalty: 0.6, HalfLife: time.Hour}

func TestTrustEvents(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		name   string
		events func(tr *Trust) float64
		want   float64
	}{
		{"unknown is neutral", func(tr *Trust) float64 { return tr.Score("p") }, 0.5},
		{"corroborated", func(tr *Trust) float64 { return tr.Corroborated("p") }, 0.6},
		{"twice corroborated", func(tr *Trust) float64 { tr.Corroborated("p"); return tr.Corroborated("p") }, 0.68},
		{"unconfirmed", func(tr *Trust) float64 { return tr.Unconfirmed("p") }, 0.35},
		{"invalid is sharper", func(tr *Trust) float64 { return tr.Invalid("p") }, 0.2},
		{"never leaves [0,1]", func(tr *Trust) float64 {
			for i := 0; i < 100; i++ {
				tr.Invalid("p")
			}
			return tr.Score("p")
		}, 0},
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

func TestTrustDecaysTowardNeutral(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr, _ := OpenTrust("", testTrust, func() time.Time { return now })
	tr.Invalid("liar")        // 0.2
	tr.Corroborated("honest") // 0.6
	now = now.Add(time.Hour)  // one half-life
	if got := tr.Score("liar"); math.Abs(got-0.35) > 1e-9 {
		t.Errorf("liar after a half-life: %v, want 0.35", got)
	}
	if got := tr.Score("honest"); math.Abs(got-0.55) > 1e-9 {
		t.Errorf("honest after a half-life: %v, want 0.55", got)
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
	tr.Unconfirmed("a")
	tr.Corroborated("b")
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
	if rows := back.Snapshot(); len(rows) != 2 || rows[0].Unconfirmed != 1 || rows[1].Corroborated != 1 {
		t.Errorf("rows %+v", rows)
	}
	for name, body := range map[string]string{"garbage": "{", "version": `{"version":2}`, "range": `{"version":1,"peers":[{"peer":"a","score":2}]}`} {
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
