package game

import (
	"errors"
	"math"
	"math/cmplx"
	"testing"
)

// checkSimplex fails the test when p is not a probability vector within SimplexTol.
func checkSimplex(t *testing.T, what string, p []float64) {
	t.Helper()
	s := 0.0
	for i, v := range p {
		if v < -SimplexTol || math.IsNaN(v) {
			t.Fatalf("%s[%d] = %v leaves the simplex", what, i, v)
		}
		s += v
	}
	if math.Abs(s-1) > SimplexTol {
		t.Fatalf("%s sums to %v", what, s)
	}
}

// The 2×2 replicator reduces to ẋ = x(1−x)[(A00−A10)y + (A01−A11)(1−y)] and
// ẏ = y(1−y)[(D00−D01)x + (D10−D11)(1−x)] with x, y the weights of strategy 0. The interior
// rest point is x* = (D11−D10)/(D00−D01−D10+D11), y* = (A11−A01)/(A00−A01−A10+A11), and the
// signs of the brackets tell which corner a start converges to.
func TestReplicator2x2Corners(t *testing.T) {
	// Battle of the sexes: x* = 2/3, y* = 1/3 is a saddle; starts with x > 2/3, y > 1/3 go to
	// (strategy 0, strategy 0), starts with x < 2/3, y < 1/3 go to (1, 1).
	xs := (battle.D[1][1] - battle.D[1][0]) / (battle.D[0][0] - battle.D[0][1] - battle.D[1][0] + battle.D[1][1])
	ys := (battle.A[1][1] - battle.A[0][1]) / (battle.A[0][0] - battle.A[0][1] - battle.A[1][0] + battle.A[1][1])
	if math.Abs(xs-2./3) > 1e-15 || math.Abs(ys-1./3) > 1e-15 {
		t.Fatalf("closed form gives x*=%v y*=%v", xs, ys)
	}
	tests := []struct {
		name   string
		g      Bimatrix
		x0, y0 float64
		wantX  float64 // final weight of the attacker's strategy 0
		wantY  float64
	}{
		{"pd from cooperation", prisoners, 0.99, 0.99, 0, 0},
		{"pd from the middle", prisoners, 0.5, 0.5, 0, 0},
		{"pd from defection", prisoners, 0.01, 0.2, 0, 0},
		{"bos upper quadrant", battle, 0.7, 0.4, 1, 1},
		{"bos near corner", battle, 0.95, 0.9, 1, 1},
		{"bos lower quadrant", battle, 0.6, 0.3, 0, 0},
		{"bos near other corner", battle, 0.1, 0.05, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Replicate(tc.g, []float64{tc.x0, 1 - tc.x0}, []float64{tc.y0, 1 - tc.y0}, ReplicatorOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Converged || !res.Stable {
				t.Fatalf("converged=%v stable=%v at t=%v, x=%v y=%v eig=%v", res.Converged, res.Stable, res.T, res.X, res.Y, res.Eigenvalues)
			}
			if math.Abs(res.X[0]-tc.wantX) > 1e-6 || math.Abs(res.Y[0]-tc.wantY) > 1e-6 {
				t.Errorf("ended at x=%v y=%v, want x0=%v y0=%v", res.X, res.Y, tc.wantX, tc.wantY)
			}
			if res.T >= DefaultTCap {
				t.Errorf("took until the cap t=%v", res.T)
			}
		})
	}
}

// At the saddle of the battle of the sexes the velocity is zero: converged but not stable, with
// one positive and one negative eigenvalue ±sqrt(2/9·…) — we check signs only.
func TestReplicatorSaddle(t *testing.T) {
	res, err := Replicate(battle, []float64{2. / 3, 1. / 3}, []float64{1. / 3, 2. / 3}, ReplicatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Converged || res.Stable || res.Steps != 0 {
		t.Fatalf("converged=%v stable=%v steps=%d", res.Converged, res.Stable, res.Steps)
	}
	var pos, neg int
	for _, l := range res.Eigenvalues {
		switch {
		case real(l) > 1e-9:
			pos++
		case real(l) < -1e-9:
			neg++
		}
	}
	if pos != 1 || neg != 1 {
		t.Errorf("eigenvalues %v, want a saddle", res.Eigenvalues)
	}
}

// Matching pennies has a center at (1/2, 1/2): orbits keep H = ln x(1−x) + ln y(1−y) constant.
// The integration must not converge, must stay on the simplex and conserve H closely.
func TestReplicatorCenter(t *testing.T) {
	H := func(x, y []float64) float64 { return math.Log(x[0]*x[1]) + math.Log(y[0]*y[1]) }
	x0, y0 := []float64{0.8, 0.2}, []float64{0.4, 0.6}
	res, err := Replicate(matchingPennies, x0, y0, ReplicatorOptions{TMax: 200, Trajectory: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged || res.Stable || res.T != 200 {
		t.Fatalf("converged=%v stable=%v t=%v", res.Converged, res.Stable, res.T)
	}
	h0 := H(x0, y0)
	var maxDrift float64
	var crossings int
	for i, p := range res.Trajectory {
		checkSimplex(t, "x", p.X)
		checkSimplex(t, "y", p.Y)
		maxDrift = math.Max(maxDrift, math.Abs(H(p.X, p.Y)-h0))
		if i > 0 && (res.Trajectory[i-1].X[0]-0.5)*(p.X[0]-0.5) < 0 {
			crossings++
		}
	}
	if maxDrift > 1e-6 {
		t.Errorf("H drifted by %v", maxDrift)
	}
	if crossings < 10 {
		t.Errorf("x crossed 1/2 only %d times: not orbiting", crossings)
	}
	// The linearization at the center has eigenvalues ±i (∂ẋ/∂y = 4x(1−x) = 1, ∂ẏ/∂x = −1).
	stable, eig, err := Stability(matchingPennies, []float64{.5, .5}, []float64{.5, .5})
	if err != nil {
		t.Fatal(err)
	}
	if stable || len(eig) != 2 {
		t.Fatalf("stable=%v eig=%v", stable, eig)
	}
	for _, l := range eig {
		if math.Abs(real(l)) > 1e-12 || math.Abs(math.Abs(imag(l))-1) > 1e-12 {
			t.Errorf("eigenvalue %v, want ±i", l)
		}
	}
}

// With one defender strategy the attacker follows the logistic equation ẋ = x(1−x)δ whose
// solution is x(t) = x0·e^{δt} / (1 − x0 + x0·e^{δt}): the integrator must match it.
func TestReplicatorLogisticAccuracy(t *testing.T) {
	const delta, x0, tEnd = 1.5, 0.1, 4.0
	g := Bimatrix{A: [][]float64{{delta}, {0}}, D: [][]float64{{0}, {0}}}
	res, err := Replicate(g, []float64{x0, 1 - x0}, nil, ReplicatorOptions{TMax: tEnd, Trajectory: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.T != tEnd {
		t.Fatalf("t = %v", res.T)
	}
	for _, p := range res.Trajectory {
		e := math.Exp(delta * p.T)
		want := x0 * e / (1 - x0 + x0*e)
		if d := math.Abs(p.X[0] - want); d > 1e-8 {
			t.Fatalf("x(%v) = %v, want %v (error %v)", p.T, p.X[0], want, d)
		}
	}
}

// Random games with large payoffs drive many strategies towards extinction fast; every
// recorded point must stay on the simplex within 1e-9.
func TestReplicatorSimplexGuard(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		g := randomGame(seed, 6, 5)
		for _, M := range [][][]float64{g.A, g.D} {
			for _, row := range M {
				for j := range row {
					row[j] = 200*row[j] - 100
				}
			}
		}
		x0 := []float64{0.5, 1e-12, 0.2, 0.1, 0.2 - 1e-12, 0}
		res, err := Replicate(g, x0, nil, ReplicatorOptions{TMax: 50, Trajectory: true, RelTol: 1e-6, AbsTol: 1e-9})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Trajectory {
			checkSimplex(t, "x", p.X)
			checkSimplex(t, "y", p.Y)
		}
		checkSimplex(t, "final x", res.X)
		checkSimplex(t, "final y", res.Y)
		if res.X[5] != 0 {
			t.Errorf("seed %d: extinct strategy came back: %v", seed, res.X[5])
		}
	}
}

func TestProject(t *testing.T) {
	tests := []struct {
		in, want []float64
		clamped  bool
	}{
		{[]float64{0.5, 0.5}, []float64{0.5, 0.5}, false},
		{[]float64{-1e-15, 1}, []float64{0, 1}, true},
		{[]float64{1, 1}, []float64{0.5, 0.5}, false},
		{[]float64{0, 0}, []float64{0, 0}, false},
	}
	for _, tc := range tests {
		p := append([]float64(nil), tc.in...)
		if got := project(p); got != tc.clamped || maxDiff(p, tc.want) > 0 {
			t.Errorf("project(%v) = %v clamped=%v, want %v %v", tc.in, p, got, tc.want, tc.clamped)
		}
	}
}

func TestReplicatorTrajectory(t *testing.T) {
	for _, max := range []int{0, 2, 7, 50} {
		res, err := Replicate(matchingPennies, []float64{0.9, 0.1}, []float64{0.5, 0.5}, ReplicatorOptions{TMax: 30, Trajectory: true, TrajectoryMax: max})
		if err != nil {
			t.Fatal(err)
		}
		tr := res.Trajectory
		if max == 0 && len(tr) != res.Steps+1 {
			t.Errorf("unbounded trajectory has %d points for %d steps", len(tr), res.Steps)
		}
		if max > 0 && len(tr) > max {
			t.Errorf("max %d: %d points", max, len(tr))
		}
		if tr[0].T != 0 || tr[len(tr)-1].T != res.T || tr[0].X[0] != 0.9 {
			t.Errorf("max %d: first %v last %v, end t=%v", max, tr[0], tr[len(tr)-1], res.T)
		}
		for i := 1; i < len(tr); i++ {
			if tr[i].T <= tr[i-1].T {
				t.Fatalf("max %d: times not increasing at %d", max, i)
			}
		}
	}
	res, _ := Replicate(matchingPennies, nil, nil, ReplicatorOptions{TMax: 1})
	if res.Trajectory != nil {
		t.Error("trajectory recorded without asking")
	}
}

func TestReplicatorStopsEarly(t *testing.T) {
	res, err := Replicate(prisoners, nil, nil, ReplicatorOptions{TMax: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Converged || res.T >= 1e6 {
		t.Errorf("converged=%v at t=%v", res.Converged, res.T)
	}
	// With MaxSteps the integration stops without converging and without error.
	res, err = Replicate(matchingPennies, []float64{0.9, 0.1}, nil, ReplicatorOptions{MaxSteps: 5})
	if err != nil || res.Converged || res.Steps > 5 {
		t.Errorf("MaxSteps: err=%v converged=%v steps=%d", err, res.Converged, res.Steps)
	}
}

func TestReplicatorErrors(t *testing.T) {
	tests := []struct {
		name   string
		g      Bimatrix
		x0, y0 []float64
		opt    ReplicatorOptions
		simpl  bool
	}{
		{"bad game", Bimatrix{}, nil, nil, ReplicatorOptions{}, false},
		{"x0 length", prisoners, []float64{1}, nil, ReplicatorOptions{}, true},
		{"y0 sum", prisoners, nil, []float64{0.5, 0.6}, ReplicatorOptions{}, true},
		{"x0 negative", prisoners, []float64{-0.5, 1.5}, nil, ReplicatorOptions{}, true},
		{"x0 NaN", prisoners, []float64{math.NaN(), 1}, nil, ReplicatorOptions{}, true},
		{"negative TMax", prisoners, nil, nil, ReplicatorOptions{TMax: -1}, false},
		{"infinite TMax", prisoners, nil, nil, ReplicatorOptions{TMax: math.Inf(1)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Replicate(tc.g, tc.x0, tc.y0, tc.opt)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.simpl != errors.Is(err, ErrNotSimplex) {
				t.Errorf("error %v: ErrNotSimplex=%v, want %v", err, !tc.simpl, tc.simpl)
			}
		})
	}
}

// A step (six new stages, error norm) and a derivative evaluation allocate nothing.
func TestReplicatorStepAllocs(t *testing.T) {
	g := randomGame(3, 20, 15)
	r := newReplicator(g)
	copy(r.z[:20], Uniform(20))
	copy(r.z[20:], Uniform(15))
	r.deriv(r.z, r.k1)
	allocs := testing.AllocsPerRun(100, func() {
		r.step(0.01, 1e-9, 1e-12)
		project(r.zn[:20])
		r.velocity(r.k7)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per step, want 0", allocs)
	}
}

// The integration loop allocates nothing when no trajectory is recorded, however many steps
// it takes (only the set-up and the final stability check allocate).
func TestReplicatorIntegrateAllocs(t *testing.T) {
	g := randomGame(5, 8, 6)
	for _, tEnd := range []float64{1, 100} {
		var steps int
		allocs := testing.AllocsPerRun(5, func() {
			r := newReplicator(g)
			copy(r.z[:8], Uniform(8))
			copy(r.z[8:], Uniform(6))
			r.deriv(r.z, r.k1)
			var res ReplicatorResult
			rec := trajectoryRecorder{}
			if _, err := r.integrate(tEnd, 1e-300, 1e-9, 1e-12, DefaultMaxSteps, &rec, &res); err != nil {
				t.Fatal(err)
			}
			steps = res.Steps
		})
		// newReplicator allocates the struct and one buffer.
		if allocs > 2 {
			t.Errorf("tEnd=%v: %v allocations for %d steps", tEnd, allocs, steps)
		}
		if steps < 3 {
			t.Errorf("tEnd=%v: only %d steps", tEnd, steps)
		}
	}
}

func TestStabilityVertex(t *testing.T) {
	// At a vertex the eigenvalues are the payoff differences of the unused strategies.
	_, eig, err := Stability(prisoners, []float64{0, 1}, []float64{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{prisoners.A[0][1] - prisoners.A[1][1], prisoners.D[1][0] - prisoners.D[1][1]}
	if len(eig) != 2 {
		t.Fatalf("eig = %v", eig)
	}
	for _, w := range want {
		found := false
		for _, l := range eig {
			if cmplx.Abs(l-complex(w, 0)) < 1e-12 {
				found = true
			}
		}
		if !found {
			t.Errorf("eigenvalue %v missing from %v", w, eig)
		}
	}
	// The cooperation corner is unstable: both unused strategies invade.
	if stable, _, _ := Stability(prisoners, []float64{1, 0}, []float64{1, 0}); stable {
		t.Error("(cooperate, cooperate) reported stable")
	}
	// Near-vertex points are snapped to the vertex.
	if stable, _, _ := Stability(prisoners, []float64{1e-9, 1 - 1e-9}, []float64{0, 1}); !stable {
		t.Error("point next to the stable vertex not stable")
	}
	// 1×1 game: nothing can move.
	if stable, eig, err := Stability(Bimatrix{A: [][]float64{{1}}, D: [][]float64{{1}}}, []float64{1}, []float64{1}); !stable || len(eig) != 0 || err != nil {
		t.Errorf("1×1: %v %v %v", stable, eig, err)
	}
	if _, _, err := Stability(prisoners, []float64{1}, []float64{0, 1}); err == nil {
		t.Error("wrong length accepted")
	}
}

// Rock–paper–scissors against rock–paper–scissors (zero-sum): the interior rest point has
// purely imaginary eigenvalues and is not stable; trajectories stay on the simplex.
func TestReplicatorRPS(t *testing.T) {
	res, err := Replicate(rps, []float64{0.5, 0.3, 0.2}, []float64{0.2, 0.2, 0.6}, ReplicatorOptions{TMax: 100, Trajectory: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stable {
		t.Error("RPS reported stable")
	}
	for _, p := range res.Trajectory {
		checkSimplex(t, "x", p.X)
		checkSimplex(t, "y", p.Y)
	}
	stable, eig, err := Stability(rps, Uniform(3), Uniform(3))
	if err != nil || stable || len(eig) != 4 {
		t.Fatalf("stable=%v eig=%v err=%v", stable, eig, err)
	}
	for _, l := range eig {
		if math.Abs(real(l)) > 1e-9 {
			t.Errorf("eigenvalue %v has a real part", l)
		}
	}
}

// BenchmarkReplicatorRandom100x100 integrates random 100×100 games (payoffs uniform in [0, 1),
// uniform start) until the velocity is below 1e-8 or t = 1000, cycling through eight seeds so
// that games which converge early and games which run to the horizon are both measured.
func BenchmarkReplicatorRandom100x100(b *testing.B) {
	const seeds = 8
	games := make([]Bimatrix, seeds)
	for i := range games {
		games[i] = randomGame(uint64(40+i), 100, 100)
	}
	var steps, converged, runs int
	b.ReportAllocs()
	for b.Loop() {
		res, err := Replicate(games[runs%seeds], nil, nil, ReplicatorOptions{TMax: 1000})
		if err != nil {
			b.Fatal(err)
		}
		steps += res.Steps
		if res.Converged {
			converged++
		}
		runs++
	}
	b.ReportMetric(float64(steps)/float64(runs), "steps/op")
	b.ReportMetric(float64(converged)/float64(runs), "converged/op")
}

func BenchmarkReplicatorStep100x100(b *testing.B) {
	g := randomGame(42, 100, 100)
	r := newReplicator(g)
	copy(r.z[:100], Uniform(100))
	copy(r.z[100:], Uniform(100))
	r.deriv(r.z, r.k1)
	b.ReportAllocs()
	for b.Loop() {
		r.step(0.01, 1e-9, 1e-12)
	}
}

// On a face the unused strategy's payoff difference is an eigenvalue. Von Stengel's 3×2 game
// has the equilibrium x = (0, 1/3, 2/3), y = (1/3, 2/3); row 0 is unused and earns
// (A y)_0 − xᵀA y = 3 − 4 = −1. The other eigenvalues are those of the 2×2 face game, an
// interior point there, so they come as a ± pair and the point is not asymptotically stable.
func TestStabilityFace(t *testing.T) {
	g := Bimatrix{
		A: [][]float64{{3, 3}, {2, 5}, {0, 6}},
		D: [][]float64{{3, 3}, {2, 6}, {3, 1}},
	}
	stable, eig, err := Stability(g, []float64{0, 1. / 3, 2. / 3}, []float64{1. / 3, 2. / 3})
	if err != nil {
		t.Fatal(err)
	}
	if stable || len(eig) != 3 {
		t.Fatalf("stable=%v eig=%v", stable, eig)
	}
	var transversal bool
	var rest []complex128
	for _, l := range eig {
		if cmplx.Abs(l-(-1)) < 1e-12 && !transversal {
			transversal = true
			continue
		}
		rest = append(rest, l)
	}
	if !transversal {
		t.Fatalf("eigenvalue −1 missing from %v", eig)
	}
	if cmplx.Abs(rest[0]+rest[1]) > 1e-12 {
		t.Errorf("face eigenvalues %v are not a ± pair", rest)
	}
}

// A rest point that is not stable: the replicator starts at (cooperate, cooperate) of the
// prisoner's dilemma, does not move (converged at once), and the eigenvalues +2, +2 say that
// defection invades.
func TestReplicatorUnstableVertex(t *testing.T) {
	res, err := Replicate(prisoners, []float64{1, 0}, []float64{1, 0}, ReplicatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Converged || res.Stable || res.Steps != 0 || res.T != 0 {
		t.Fatalf("converged=%v stable=%v steps=%d t=%v", res.Converged, res.Stable, res.Steps, res.T)
	}
	for _, l := range res.Eigenvalues {
		if cmplx.Abs(l-2) > 1e-12 {
			t.Errorf("eigenvalue %v, want 2 (= 5 − 3)", l)
		}
	}
}

// scaleGame returns c·g + shift (each player's matrix shifted by its own constant).
func scaleGame(g Bimatrix, c, shiftA, shiftD float64) Bimatrix {
	sc := func(M [][]float64, shift float64) [][]float64 {
		out := make([][]float64, len(M))
		for i, row := range M {
			out[i] = make([]float64, len(row))
			for j, v := range row {
				out[i][j] = c*v + shift
			}
		}
		return out
	}
	return Bimatrix{A: sc(g.A, shiftA), D: sc(g.D, shiftD)}
}

// A game with payoffs in the hundreds to a thousand, shaped like the case study's stage games
// (one attack barely better than the other, the defender's choice clear), must reach its strict
// Nash corner within a step budget with the default options: the convergence test is relative
// to the payoff range and dying strategies are snapped to 0 once tiny, so the stiff decay of
// the losing strategies does not hold the step size down for ever.
func TestReplicatorLargePayoffsCorner(t *testing.T) {
	g := Bimatrix{
		A: [][]float64{{612, 455, 701}, {618, 470, 690}, {300, 250, 280}},
		D: [][]float64{{-120, 380, 95}, {40, 610, 210}, {-300, 150, 0}},
	}
	// Against defense 2, attack 2 beats attacks 1 and 3 (470 > 455 > 250); against attack 2
	// defense 2 beats 1 and 3 (610 > 210 > 40): (2, 2) is a strict Nash equilibrium.
	const budget = 5000
	for _, start := range [][2][]float64{
		{{0.3, 0.4, 0.3}, {0.5, 0.2, 0.3}},
		{{0.1, 0.8, 0.1}, {0.3, 0.4, 0.3}},
		{nil, nil},
	} {
		res, err := Replicate(g, start[0], start[1], ReplicatorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Converged || !res.Stable {
			t.Fatalf("start %v: converged=%v stable=%v at t=%v after %d steps, x=%v y=%v", start, res.Converged, res.Stable, res.T, res.Steps, res.X, res.Y)
		}
		if res.X[1] < 1-1e-6 || res.Y[1] < 1-1e-6 {
			t.Errorf("start %v: end point x=%v y=%v, want the corner (2, 2)", start, res.X, res.Y)
		}
		if res.Steps+res.Rejected > budget {
			t.Errorf("start %v: %d steps + %d rejected, budget %d", start, res.Steps, res.Rejected, budget)
		}
		if res.Snapped == 0 {
			t.Errorf("start %v: no component snapped", start)
		}
		t.Logf("start %v: t=%.4g, %d steps, %d rejected, %d snapped", start, res.T, res.Steps, res.Rejected, res.Snapped)
		checkSimplex(t, "x", res.X)
		checkSimplex(t, "y", res.Y)
	}
}

// Multiplying a game by c and shifting each player's payoffs changes only the time scale of
// the replicator: the end point and (with the scale-relative convergence test) the number of
// steps must stay the same.
func TestReplicatorScaleInvariance(t *testing.T) {
	g := Bimatrix{
		A: [][]float64{{0.61, 0.45}, {0.62, 0.47}},
		D: [][]float64{{-0.1, 0.4}, {0.05, 0.6}},
	}
	x0, y0 := []float64{0.3, 0.7}, []float64{0.8, 0.2}
	base, err := Replicate(g, x0, y0, ReplicatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !base.Converged {
		t.Fatalf("unit game did not converge: t=%v steps=%d", base.T, base.Steps)
	}
	for _, c := range []float64{10, 1000} {
		big := scaleGame(g, c, 250, -40)
		res, err := Replicate(big, x0, y0, ReplicatorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Converged || !samePoint(res.X, res.Y, base.X, base.Y) {
			t.Errorf("c=%v: converged=%v x=%v y=%v, unit game x=%v y=%v", c, res.Converged, res.X, res.Y, base.X, base.Y)
		}
		if lo, hi := base.Steps/2, base.Steps*2; res.Steps < lo || res.Steps > hi {
			t.Errorf("c=%v: %d steps, unit game %d", c, res.Steps, base.Steps)
		}
		if want := base.T / c; math.Abs(res.T-want) > 0.5*want {
			t.Errorf("c=%v: converged at t=%v, want about %v (unit game t=%v)", c, res.T, want, base.T)
		}
	}
}

// Snapping must not end the orbits of a cyclic game: in matching pennies no strategy is
// dominated, so even an orbit that passes close to the boundary keeps cycling.
func TestReplicatorSnapKeepsCycles(t *testing.T) {
	g := Bimatrix{A: [][]float64{{1, -1}, {-1, 1}}, D: [][]float64{{-1, 1}, {1, -1}}}
	res, err := Replicate(g, []float64{0.999, 0.001}, []float64{0.999, 0.001}, ReplicatorOptions{TMax: 100, RelTol: 1e-10, AbsTol: 1e-14})
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged || res.Snapped != 0 {
		t.Errorf("converged=%v snapped=%d at t=%v, x=%v y=%v", res.Converged, res.Snapped, res.T, res.X, res.Y)
	}
}
