package game

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Equilibrium is a Nash equilibrium (x, y) with each player's expected payoff xᵀAy and xᵀDy.
type Equilibrium struct {
	X, Y                           []float64
	AttackerPayoff, DefenderPayoff float64
}

// MaxSupportPairs bounds the work of NashEquilibria: the number of equal-size support pairs,
// Σ_k C(m,k)·C(n,k) = C(m+n, m), may not exceed it.
const MaxSupportPairs = 1 << 20

// Tolerances of the equilibrium search, relative to the payoff scale where they compare payoffs.
const (
	nashProbTol = 1e-9 // a probability may be this far below 0
	nashPayTol  = 1e-9 // a deviation may gain this much (times the payoff scale)
	nashCondMax = 1e12 // indifference systems worse conditioned than this count as singular
	nashDupTol  = 1e-7 // equilibria closer than this (max norm) are the same
)

// NashEquilibria returns Nash equilibria of g by support enumeration.
//
// For every pair of supports I (attacker) and J (defender) of equal size k it solves two k×k
// linear systems: y on J making the attacker indifferent among the rows in I, and x on I
// making the defender indifferent among the columns in J, each with Σ = 1. A solution is kept
// when both vectors are probabilities (zeros inside a support are allowed) and no strategy
// outside the supports pays more. Results are deduplicated and returned in enumeration order
// (support size, then lexicographic supports).
//
// For a nondegenerate game this finds all equilibria (there is an odd number of them). A
// degenerate game can have a continuum of equilibria, whose indifference systems are singular
// for some supports; those supports are skipped (condition number above 1e12), so the result
// holds the equilibria whose systems are uniquely solvable, which include every pure
// equilibrium and, in the degenerate games tested, the end points of each continuum. Unequal
// support sizes are not enumerated: a pair with |I| ≠ |J| gives one over- and one
// under-determined system and so no isolated equilibrium that equal sizes miss in those games.
func NashEquilibria(g Bimatrix) ([]Equilibrium, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	m, n := g.Shape()
	if pairs := binomial(m+n, m); pairs > MaxSupportPairs {
		return nil, fmt.Errorf("game: %d×%d game needs %.0f support pairs, limit is %d", m, n, pairs, MaxSupportPairs)
	}
	scale := payoffScale(g)
	var out []Equilibrium
	xs, ys := make([]float64, m), make([]float64, n)
	for k := 1; k <= min(m, n); k++ {
		ws := newIndiffSolver(k)
		forEachSubset(m, k, func(I []int) {
			forEachSubset(n, k, func(J []int) {
				// y on J, attacker indifferent over I: rows (A y)_{I[a]} − (A y)_{I[0]} = 0, Σ y_J = 1.
				if !ws.solve(func(a, b int) float64 {
					return g.A[I[a]][J[b]] - g.A[I[0]][J[b]]
				}, J, ys) {
					return
				}
				// x on I, defender indifferent over J: (xᵀD)_{J[a]} − (xᵀD)_{J[0]} = 0, Σ x_I = 1.
				if !ws.solve(func(a, b int) float64 {
					return g.D[I[b]][J[a]] - g.D[I[b]][J[0]]
				}, I, xs) {
					return
				}
				if !bestResponses(g, xs, ys, nashPayTol*scale) {
					return
				}
				for _, e := range out {
					if maxDiff(e.X, xs) < nashDupTol && maxDiff(e.Y, ys) < nashDupTol {
						return
					}
				}
				x, y := append([]float64(nil), xs...), append([]float64(nil), ys...)
				out = append(out, Equilibrium{X: x, Y: y, AttackerPayoff: bilinear(g.A, x, y), DefenderPayoff: bilinear(g.D, x, y)})
			})
		})
	}
	return out, nil
}

// indiffSolver solves the k×k indifference systems of one support size, reusing its buffers.
type indiffSolver struct {
	k   int
	M   *mat.Dense
	lu  mat.LU
	rhs *mat.VecDense
	sol *mat.VecDense
}

func newIndiffSolver(k int) *indiffSolver {
	ws := &indiffSolver{k: k, M: mat.NewDense(k, k, nil), rhs: mat.NewVecDense(k, nil), sol: mat.NewVecDense(k, nil)}
	ws.rhs.SetVec(k-1, 1)
	return ws
}

// solve solves the k×k system whose first k−1 rows are coef(a, b), a = 1..k−1, and whose last
// row is all ones (the sum), with right-hand side e_k. The solution, placed on support S, is
// written into dst (zero elsewhere). It reports false when the system is singular or the
// solution is not a probability vector.
func (ws *indiffSolver) solve(coef func(a, b int) float64, S []int, dst []float64) bool {
	k := ws.k
	clear(dst)
	if k == 1 {
		dst[S[0]] = 1
		return true
	}
	for a := 1; a < k; a++ {
		for b := 0; b < k; b++ {
			ws.M.Set(a-1, b, coef(a, b))
		}
	}
	for b := 0; b < k; b++ {
		ws.M.Set(k-1, b, 1)
	}
	ws.lu.Factorize(ws.M)
	if c := ws.lu.Cond(); math.IsInf(c, 0) || c > nashCondMax {
		return false
	}
	if err := ws.lu.SolveVecTo(ws.sol, false, ws.rhs); err != nil {
		return false
	}
	for b := 0; b < k; b++ {
		p := ws.sol.AtVec(b)
		if math.IsNaN(p) || p < -nashProbTol {
			return false
		}
		dst[S[b]] = math.Max(p, 0)
	}
	project(dst)
	return true
}

// bestResponses reports whether every strategy in x's and y's support is a best response to
// the other's mix within tol, i.e. nobody gains more than tol by deviating.
func bestResponses(g Bimatrix, x, y []float64, tol float64) bool {
	m, n := g.Shape()
	ua, va := bilinear(g.A, x, y), bilinear(g.D, x, y)
	for i := 0; i < m; i++ {
		s := 0.0
		for j := 0; j < n; j++ {
			s += g.A[i][j] * y[j]
		}
		if s > ua+tol {
			return false
		}
	}
	for j := 0; j < n; j++ {
		s := 0.0
		for i := 0; i < m; i++ {
			s += x[i] * g.D[i][j]
		}
		if s > va+tol {
			return false
		}
	}
	return true
}

// IsNash reports whether (x, y) is a Nash equilibrium of g within tol: both are probability
// vectors of the right length (within tol) and no pure deviation gains more than tol.
func IsNash(g Bimatrix, x, y []float64, tol float64) bool {
	if g.Validate() != nil {
		return false
	}
	m, n := g.Shape()
	for _, p := range []struct {
		v []float64
		k int
	}{{x, m}, {y, n}} {
		if len(p.v) != p.k {
			return false
		}
		s := 0.0
		for _, v := range p.v {
			if !(v >= -tol) || math.IsInf(v, 0) {
				return false
			}
			s += v
		}
		if math.Abs(s-1) > tol {
			return false
		}
	}
	return bestResponses(g, x, y, tol)
}

// bilinear is xᵀ M y.
func bilinear(M [][]float64, x, y []float64) float64 {
	s := 0.0
	for i, row := range M {
		r := 0.0
		for j, v := range row {
			r += v * y[j]
		}
		s += x[i] * r
	}
	return s
}

func maxDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// forEachSubset calls f with every k-subset of {0..n-1} in lexicographic order. f must not
// keep the slice.
func forEachSubset(n, k int, f func([]int)) {
	if k > n || k <= 0 {
		return
	}
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	for {
		f(idx)
		i := k - 1
		for i >= 0 && idx[i] == n-k+i {
			i--
		}
		if i < 0 {
			return
		}
		idx[i]++
		for j := i + 1; j < k; j++ {
			idx[j] = idx[j-1] + 1
		}
	}
}

// binomial is C(n, k) as a float64 (exact for the sizes that pass the limit).
func binomial(n, k int) float64 {
	if k < 0 || k > n {
		return 0
	}
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}
