package game

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// Games used across the tests of this package.
var (
	matchingPennies = Bimatrix{
		A: [][]float64{{1, -1}, {-1, 1}},
		D: [][]float64{{-1, 1}, {1, -1}},
	}
	// Prisoner's dilemma: strategy 0 cooperates, 1 defects; (defect, defect) is the only equilibrium.
	prisoners = Bimatrix{
		A: [][]float64{{3, 0}, {5, 1}},
		D: [][]float64{{3, 5}, {0, 1}},
	}
	// Battle of the sexes: pure (0,0), (1,1) and the mixed ((2/3,1/3), (1/3,2/3)).
	battle = Bimatrix{
		A: [][]float64{{2, 0}, {0, 1}},
		D: [][]float64{{1, 0}, {0, 2}},
	}
	rps = Bimatrix{
		A: [][]float64{{0, -1, 1}, {1, 0, -1}, {-1, 1, 0}},
		D: [][]float64{{0, 1, -1}, {-1, 0, 1}, {1, -1, 0}},
	}
	// Hand-solved 2×2 without a pure equilibrium (every pure profile has a profitable
	// deviation). The defender is indifferent when 2x + 3(1−x) = 4x + 1(1−x), so x = 1/2; the
	// attacker when 3y = y + 2(1−y), so y = 1/2. Payoffs: attacker 3/2, defender 5/2.
	handSolved = Bimatrix{
		A: [][]float64{{3, 0}, {1, 2}},
		D: [][]float64{{2, 4}, {3, 1}},
	}
)

func TestNashEquilibria(t *testing.T) {
	tests := []struct {
		name string
		g    Bimatrix
		want []Equilibrium
	}{
		{"matching pennies", matchingPennies, []Equilibrium{{[]float64{.5, .5}, []float64{.5, .5}, 0, 0}}},
		{"prisoner's dilemma", prisoners, []Equilibrium{{[]float64{0, 1}, []float64{0, 1}, 1, 1}}},
		{"battle of the sexes", battle, []Equilibrium{
			{[]float64{1, 0}, []float64{1, 0}, 2, 1},
			{[]float64{0, 1}, []float64{0, 1}, 1, 2},
			{[]float64{2. / 3, 1. / 3}, []float64{1. / 3, 2. / 3}, 2. / 3, 2. / 3},
		}},
		{"rock paper scissors", rps, []Equilibrium{{Uniform(3), Uniform(3), 0, 0}}},
		{"hand-solved 2x2", handSolved, []Equilibrium{{[]float64{.5, .5}, []float64{.5, .5}, 1.5, 2.5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NashEquilibria(tc.g)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d equilibria %v, want %d %v", len(got), got, len(tc.want), tc.want)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(got, func(e Equilibrium) bool { return sameEq(e, w, 1e-12) }) {
					t.Errorf("missing %v in %v", w, got)
				}
			}
			for _, e := range got {
				if !IsNash(tc.g, e.X, e.Y, 1e-12) {
					t.Errorf("returned %v is not a Nash equilibrium", e)
				}
			}
		})
	}
}

func sameEq(a, b Equilibrium, tol float64) bool {
	return maxDiff(a.X, b.X) <= tol && maxDiff(a.Y, b.Y) <= tol &&
		math.Abs(a.AttackerPayoff-b.AttackerPayoff) <= tol && math.Abs(a.DefenderPayoff-b.DefenderPayoff) <= tol
}

// A degenerate game (von Stengel's example): after attacker row 0 the defender is indifferent
// between both columns, so the equilibria include the segment x = (1,0,0), y = (t, 1−t) for
// t ∈ [2/3, 1]. The extreme equilibria are its two end points and ((0,1/3,2/3), (1/3,2/3)).
func TestNashDegenerate(t *testing.T) {
	g := Bimatrix{
		A: [][]float64{{3, 3}, {2, 5}, {0, 6}},
		D: [][]float64{{3, 3}, {2, 6}, {3, 1}},
	}
	got, err := NashEquilibria(g)
	if err != nil {
		t.Fatal(err)
	}
	want := []Equilibrium{
		{[]float64{1, 0, 0}, []float64{1, 0}, 3, 3},
		{[]float64{1, 0, 0}, []float64{2. / 3, 1. / 3}, 3, 3},
		{[]float64{0, 1. / 3, 2. / 3}, []float64{1. / 3, 2. / 3}, 4, 8. / 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(e Equilibrium) bool { return sameEq(e, w, 1e-12) }) {
			t.Errorf("missing %v in %v", w, got)
		}
	}
	// The point in the middle of the segment is an equilibrium too, and IsNash agrees.
	if !IsNash(g, []float64{1, 0, 0}, []float64{5. / 6, 1. / 6}, 1e-12) {
		t.Error("middle of the segment should be Nash")
	}
}

// Duplicated strategies make every indifference system over them singular; those supports are
// skipped and the pure equilibria remain.
func TestNashDuplicateStrategies(t *testing.T) {
	g := Bimatrix{
		A: [][]float64{{1, 0}, {1, 0}},
		D: [][]float64{{1, 0}, {1, 0}},
	}
	got, err := NashEquilibria(g)
	if err != nil {
		t.Fatal(err)
	}
	want := []Equilibrium{{[]float64{1, 0}, []float64{1, 0}, 1, 1}, {[]float64{0, 1}, []float64{1, 0}, 1, 1}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if !sameEq(got[i], want[i], 0) {
			t.Errorf("equilibrium %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestNashErrors(t *testing.T) {
	if _, err := NashEquilibria(Bimatrix{}); err == nil {
		t.Error("empty game accepted")
	}
	big := make([][]float64, 20)
	for i := range big {
		big[i] = make([]float64, 20)
	}
	if _, err := NashEquilibria(Bimatrix{A: big, D: big}); !errors.Is(err, ErrTooLarge) {
		t.Error("20×20 game accepted beyond MaxSupportPairs")
	}
}

func TestIsNash(t *testing.T) {
	tests := []struct {
		name string
		g    Bimatrix
		x, y []float64
		want bool
	}{
		{"pennies mixed", matchingPennies, []float64{.5, .5}, []float64{.5, .5}, true},
		{"pennies pure", matchingPennies, []float64{1, 0}, []float64{1, 0}, false},
		{"pd defect", prisoners, []float64{0, 1}, []float64{0, 1}, true},
		{"pd cooperate", prisoners, []float64{1, 0}, []float64{1, 0}, false},
		{"wrong length", prisoners, []float64{1}, []float64{0, 1}, false},
		{"not a distribution", prisoners, []float64{0, 2}, []float64{0, 1}, false},
		{"negative", prisoners, []float64{-1, 2}, []float64{0, 1}, false},
		{"NaN", prisoners, []float64{math.NaN(), 1}, []float64{0, 1}, false},
		{"invalid game", Bimatrix{}, nil, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsNash(tc.g, tc.x, tc.y, 1e-9); got != tc.want {
				t.Errorf("IsNash = %v, want %v", got, tc.want)
			}
		})
	}
}

// Every equilibrium of random nondegenerate games passes IsNash, and their number is odd.
func TestNashRandomOdd(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		g := randomGame(seed, 4, 4)
		eqs, err := NashEquilibria(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(eqs)%2 != 1 {
			t.Errorf("seed %d: %d equilibria, a nondegenerate game has an odd number", seed, len(eqs))
		}
		for _, e := range eqs {
			if !IsNash(g, e.X, e.Y, 1e-9) {
				t.Errorf("seed %d: %v is not Nash", seed, e)
			}
		}
	}
}

func BenchmarkNash4x4(b *testing.B) {
	g := randomGame(7, 4, 4)
	for b.Loop() {
		if _, err := NashEquilibria(g); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNash8x8(b *testing.B) {
	g := randomGame(7, 8, 8)
	for b.Loop() {
		if _, err := NashEquilibria(g); err != nil {
			b.Fatal(err)
		}
	}
}

// The attacker is indifferent everywhere and the defender matches the attacker's likelier
// strategy. The equilibria form one connected set with four extreme points; the two with
// x = (1/2, 1/2) have a two-strategy attacker against a pure defender, which equal-size support
// enumeration cannot find (its 2×2 systems are singular). The vertex enumeration fallback does.
func TestNashDegenerateUnequalSupports(t *testing.T) {
	g := Bimatrix{
		A: [][]float64{{1, 1}, {1, 1}},
		D: [][]float64{{1, 0}, {0, 1}},
	}
	got, err := NashEquilibria(g)
	if err != nil {
		t.Fatal(err)
	}
	want := []Equilibrium{
		{[]float64{1, 0}, []float64{1, 0}, 1, 1},
		{[]float64{0, 1}, []float64{0, 1}, 1, 1},
		{[]float64{.5, .5}, []float64{1, 0}, 1, .5},
		{[]float64{.5, .5}, []float64{0, 1}, 1, .5},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(e Equilibrium) bool { return sameEq(e, w, 1e-12) }) {
			t.Errorf("missing %v in %v", w, got)
		}
	}
}

// On nondegenerate games the vertex enumeration finds exactly what support enumeration finds.
func TestVertexEquilibriaAgree(t *testing.T) {
	games := []Bimatrix{matchingPennies, prisoners, battle, rps, handSolved}
	for seed := uint64(1); seed <= 20; seed++ {
		games = append(games, randomGame(seed, 3, 4))
	}
	for gi, g := range games {
		se, err := NashEquilibria(g)
		if err != nil {
			t.Fatal(err)
		}
		ve := vertexEquilibria(g)
		if len(se) != len(ve) {
			t.Errorf("game %d: support enumeration %v, vertex enumeration %v", gi, se, ve)
			continue
		}
		for _, e := range ve {
			if !slices.ContainsFunc(se, func(f Equilibrium) bool { return sameEq(e, f, 1e-9) }) {
				t.Errorf("game %d: %v only found by vertex enumeration", gi, e)
			}
		}
	}
}

// Small integer payoffs make most games degenerate: whatever is returned must be Nash, and
// every game has at least one equilibrium.
func TestNashDegenerateRandom(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		g := randomGame(seed, 3, 3)
		for _, M := range [][][]float64{g.A, g.D} {
			for _, row := range M {
				for j := range row {
					row[j] = math.Floor(3 * row[j])
				}
			}
		}
		eqs, err := NashEquilibria(g)
		if err != nil {
			t.Fatal(err)
		}
		if len(eqs) == 0 {
			t.Errorf("seed %d: no equilibrium for %v", seed, g)
		}
		for _, e := range eqs {
			if !IsNash(g, e.X, e.Y, 1e-9) {
				t.Errorf("seed %d: %v is not Nash", seed, e)
			}
		}
	}
}
