package game

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// randomGame draws both payoff matrices uniformly from [0, 1) with a fixed seed.
func randomGame(seed uint64, m, n int) Bimatrix {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	mk := func() [][]float64 {
		M := make([][]float64, m)
		for i := range M {
			M[i] = make([]float64, n)
			for j := range M[i] {
				M[i][j] = rng.Float64()
			}
		}
		return M
	}
	return Bimatrix{A: mk(), D: mk()}
}

func TestBimatrixValidate(t *testing.T) {
	tests := []struct {
		name  string
		g     Bimatrix
		valid bool
	}{
		{"ok", prisoners, true},
		{"1x1", Bimatrix{A: [][]float64{{1}}, D: [][]float64{{2}}}, true},
		{"empty", Bimatrix{}, false},
		{"empty row", Bimatrix{A: [][]float64{{}}, D: [][]float64{{}}}, false},
		{"row count", Bimatrix{A: [][]float64{{1}, {2}}, D: [][]float64{{1}}}, false},
		{"ragged attacker", Bimatrix{A: [][]float64{{1, 2}, {3}}, D: [][]float64{{1, 2}, {3, 4}}}, false},
		{"ragged defender", Bimatrix{A: [][]float64{{1, 2}, {3, 4}}, D: [][]float64{{1, 2}, {3}}}, false},
		{"NaN", Bimatrix{A: [][]float64{{math.NaN()}}, D: [][]float64{{1}}}, false},
		{"Inf", Bimatrix{A: [][]float64{{1}}, D: [][]float64{{math.Inf(-1)}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.g.Validate()
			if (err == nil) != tc.valid {
				t.Fatalf("Validate() = %v, want valid=%v", err, tc.valid)
			}
			if err != nil && !errors.Is(err, ErrShape) {
				t.Errorf("error %v does not wrap ErrShape", err)
			}
		})
	}
}

func TestBimatrixShape(t *testing.T) {
	if m, n := randomGame(1, 3, 5).Shape(); m != 3 || n != 5 {
		t.Errorf("Shape() = %d, %d, want 3, 5", m, n)
	}
	if m, n := (Bimatrix{}).Shape(); m != 0 || n != 0 {
		t.Errorf("empty Shape() = %d, %d", m, n)
	}
}
