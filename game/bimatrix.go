// Package game owns the MTTEGDM decision model of Proteus and its numerical core: bimatrix
// games, replicator dynamics with an adaptive Dormand–Prince integrator, stability analysis,
// Nash equilibria by support enumeration, and parsing payoff matrices from CSV.
//
// It is a pure library: it reads only from an io.Reader handed to it, never opens files,
// sockets or clocks, and logs nothing. It must not import any Proteus package other than
// strictyaml (for located validation errors), and no third-party module other than gonum.
package game

import (
	"errors"
	"fmt"
	"math"
)

// ErrShape is wrapped by errors about matrices or vectors of the wrong size or content.
var ErrShape = errors.New("game: bad shape")

// Bimatrix is a two-player game in normal form: A[i][j] is the attacker's payoff and D[i][j]
// the defender's when the attacker plays strategy i (of m) and the defender strategy j (of n).
type Bimatrix struct {
	A, D [][]float64
}

// newBimatrix returns an m×n game whose payoff matrices are all zero.
func newBimatrix(m, n int) Bimatrix {
	g := Bimatrix{A: make([][]float64, m), D: make([][]float64, m)}
	for x := range m {
		g.A[x], g.D[x] = make([]float64, n), make([]float64, n)
	}
	return g
}

// Shape returns the number of attacker strategies m and defender strategies n. It reads the
// attacker matrix; call Validate first to be sure both matrices agree.
func (g Bimatrix) Shape() (m, n int) {
	m = len(g.A)
	if m > 0 {
		n = len(g.A[0])
	}
	return m, n
}

// Validate checks that both matrices are non-empty, rectangular, of the same shape and hold only
// finite numbers.
func (g Bimatrix) Validate() error {
	m, n := g.Shape()
	if m == 0 || n == 0 {
		return fmt.Errorf("%w: attacker matrix is empty", ErrShape)
	}
	if len(g.D) != m {
		return fmt.Errorf("%w: attacker matrix has %d rows, defender matrix %d", ErrShape, m, len(g.D))
	}
	for _, p := range []struct {
		name string
		M    [][]float64
	}{{"attacker", g.A}, {"defender", g.D}} {
		for i, row := range p.M {
			if len(row) != n {
				return fmt.Errorf("%w: %s matrix row %d has %d columns, want %d", ErrShape, p.name, i+1, len(row), n)
			}
			for j, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("%w: %s matrix [%d][%d] is %v, want a finite number", ErrShape, p.name, i+1, j+1, v)
				}
			}
		}
	}
	return nil
}
