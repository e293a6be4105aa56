package game

import "errors"

// ReplicatorOptions controls Replicate. Zero values select the documented defaults.
type ReplicatorOptions struct {
	// TMax is the time to integrate to. 0 means: until converged (velocity norm below Tol) or
	// DefaultTCap, whichever comes first. With TMax > 0 integration still stops early on convergence.
	TMax float64
	// Tol is the convergence threshold on ‖ẋ‖₂+‖ẏ‖₂; default 1e-8.
	Tol float64
	// RelTol and AbsTol control the step size; defaults 1e-9 and 1e-12.
	RelTol, AbsTol float64
	// Trajectory records every accepted point (including the start) in the result.
	Trajectory bool
	// MaxSteps bounds the number of attempted steps; default 10,000,000.
	MaxSteps int
}

// DefaultTCap is the time horizon used when ReplicatorOptions.TMax is 0.
const DefaultTCap = 1e4

// TrajectoryPoint is one accepted integration point.
type TrajectoryPoint struct {
	T    float64
	X, Y []float64
}

// ReplicatorResult is the end state of Replicate.
type ReplicatorResult struct {
	X, Y        []float64    // mixes at the end point
	T           float64      // time reached
	Converged   bool         // velocity norm fell below Tol
	Stable      bool         // end point is asymptotically stable (see Stability)
	Eigenvalues []complex128 // eigenvalues used for the stability verdict
	Trajectory  []TrajectoryPoint
	Steps       int // accepted steps
}

// Replicate integrates the two-population replicator dynamics of g from (x0, y0).
func Replicate(g Bimatrix, x0, y0 []float64, opt ReplicatorOptions) (ReplicatorResult, error) {
	return ReplicatorResult{}, errors.New("game: replicator not implemented yet")
}
