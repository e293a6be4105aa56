package game

import (
	"errors"
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
// Σ_k C(m,k)·C(n,k) = C(m+n, m), may not exceed it. The vertex enumeration used for
// degenerate games visits the same number of pairs per player.
const MaxSupportPairs = 1 << 20

// ErrTooLarge is wrapped by the error NashEquilibria returns for games beyond MaxSupportPairs.
var ErrTooLarge = errors.New("game: game too large for support enumeration")

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
// For a nondegenerate game this finds all equilibria (there is an odd number of them). When
// the enumeration shows the game is degenerate — a singular indifference system (condition
// number above 1e12), or an equilibrium where a player has more pure best responses than the
// other player's support has strategies — or finds nothing, the extreme equilibria from
// vertex enumeration (vertexEquilibria) are appended, which covers supports of unequal size.
// A degenerate game can have continua of equilibria; those are represented by their extreme
// points, not listed as sets.
func NashEquilibria(g Bimatrix) ([]Equilibrium, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	m, n := g.Shape()
	if pairs := binomial(m+n, m); pairs > MaxSupportPairs {
		return nil, fmt.Errorf("%w: %d×%d game needs %.0f support pairs, limit is %d", ErrTooLarge, m, n, pairs, MaxSupportPairs)
	}
	scale := payoffScale(g)
	var out []Equilibrium
	degenerate := false
	xs, ys := make([]float64, m), make([]float64, n)
	for k := 1; k <= min(m, n); k++ {
		ws := newIndiffSolver(k)
		forEachSubset(m, k, func(I []int) {
			forEachSubset(n, k, func(J []int) {
				// y on J, attacker indifferent over I: rows (A y)_{I[a]} − (A y)_{I[0]} = 0, Σ y_J = 1.
				st := ws.solve(func(a, b int) float64 {
					return g.A[I[a]][J[b]] - g.A[I[0]][J[b]]
				}, J, ys)
				if st == singular {
					degenerate = true
				}
				if st != solved {
					return
				}
				// x on I, defender indifferent over J: (xᵀD)_{J[a]} − (xᵀD)_{J[0]} = 0, Σ x_I = 1.
				st = ws.solve(func(a, b int) float64 {
					return g.D[I[b]][J[a]] - g.D[I[b]][J[0]]
				}, I, xs)
				if st == singular {
					degenerate = true
				}
				if st != solved || !bestResponses(g, xs, ys, nashPayTol*scale) {
					return
				}
				if moreBestResponsesThanSupport(g, xs, ys, nashPayTol*scale) {
					degenerate = true
				}
				out = addEquilibrium(g, out, xs, ys)
			})
		})
	}
	if degenerate || len(out) == 0 {
		for _, e := range vertexEquilibria(g) {
			out = addEquilibrium(g, out, e.X, e.Y)
		}
	}
	return out, nil
}

// addEquilibrium appends copies of (x, y) with their payoffs unless out already holds it.
func addEquilibrium(g Bimatrix, out []Equilibrium, x, y []float64) []Equilibrium {
	for _, e := range out {
		if maxDiff(e.X, x) < nashDupTol && maxDiff(e.Y, y) < nashDupTol {
			return out
		}
	}
	x, y = append([]float64(nil), x...), append([]float64(nil), y...)
	return append(out, Equilibrium{X: x, Y: y, AttackerPayoff: bilinear(g.A, x, y), DefenderPayoff: bilinear(g.D, x, y)})
}

// moreBestResponsesThanSupport reports the sign of a degenerate game at an equilibrium: a
// player has more pure best responses to the other's mix than that mix has strategies.
func moreBestResponsesThanSupport(g Bimatrix, x, y []float64, tol float64) bool {
	m, n := g.Shape()
	ua, vd := bilinear(g.A, x, y), bilinear(g.D, x, y)
	var brA, brD, sx, sy int
	for i := 0; i < m; i++ {
		s := 0.0
		for j := 0; j < n; j++ {
			s += g.A[i][j] * y[j]
		}
		if s >= ua-tol {
			brA++
		}
		if x[i] > 0 {
			sx++
		}
	}
	for j := 0; j < n; j++ {
		s := 0.0
		for i := 0; i < m; i++ {
			s += x[i] * g.D[i][j]
		}
		if s >= vd-tol {
			brD++
		}
		if y[j] > 0 {
			sy++
		}
	}
	return brA > sy || brD > sx
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
func (ws *indiffSolver) solve(coef func(a, b int) float64, S []int, dst []float64) solveStatus {
	k := ws.k
	clear(dst)
	if k == 1 {
		dst[S[0]] = 1
		return solved
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
		return singular
	}
	if err := ws.lu.SolveVecTo(ws.sol, false, ws.rhs); err != nil {
		return singular
	}
	for b := 0; b < k; b++ {
		p := ws.sol.AtVec(b)
		if math.IsNaN(p) || p < -nashProbTol {
			return infeasible
		}
		dst[S[b]] = math.Max(p, 0)
	}
	project(dst)
	return solved
}

// solveStatus is the outcome of one indifference system.
type solveStatus int

const (
	solved     solveStatus = iota
	singular               // no unique solution (condition number above nashCondMax)
	infeasible             // unique, but not a probability vector
)

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

// vertex is a vertex of a best-response polytope with its labels (see vertexEquilibria).
type vertex struct {
	p      []float64 // unnormalized
	labels []bool    // m+n labels
}

// vertexEquilibria lists the extreme equilibria of g by enumerating the vertices of the two
// best-response polytopes (Mangasarian 1964; von Stengel, "Computing equilibria for two-person
// games", 2002). With the payoffs shifted to be ≥ 1,
//
//	P = {x ≥ 0 : xᵀD ≤ 1},  Q = {y ≥ 0 : A y ≤ 1}.
//
// Label i (an attacker strategy) belongs to x when x_i = 0 and to y when (A y)_i = 1; label
// m+j (a defender strategy) to x when (xᵀD)_j = 1 and to y when y_j = 0. A pair of nonzero
// vertices carrying all m+n labels between them is, after normalization, an equilibrium, and
// every extreme point of every set of equilibria arises this way, also in degenerate games.
// A vertex is found as the unique solution of k tight payoff constraints on a support of size
// k (all other components 0), the same k×k systems as support enumeration, but for each
// player separately, so the two supports may differ in size.
func vertexEquilibria(g Bimatrix) []Equilibrium {
	m, n := g.Shape()
	shift := func(M [][]float64) [][]float64 {
		lo := math.Inf(1)
		for _, row := range M {
			for _, v := range row {
				lo = math.Min(lo, v)
			}
		}
		out := make([][]float64, len(M))
		for i, row := range M {
			out[i] = make([]float64, len(row))
			for j, v := range row {
				out[i][j] = v - lo + 1
			}
		}
		return out
	}
	As, Ds := shift(g.A), shift(g.D)
	// P: the attacker's mix x on support S (⊆ rows) with the defender's columns T tight.
	px := polytopeVertices(m, n, func(i, j int) float64 { return Ds[i][j] }, false)
	// Q: the defender's mix y on support S (⊆ columns) with the attacker's rows T tight.
	qy := polytopeVertices(n, m, func(j, i int) float64 { return As[i][j] }, true)
	var out []Equilibrium
	for _, vx := range px {
		for _, vy := range qy {
			complete := true
			for l := range vx.labels {
				if !vx.labels[l] && !vy.labels[l] {
					complete = false
					break
				}
			}
			if !complete {
				continue
			}
			x, y := append([]float64(nil), vx.p...), append([]float64(nil), vy.p...)
			project(x)
			project(y)
			if !bestResponses(g, x, y, nashPayTol*payoffScale(g)) {
				continue // numerical corner case: do not report what is not an equilibrium
			}
			out = addEquilibrium(g, out, x, y)
		}
	}
	return out
}

// polytopeVertices enumerates the nonzero vertices of {p ∈ R^k : p ≥ 0, Σ_s p_s c(s, t) ≤ 1 for
// t < r}, where c > 0. Labels are returned in the game's numbering: when mine is the attacker
// (swap false) p's zero components are labels 0..k−1 and tight constraints k+t; when mine is
// the defender (swap true) tight constraints are labels t and zero components r+s.
func polytopeVertices(k, r int, c func(s, t int) float64, swap bool) []vertex {
	var out []vertex
	p := make([]float64, k)
	for size := 1; size <= min(k, r); size++ {
		M := mat.NewDense(size, size, nil)
		ones := mat.NewVecDense(size, nil)
		for i := 0; i < size; i++ {
			ones.SetVec(i, 1)
		}
		var lu mat.LU
		var sol mat.VecDense
		forEachSubset(k, size, func(S []int) {
			forEachSubset(r, size, func(T []int) {
				for a, t := range T {
					for b, s := range S {
						M.Set(a, b, c(s, t))
					}
				}
				lu.Factorize(M)
				if cond := lu.Cond(); math.IsInf(cond, 0) || cond > nashCondMax {
					return
				}
				if err := lu.SolveVecTo(&sol, false, ones); err != nil {
					return
				}
				clear(p)
				sum := 0.0
				for b, s := range S {
					v := sol.AtVec(b)
					if math.IsNaN(v) {
						return
					}
					p[s] = v
					sum += v
				}
				if sum <= 0 {
					return
				}
				for b := range S {
					if p[S[b]] < -nashProbTol*sum {
						return
					}
				}
				labels := make([]bool, k+r)
				own, other := 0, k // label offsets of p's components and of the constraints
				if swap {
					own, other = r, 0
				}
				for s := 0; s < k; s++ {
					if p[s] <= nashProbTol*sum {
						p[s] = 0
						labels[own+s] = true
					}
				}
				for t := 0; t < r; t++ {
					v := 0.0
					for s := 0; s < k; s++ {
						v += p[s] * c(s, t)
					}
					if v > 1+1e-9 {
						return // outside the polytope
					}
					if v >= 1-1e-9 {
						labels[other+t] = true
					}
				}
				for _, w := range out {
					if maxDiff(w.p, p) <= 1e-12*sum {
						return
					}
				}
				out = append(out, vertex{p: append([]float64(nil), p...), labels: labels})
			})
		})
	}
	return out
}
