package game

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Thresholds of the stability test.
const (
	// SnapTol: mix components below it are treated as extinct (set to 0) before linearizing,
	// so a trajectory that converged towards a face is judged at the face.
	SnapTol = 1e-7
	// EigTol: an eigenvalue counts as negative when its real part is below −EigTol·s, where s is
	// the largest absolute payoff; zero or positive real parts within that margin mean "not
	// asymptotically stable" (linearization cannot decide, or the point is unstable).
	EigTol = 1e-8
)

// Stability linearizes the replicator dynamics of g at (x, y) and reports whether the point is
// asymptotically stable, with the eigenvalues the verdict rests on. The point should be a rest
// point (Replicate only reports Stable when it converged).
//
// The rule. The state space is the product of two simplices, so the Jacobian J of the velocity
// field is taken on the (m−1)+(n−1)-dimensional tangent space T = {Σdx = 0, Σdy = 0}: on the
// affine hull of the simplices the field takes values in T, so T is invariant under J and the
// restriction is well defined. In the basis e_k − e_last of each block the restricted matrix
// has entries J[a][b] − J[a][last(b)] over the non-last indices a, b. Its eigenvalues are:
//
//   - for each unused attacker strategy i (x_i = 0), the transversal eigenvalue
//     (A y)_i − xᵀA y, and likewise (xᵀD)_j − xᵀD y for each unused defender strategy j:
//     the row of J for an unused strategy is zero except this diagonal entry. At a vertex
//     (both players pure) these payoff differences are all the eigenvalues;
//   - the eigenvalues of the same construction on the face spanned by the two supports.
//
// So the boundary needs no special case: a negative transversal eigenvalue says the unused
// strategy does worse and dies out, a positive one says it invades. The point is reported
// stable when every real part is below −EigTol times the payoff scale. Components below
// SnapTol are set to 0 (and the mixes renormalized) first. An interior rest point of a
// bimatrix game is never asymptotically stable: its eigenvalues come in ± pairs.
func Stability(g Bimatrix, x, y []float64) (stable bool, eig []complex128, err error) {
	if err := g.Validate(); err != nil {
		return false, nil, err
	}
	m, n := g.Shape()
	if err := checkMix("attacker mix", x, m); err != nil {
		return false, nil, err
	}
	if err := checkMix("defender mix", y, n); err != nil {
		return false, nil, err
	}
	xs, ys := snap(x), snap(y)
	dim := m - 1 + n - 1
	if dim == 0 {
		return true, nil, nil
	}
	J := fullJacobian(g, xs, ys)
	ref := func(b int) int { // the last index of b's block
		if b < m {
			return m - 1
		}
		return m + n - 1
	}
	// reduced index -> full index
	full := make([]int, 0, dim)
	for i := 0; i < m-1; i++ {
		full = append(full, i)
	}
	for j := 0; j < n-1; j++ {
		full = append(full, m+j)
	}
	R := mat.NewDense(dim, dim, nil)
	for a, fa := range full {
		for b, fb := range full {
			R.Set(a, b, J.At(fa, fb)-J.At(fa, ref(fb)))
		}
	}
	var e mat.Eigen
	if !e.Factorize(R, mat.EigenNone) {
		return false, nil, fmt.Errorf("game: eigenvalue decomposition of the %d×%d Jacobian did not converge", dim, dim)
	}
	eig = e.Values(nil)
	limit := -EigTol * payoffScale(g)
	stable = true
	for _, l := range eig {
		if real(l) >= limit {
			stable = false
		}
	}
	return stable, eig, nil
}

// snap copies p with components below SnapTol set to 0 and renormalizes.
func snap(p []float64) []float64 {
	q := append([]float64(nil), p...)
	for i, v := range q {
		if v < SnapTol {
			q[i] = 0
		}
	}
	project(q)
	return q
}

// payoffScale is the largest absolute payoff, or 1 for an all-zero game.
func payoffScale(g Bimatrix) float64 {
	s := 0.0
	for _, M := range [][][]float64{g.A, g.D} {
		for _, row := range M {
			for _, v := range row {
				s = math.Max(s, math.Abs(v))
			}
		}
	}
	if s == 0 {
		return 1
	}
	return s
}

// fullJacobian is the (m+n)×(m+n) derivative of the replicator field at (x, y):
//
//	∂ẋ_i/∂x_k = δ_ik((Ay)_i − xᵀAy) − x_i (Ay)_k    ∂ẋ_i/∂y_l = x_i(A_il − (xᵀA)_l)
//	∂ẏ_j/∂y_l = δ_jl((xᵀD)_j − xᵀDy) − y_j (xᵀD)_l  ∂ẏ_j/∂x_k = y_j(D_kj − (Dy)_k)
func fullJacobian(g Bimatrix, x, y []float64) *mat.Dense {
	m, n := g.Shape()
	u := make([]float64, m)  // A y
	xa := make([]float64, n) // xᵀA
	v := make([]float64, n)  // xᵀD
	dy := make([]float64, m) // D y
	var ubar, vbar float64
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			u[i] += g.A[i][j] * y[j]
			xa[j] += x[i] * g.A[i][j]
			v[j] += x[i] * g.D[i][j]
			dy[i] += g.D[i][j] * y[j]
		}
	}
	for i := range u {
		ubar += x[i] * u[i]
	}
	for j := range v {
		vbar += y[j] * v[j]
	}
	J := mat.NewDense(m+n, m+n, nil)
	for i := 0; i < m; i++ {
		for k := 0; k < m; k++ {
			val := -x[i] * u[k]
			if i == k {
				val += u[i] - ubar
			}
			J.Set(i, k, val)
		}
		for l := 0; l < n; l++ {
			J.Set(i, m+l, x[i]*(g.A[i][l]-xa[l]))
		}
	}
	for j := 0; j < n; j++ {
		for l := 0; l < n; l++ {
			val := -y[j] * v[l]
			if j == l {
				val += v[j] - vbar
			}
			J.Set(m+j, m+l, val)
		}
		for k := 0; k < m; k++ {
			J.Set(m+j, k, y[j]*(g.D[k][j]-dy[k]))
		}
	}
	return J
}
