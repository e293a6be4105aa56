package game

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"
)

// ReplicatorOptions controls Replicate. Zero values select the documented defaults.
type ReplicatorOptions struct {
	// TMax is the time to integrate to. 0 means: until converged or DefaultTCap, whichever comes
	// first. With TMax > 0 integration also stops early once converged.
	TMax float64
	// Tol is the convergence threshold on the velocity norm relative to the payoff scale:
	// the run has converged when (‖ẋ‖₂+‖ẏ‖₂)/s < Tol, with s the larger of the two payoff
	// matrices' ranges (max − min; 1 when both are constant). Multiplying a game by a constant
	// c > 0 multiplies the velocity by c, so the test means the same on payoffs of order 1 and
	// of order 1000. Default 1e-8.
	Tol float64
	// SnapTol is the face-snapping threshold: after an accepted step, a mix component below it
	// that is dying out (negative velocity) and strictly dominated on the opponent's effective
	// support (its strategies at or above SnapTol) is set to exactly 0 and the mix
	// renormalised. The orbit then continues on the face it was converging to, where the dying
	// strategy's stiff decay no longer limits the step size, and at a vertex the velocity is
	// exactly 0. 0 selects DefaultSnapTol; a negative
	// value turns snapping off (the plain integration, which on payoffs in the hundreds can need
	// millions of steps to settle at a corner).
	SnapTol float64
	// RelTol and AbsTol control the step size (mixed error test per component); defaults 1e-9
	// and 1e-12.
	RelTol, AbsTol float64
	// Trajectory records accepted points (the start and the end point included).
	Trajectory bool
	// TrajectoryMax, when > 0, bounds the recorded trajectory to about that many points by
	// keeping every k-th accepted step and doubling k whenever the bound is exceeded (the end
	// point is always kept). 0 records every accepted step.
	TrajectoryMax int
	// MaxSteps bounds the number of attempted steps; default 10,000,000. Reaching it is not an
	// error: the result reports Converged=false at the time reached.
	MaxSteps int
}

// Defaults of ReplicatorOptions.
const (
	DefaultTCap     = 1e4
	DefaultTol      = 1e-8
	DefaultRelTol   = 1e-9
	DefaultAbsTol   = 1e-12
	DefaultMaxSteps = 10_000_000
	DefaultSnapTol  = 1e-7
)

// SimplexTol is how far a mix may leave the probability simplex: every component ≥ −SimplexTol
// and |Σ−1| ≤ SimplexTol. Inputs are checked against it; Replicate keeps every recorded point
// inside it.
const SimplexTol = 1e-9

// TrajectoryPoint is one accepted integration point.
type TrajectoryPoint struct {
	T    float64
	X, Y []float64
}

// ReplicatorResult is the outcome of Replicate.
type ReplicatorResult struct {
	X, Y        []float64    // mixes at the end point
	T           float64      // time reached
	Converged   bool         // the velocity norm fell below Tol
	Stable      bool         // Converged and the end point is asymptotically stable (see Stability)
	Eigenvalues []complex128 // eigenvalues behind the stability verdict, at the end point
	Trajectory  []TrajectoryPoint
	Steps       int // accepted steps
	Rejected    int // rejected step attempts
	Snapped     int // components set to 0 by face snapping (see ReplicatorOptions.SnapTol)
}

// ErrNotSimplex is wrapped by errors about a start mix that is not a probability vector.
var ErrNotSimplex = errors.New("game: not a probability vector")

// Dormand–Prince 5(4) tableau (Dormand & Prince 1980, the coefficients of DOPRI5).
const (
	// The nodes c = (0, 1/5, 3/10, 4/5, 8/9, 1, 1) are not needed: the replicator field does not
	// depend on time.
	dpA21 = 1.0 / 5

	dpA31, dpA32 = 3.0 / 40, 9.0 / 40

	dpA41, dpA42, dpA43 = 44.0 / 45, -56.0 / 15, 32.0 / 9

	dpA51, dpA52, dpA53, dpA54 = 19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729

	dpA61, dpA62, dpA63, dpA64, dpA65 = 9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656

	// The fifth-order weights, also the last stage (FSAL): k7 = f(y_{n+1}).
	dpB1, dpB3, dpB4, dpB5, dpB6 = 35.0 / 384, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84

	// Error weights: fifth-order minus embedded fourth-order weights.
	dpE1, dpE3, dpE4, dpE5, dpE6, dpE7 = 71.0 / 57600, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40
)

// Step-size controller constants (Hairer, Nørsett & Wanner, II.4).
const (
	stepSafety = 0.9
	stepFacMin = 0.2
	stepFacMax = 10.0
)

// replicator holds the game in flat row-major form and every buffer the integrator needs, so a
// step allocates nothing.
type replicator struct {
	m, n int
	a, d []float64 // m×n row-major

	u, v []float64 // scratch: A·y (m) and xᵀD (n)

	z, zn, ztmp, errv          []float64 // state (x then y), candidate, stage argument, error estimate
	k1, k2, k3, k4, k5, k6, k7 []float64

	snapTol float64 // face snapping threshold; ≤ 0 disables
}

func newReplicator(g Bimatrix) *replicator {
	m, n := g.Shape()
	N := m + n
	buf := make([]float64, 2*m*n+m+n+11*N)
	take := func(k int) []float64 {
		s := buf[:k:k]
		buf = buf[k:]
		return s
	}
	r := &replicator{m: m, n: n}
	r.a, r.d = take(m*n), take(m*n)
	// Adding a constant to a column of A changes every (Ay)_i by the same amount, and adding
	// one to a row of D every (xᵀD)_j, so neither changes the field. Subtracting each column's
	// minimum from A and each row's minimum from D takes away offsets that are large against
	// the payoff differences (e.g. 250.61 against 250.62), whose rounding would otherwise feed
	// the error estimate and shrink the steps.
	for j := 0; j < n; j++ {
		lo := math.Inf(1)
		for i := 0; i < m; i++ {
			lo = math.Min(lo, g.A[i][j])
		}
		for i := 0; i < m; i++ {
			r.a[i*n+j] = g.A[i][j] - lo
		}
	}
	for i := 0; i < m; i++ {
		lo := math.Inf(1)
		for _, v := range g.D[i] {
			lo = math.Min(lo, v)
		}
		for j, v := range g.D[i] {
			r.d[i*n+j] = v - lo
		}
	}
	r.u, r.v = take(m), take(n)
	r.z, r.zn, r.ztmp, r.errv = take(N), take(N), take(N), take(N)
	r.k1, r.k2, r.k3, r.k4, r.k5, r.k6, r.k7 = take(N), take(N), take(N), take(N), take(N), take(N), take(N)
	return r
}

// deriv writes the replicator velocity at state z into dz:
//
//	ẋ_i = x_i((A y)_i − xᵀA y),  ẏ_j = y_j((xᵀD)_j − xᵀD y).
func (r *replicator) deriv(z, dz []float64) {
	m, n := r.m, r.n
	x, y := z[:m], z[m:m+n]
	u, v := r.u[:m], r.v[:n]
	for j := range v {
		v[j] = 0
	}
	ubar := 0.0
	if n <= smallGame {
		// Plain loops: for a few strategies the call overhead of the assembly kernels
		// outweighs their speed (the case study's 2×2 games spend most of Solve here).
		for i := 0; i < m; i++ {
			ar, dr := r.a[i*n:i*n+n], r.d[i*n:i*n+n]
			s := 0.0
			for j, yj := range y {
				s += ar[j] * yj
			}
			u[i] = s
			xi := x[i]
			ubar += xi * s
			if xi != 0 {
				for j, dv := range dr {
					v[j] += xi * dv
				}
			}
		}
	} else {
		for i := 0; i < m; i++ {
			// floats.Dot and floats.AddScaled use gonum's assembly kernels and do not allocate.
			s := floats.Dot(r.a[i*n:i*n+n], y)
			u[i] = s
			xi := x[i]
			ubar += xi * s
			if xi != 0 {
				floats.AddScaled(v, xi, r.d[i*n:i*n+n])
			}
		}
	}
	vbar := 0.0
	for j, yj := range y {
		vbar += yj * v[j]
	}
	dx, dy := dz[:m], dz[m:m+n]
	for i, xi := range x {
		dx[i] = xi * (u[i] - ubar)
	}
	for j, yj := range y {
		dy[j] = yj * (v[j] - vbar)
	}
}

// smallGame is the number of defender strategies up to which deriv uses plain loops.
const smallGame = 8

// velocity is ‖ẋ‖₂+‖ẏ‖₂ of a derivative vector.
func (r *replicator) velocity(dz []float64) float64 {
	var sx, sy float64
	for _, v := range dz[:r.m] {
		sx += v * v
	}
	for _, v := range dz[r.m:] {
		sy += v * v
	}
	return math.Sqrt(sx) + math.Sqrt(sy)
}

// step attempts one Dormand–Prince step of size h from r.z, whose derivative is in r.k1. It
// writes the fifth-order candidate into r.zn, its derivative into r.k7, and returns the scaled
// RMS error norm (≤ 1 means acceptable).
func (r *replicator) step(h, rtol, atol float64) float64 {
	z, t, N := r.z, r.ztmp, len(r.z)
	k1, k2, k3, k4, k5, k6, k7 := r.k1, r.k2, r.k3, r.k4, r.k5, r.k6, r.k7
	t = t[:N]
	for i := range t {
		t[i] = z[i] + h*dpA21*k1[i]
	}
	r.deriv(t, k2)
	for i := range t {
		t[i] = z[i] + h*(dpA31*k1[i]+dpA32*k2[i])
	}
	r.deriv(t, k3)
	for i := range t {
		t[i] = z[i] + h*(dpA41*k1[i]+dpA42*k2[i]+dpA43*k3[i])
	}
	r.deriv(t, k4)
	for i := range t {
		t[i] = z[i] + h*(dpA51*k1[i]+dpA52*k2[i]+dpA53*k3[i]+dpA54*k4[i])
	}
	r.deriv(t, k5)
	for i := range t {
		t[i] = z[i] + h*(dpA61*k1[i]+dpA62*k2[i]+dpA63*k3[i]+dpA64*k4[i]+dpA65*k5[i])
	}
	r.deriv(t, k6)
	zn := r.zn[:N]
	for i := range zn {
		zn[i] = z[i] + h*(dpB1*k1[i]+dpB3*k3[i]+dpB4*k4[i]+dpB5*k5[i]+dpB6*k6[i])
	}
	r.deriv(zn, k7)
	sum := 0.0
	for i := range zn {
		e := h * (dpE1*k1[i] + dpE3*k3[i] + dpE4*k4[i] + dpE5*k5[i] + dpE6*k6[i] + dpE7*k7[i])
		sc := atol + rtol*math.Max(math.Abs(z[i]), math.Abs(zn[i]))
		q := e / sc
		sum += q * q
	}
	return math.Sqrt(sum / float64(N))
}

// project puts one mix back on the simplex: negative components become 0 and the sum is
// rescaled to 1. It reports whether a negative component was clamped.
func project(p []float64) (clamped bool) {
	s := 0.0
	for i, v := range p {
		if v < 0 {
			p[i] = 0
			clamped = true
			continue
		}
		s += v
	}
	if s > 0 && s != 1 {
		inv := 1 / s
		for i := range p {
			p[i] *= inv
		}
	}
	return clamped
}

// initialStep picks the first step size from the scale of the state and its derivative (the
// heuristic of Hairer, Nørsett & Wanner, II.4), using r.k2/r.ztmp as scratch.
func (r *replicator) initialStep(tEnd, rtol, atol float64) float64 {
	var d0, d1 float64
	for i, zi := range r.z {
		sc := atol + rtol*math.Abs(zi)
		d0 += (zi / sc) * (zi / sc)
		d1 += (r.k1[i] / sc) * (r.k1[i] / sc)
	}
	N := float64(len(r.z))
	d0, d1 = math.Sqrt(d0/N), math.Sqrt(d1/N)
	h0 := 1e-6
	if d0 >= 1e-5 && d1 >= 1e-5 {
		h0 = 0.01 * d0 / d1
	}
	h0 = math.Min(h0, tEnd)
	for i := range r.ztmp {
		r.ztmp[i] = r.z[i] + h0*r.k1[i]
	}
	r.deriv(r.ztmp, r.k2)
	d2 := 0.0
	for i, zi := range r.z {
		sc := atol + rtol*math.Abs(zi)
		q := (r.k2[i] - r.k1[i]) / sc
		d2 += q * q
	}
	d2 = math.Sqrt(d2/N) / h0
	var h1 float64
	if mx := math.Max(d1, d2); mx <= 1e-15 {
		h1 = math.Max(1e-6, h0*1e-3)
	} else {
		h1 = math.Pow(0.01/mx, 1.0/5)
	}
	return math.Min(math.Min(100*h0, h1), tEnd)
}

// checkMix returns an error naming who when p is not a probability vector of length k.
func checkMix(who string, p []float64, k int) error {
	if len(p) != k {
		return fmt.Errorf("%w: %s has %d entries, want %d", ErrNotSimplex, who, len(p), k)
	}
	s := 0.0
	for i, v := range p {
		if math.IsNaN(v) || v < -SimplexTol || v > 1+SimplexTol {
			return fmt.Errorf("%w: %s[%d] = %v is not a probability", ErrNotSimplex, who, i+1, v)
		}
		s += v
	}
	if math.Abs(s-1) > SimplexTol {
		return fmt.Errorf("%w: %s sums to %v, want 1", ErrNotSimplex, who, s)
	}
	return nil
}

// Uniform returns the uniform mix over k strategies.
func Uniform(k int) []float64 {
	p := make([]float64, k)
	for i := range p {
		p[i] = 1 / float64(k)
	}
	return p
}

// Replicate integrates the two-population replicator dynamics of g from (x0, y0) with an
// adaptive Dormand–Prince 5(4) method and reports the end point and its stability. x0 and y0
// may be nil for uniform mixes; they are not modified.
//
// The dynamics keep each mix on its simplex; numerically, every accepted step is projected
// back (tiny negatives clamped to 0, sum rescaled to 1), so every reported point is a
// probability vector within SimplexTol.
func Replicate(g Bimatrix, x0, y0 []float64, opt ReplicatorOptions) (ReplicatorResult, error) {
	if err := g.Validate(); err != nil {
		return ReplicatorResult{}, err
	}
	m, n := g.Shape()
	if x0 == nil {
		x0 = Uniform(m)
	}
	if y0 == nil {
		y0 = Uniform(n)
	}
	if err := checkMix("attacker start mix", x0, m); err != nil {
		return ReplicatorResult{}, err
	}
	if err := checkMix("defender start mix", y0, n); err != nil {
		return ReplicatorResult{}, err
	}
	if opt.TMax < 0 || math.IsNaN(opt.TMax) || math.IsInf(opt.TMax, 0) {
		return ReplicatorResult{}, fmt.Errorf("game: TMax %v must be finite and ≥ 0", opt.TMax)
	}
	tEnd := opt.TMax
	if tEnd == 0 {
		tEnd = DefaultTCap
	}
	tol, rtol, atol, maxSteps := opt.Tol, opt.RelTol, opt.AbsTol, opt.MaxSteps
	if tol <= 0 {
		tol = DefaultTol
	}
	if rtol <= 0 {
		rtol = DefaultRelTol
	}
	if atol <= 0 {
		atol = DefaultAbsTol
	}
	if maxSteps <= 0 {
		maxSteps = DefaultMaxSteps
	}
	snapTol := opt.SnapTol
	if snapTol == 0 {
		snapTol = DefaultSnapTol
	}

	r := newReplicator(g)
	r.snapTol = snapTol
	copy(r.z[:m], x0)
	copy(r.z[m:], y0)
	project(r.z[:m])
	project(r.z[m:])
	r.deriv(r.z, r.k1)

	res := ReplicatorResult{}
	rec := trajectoryRecorder{on: opt.Trajectory, max: opt.TrajectoryMax}
	t, err := r.integrate(tEnd, tol*payoffRange(g), rtol, atol, maxSteps, &rec, &res)
	if err != nil {
		return res, err
	}
	res.T = t
	res.X = append([]float64(nil), r.z[:m]...)
	res.Y = append([]float64(nil), r.z[m:]...)
	rec.finish(t, r.z, m)
	res.Trajectory = rec.points

	stable, eig, err := Stability(g, res.X, res.Y)
	if err != nil {
		return res, err
	}
	res.Eigenvalues = eig
	res.Stable = res.Converged && stable
	return res, nil
}

// integrate advances r.z (whose derivative is in r.k1) until converged, tEnd or maxSteps
// attempts, counting steps in res and recording into rec. It returns the time reached. With
// recording off it allocates nothing.
func (r *replicator) integrate(tEnd, tol, rtol, atol float64, maxSteps int, rec *trajectoryRecorder, res *ReplicatorResult) (float64, error) {
	m := r.m
	t := 0.0
	rec.add(t, r.z, m, 0)
	res.Converged = r.velocity(r.k1) < tol
	h := 0.0
	if !res.Converged {
		h = r.initialStep(tEnd, rtol, atol)
	}
	rejectedLast := false
	for attempts := 0; !res.Converged && t < tEnd && attempts < maxSteps; attempts++ {
		last := false
		if t+h >= tEnd {
			h, last = tEnd-t, true
		}
		errNorm := r.step(h, rtol, atol)
		if math.IsNaN(errNorm) || errNorm > 1 {
			res.Rejected++
			fac := stepFacMin
			if !math.IsNaN(errNorm) {
				fac = math.Max(stepFacMin, stepSafety*math.Pow(errNorm, -0.2))
			}
			h *= math.Min(fac, 1)
			rejectedLast = true
			if h < 1e-14*math.Max(1, t) {
				return t, fmt.Errorf("game: replicator step size underflow at t=%g", t)
			}
			continue
		}
		// Accept: move the candidate into the state, guard the simplex, reuse k7 (FSAL).
		if last {
			t = tEnd
		} else {
			t += h
		}
		r.z, r.zn = r.zn, r.z
		r.k1, r.k7 = r.k7, r.k1
		cx, cy := project(r.z[:m]), project(r.z[m:])
		if cx || cy {
			// A clamped component changed the state by more than rounding: recompute f.
			r.deriv(r.z, r.k1)
		}
		if n := r.snap(); n > 0 {
			res.Snapped += n
			r.deriv(r.z, r.k1)
		}
		res.Steps++
		rec.add(t, r.z, m, res.Steps)
		res.Converged = r.velocity(r.k1) < tol

		fac := stepFacMax
		if errNorm > 0 {
			fac = math.Min(stepFacMax, math.Max(stepFacMin, stepSafety*math.Pow(errNorm, -0.2)))
		}
		if rejectedLast {
			fac = math.Min(fac, 1)
		}
		rejectedLast = false
		h *= fac
	}
	return t, nil
}

// snap sets to 0 every mix component that is below r.snapTol, has a negative velocity (in
// r.k1) and is strictly dominated on the other population's effective support (the
// strategies at or above r.snapTol): some strategy k of the same population earns strictly
// more than it against every such opponent strategy. It renormalises the mixes and returns how
// many components it zeroed.
//
// The dominance test is what makes the snap safe: while the opponent stays on that support,
// d/dt ln(x_i/x_k) = (Ay)_i − (Ay)_k < 0, so strategy i keeps dying, and the orbit's limit lies
// on the face without it. A strategy that is only momentarily below average (as on the orbits
// of a cyclic game such as matching pennies) is not dominated and is kept; so is an invading
// strategy (positive velocity), however small. A mix's largest component is at least 1/len, so
// a mix cannot be emptied.
func (r *replicator) snap() int {
	if !(r.snapTol > 0) {
		return 0
	}
	m, n := r.m, r.n
	x, y := r.z[:m], r.z[m:m+n]
	tiny := func(v float64) bool { return v < r.snapTol }
	count := 0
	hitX, hitY := false, false
	for i, xi := range x {
		if xi <= 0 || !tiny(xi) || !(r.k1[i] < 0) {
			continue
		}
		for k := 0; k < m; k++ {
			if k == i {
				continue
			}
			dom := true
			for j, yj := range y {
				if !tiny(yj) && !(r.a[k*n+j] > r.a[i*n+j]) {
					dom = false
					break
				}
			}
			if dom {
				x[i] = 0
				hitX = true
				count++
				break
			}
		}
	}
	for j, yj := range y {
		if yj <= 0 || !tiny(yj) || !(r.k1[m+j] < 0) {
			continue
		}
		for l := 0; l < n; l++ {
			if l == j {
				continue
			}
			dom := true
			for i, xi := range x {
				if !tiny(xi) && !(r.d[i*n+l] > r.d[i*n+j]) {
					dom = false
					break
				}
			}
			if dom {
				y[j] = 0
				hitY = true
				count++
				break
			}
		}
	}
	if hitX {
		project(x)
	}
	if hitY {
		project(y)
	}
	return count
}

// payoffRange is the larger of the two payoff matrices' ranges (max − min), or 1 when both are
// constant: the scale of payoff differences, which drive the replicator velocity.
func payoffRange(g Bimatrix) float64 {
	s := 0.0
	for _, M := range [][][]float64{g.A, g.D} {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, row := range M {
			for _, v := range row {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		s = math.Max(s, hi-lo)
	}
	if !(s > 0) || math.IsInf(s, 0) {
		return 1
	}
	return s
}

// trajectoryRecorder keeps accepted points, thinning them to about max points.
type trajectoryRecorder struct {
	on     bool
	max    int
	stride int
	points []TrajectoryPoint
}

func (tr *trajectoryRecorder) add(t float64, z []float64, m, step int) {
	if !tr.on {
		return
	}
	if tr.stride == 0 {
		tr.stride = 1
	}
	if step%tr.stride != 0 {
		return
	}
	tr.points = append(tr.points, TrajectoryPoint{
		T: t,
		X: append([]float64(nil), z[:m]...),
		Y: append([]float64(nil), z[m:]...),
	})
	if tr.max > 0 && len(tr.points) > tr.max {
		// Keep the points at even positions: those are the steps divisible by 2*stride.
		k := 0
		for i := 0; i < len(tr.points); i += 2 {
			tr.points[k] = tr.points[i]
			k++
		}
		clear(tr.points[k:])
		tr.points = tr.points[:k]
		tr.stride *= 2
	}
}

// finish makes sure the end point is the last recorded point.
func (tr *trajectoryRecorder) finish(t float64, z []float64, m int) {
	if !tr.on {
		return
	}
	if n := len(tr.points); n > 0 && tr.points[n-1].T == t {
		return
	}
	if tr.max > 0 && len(tr.points) >= tr.max && len(tr.points) > 1 {
		// Replace the newest point rather than exceed the bound.
		tr.points = tr.points[:len(tr.points)-1]
	}
	tr.points = append(tr.points, TrajectoryPoint{
		T: t,
		X: append([]float64(nil), z[:m]...),
		Y: append([]float64(nil), z[m:]...),
	})
}
