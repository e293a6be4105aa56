package game

import (
	"fmt"
	"math"
)

// Equilibrium kinds of the signaling layer.
const (
	Separating = "separating"
	Pooling    = "pooling"
	NoEquil    = "none"
)

// Solution is the result of Algorithm 1 on a whole model: one entry per stage.
type Solution struct {
	// Reading is the reading the solution was computed under (the model's, defaults filled in).
	Reading Reading       `json:"reading"`
	Stages  []StageResult `json:"stages"`
}

// StageResult is the chosen defender type, signal and strategies of one stage with their
// gains, and everything needed to explain the choice.
type StageResult struct {
	Stage        int     `json:"stage"`
	ID           string  `json:"id"`
	Alpha        float64 `json:"alpha"`
	Beta         float64 `json:"beta"`
	DefenderType string  `json:"defender_type"`
	Signal       string  `json:"signal"`
	Defense      string  `json:"defense"`
	Attack       string  `json:"attack"`
	AttackGain   float64 `json:"attack_gain"`
	DefenseGain  float64 `json:"defense_gain"`
	Equilibrium  string  `json:"equilibrium"`

	// Nash reports whether the replicator's stable point is a Nash equilibrium of the
	// stage game (checked with IsNash).
	Nash bool `json:"nash"`
	// Stable reports whether the point is an asymptotically stable rest point.
	Stable bool      `json:"stable"`
	X      []float64 `json:"x"`
	Y      []float64 `json:"y"`
	// Discounted gains are the Markov objective R^k = U^k + Σ_h ϑ^(h−k)·η(h|k)·R^h.
	DiscountedAttackGain  float64            `json:"discounted_attack_gain"`
	DiscountedDefenseGain float64            `json:"discounted_defense_gain"`
	Delta                 float64            `json:"delta"`
	Prior                 map[string]float64 `json:"prior"`
	Posterior             map[string]float64 `json:"posterior"`
	Weighting             map[string]string  `json:"weighting"`
	Xi                    float64            `json:"xi"`
	Options               []Option           `json:"options"`
}

// Option is the evolutionary outcome of one (defender type, signal) stage game.
type Option struct {
	DefenderType string    `json:"defender_type"`
	Signal       string    `json:"signal"`
	Belief       []float64 `json:"belief"`
	Found        bool      `json:"equilibrium_found"` // a stable point that is also Nash
	Stable       bool      `json:"stable"`
	Nash         bool      `json:"nash"`
	Reached      int       `json:"reached"` // initial mixes that ended at this point
	X            []float64 `json:"x"`
	Y            []float64 `json:"y"`
	Defense      string    `json:"defense"`
	Attack       string    `json:"attack"`
	AttackGain   float64   `json:"attack_gain"`
	DefenseGain  float64   `json:"defense_gain"`
	Best         bool      `json:"best_for_type"`
	game         Bimatrix
	trueA        [][]float64
}

// Solve runs Algorithm 1 of the paper on m: for every stage, build the stage game of each
// defender type and signal, evolve it with the replicator dynamics from every initial mix,
// keep the stable Nash points, pick each type's best signal and the overall best defense,
// pass the attacker's posterior on as the next stage's prior, and finally add the
// Markov-discounted continuation values.
func Solve(m *Model) (*Solution, error) {
	c, err := compile(m)
	if err != nil {
		return nil, err
	}
	return c.solve()
}

func (c *compiled) solve() (*Solution, error) {
	m := c.m
	prior := make([]float64, len(m.Types))
	for i, t := range m.Types {
		prior[i] = t.Prior
	}
	sol := &Solution{Reading: c.reading, Stages: make([]StageResult, len(c.stages))}
	for k := range c.stages {
		s := &c.stages[k]
		res, post, err := c.solveStage(s, prior)
		if err != nil {
			return nil, fmt.Errorf("game: stage %s: %w", s.st.ID, err)
		}
		sol.Stages[k] = res
		prior = post
	}
	c.discount(sol)
	return sol, nil
}

func (c *compiled) solveStage(s *stageData, prior []float64) (StageResult, []float64, error) {
	m := c.m
	delta := m.Signaling.Attenuation[s.k]
	res := StageResult{
		Stage: s.k + 1, ID: s.st.ID, Alpha: s.alpha, Beta: s.beta, Delta: delta, Xi: s.xi,
		Prior: c.typeMap(prior), Weighting: map[string]string{},
	}
	for x, a := range s.attacks {
		res.Weighting[a.ID] = s.weighting[x].String()
	}
	nt := len(m.Types)
	bestSig := make([]int, nt)
	for t := 0; t < nt; t++ {
		bestSig[t] = -1
		for sig := 0; sig < nt; sig++ {
			belief := Posterior(prior, sig, m.Signaling.Credibility, delta)
			opt, err := c.evolve(s, t, sig, belief)
			if err != nil {
				return res, nil, err
			}
			res.Options = append(res.Options, opt)
			if opt.Found && (bestSig[t] < 0 || opt.DefenseGain > res.Options[t*nt+bestSig[t]].DefenseGain) {
				bestSig[t] = sig
			}
		}
		if bestSig[t] >= 0 {
			res.Options[t*nt+bestSig[t]].Best = true
		}
	}
	res.Equilibrium = classifySignals(bestSig)
	// Choose the outcome with the highest defense gain among the types' best options, or
	// among all options when no type has a stable Nash outcome.
	chosen := -1
	for t := 0; t < nt; t++ {
		if bestSig[t] < 0 {
			continue
		}
		i := t*nt + bestSig[t]
		if chosen < 0 || res.Options[i].DefenseGain > res.Options[chosen].DefenseGain {
			chosen = i
		}
	}
	if chosen < 0 {
		for i := range res.Options {
			if chosen < 0 || res.Options[i].DefenseGain > res.Options[chosen].DefenseGain {
				chosen = i
			}
		}
	}
	o := res.Options[chosen]
	res.DefenderType, res.Signal = o.DefenderType, o.Signal
	res.Defense, res.Attack = o.Defense, o.Attack
	res.AttackGain, res.DefenseGain = o.AttackGain, o.DefenseGain
	res.Nash, res.Stable = o.Nash, o.Stable
	res.X, res.Y = o.X, o.Y
	post := Posterior(prior, chosen%nt, m.Signaling.Credibility, delta)
	res.Posterior = c.typeMap(post)
	return res, post, nil
}

// classifySignals names the profile of the types' best signals (index per type, −1 when the
// type has no stable Nash outcome under any signal): pooling when every type sends the same
// signal, separating when they differ, none when some type has no outcome. Which signal a type
// sends does not matter, only whether the types can be told apart by it: a high type and a
// low type both sending m_L pool (the attacker learns nothing from the signal that it could
// not from the prior, were it to know the profile), a high type sending m_L and a low type
// sending m_H separate, even though each signal names the other type.
func classifySignals(best []int) string {
	out := Pooling
	for _, b := range best {
		if b < 0 {
			return NoEquil
		}
		if b != best[0] {
			out = Separating
		}
	}
	return out
}

// evolve runs the replicator on the (t, sig) stage game from every initial mix and keeps the
// stable Nash end point with the highest defender payoff (Algorithm 1, steps 7.4–7.7).
func (c *compiled) evolve(s *stageData, t, sig int, belief []float64) (Option, error) {
	m := c.m
	g := c.stageGame(s, t, sig, belief)
	trueA := c.trueAttackerPayoffs(s, t, sig, belief)
	opt := Option{
		DefenderType: m.Types[t].ID, Signal: m.Types[sig].Signal, Belief: belief,
		game: g, trueA: trueA,
	}
	o, err := outcome(g, trueA, m.Replicator.InitialMixes, m.Replicator.TMax)
	if err != nil {
		return opt, err
	}
	opt.Found, opt.Stable, opt.Nash, opt.Reached = o.Found, o.Stable, o.Nash, o.Reached
	opt.X, opt.Y, opt.AttackGain, opt.DefenseGain = o.X, o.Y, o.AttackGain, o.DefenseGain
	opt.Attack = s.attacks[argmax(opt.X)].ID
	opt.Defense = s.defenses[argmax(opt.Y)].ID
	return opt, nil
}

// nashTol is the IsNash tolerance on payoffs normalised by normalizeGame.
const nashTol = 1e-6

// replicatorOptions are the integration settings for normalised stage games: the end point
// is accepted when the velocity norm falls below 1e-5 (a tenth of the paper's convergence error
// ε = 1e-4); snapMix then drops the strategies that are dying out.
func replicatorOptions(tmax float64) ReplicatorOptions {
	return ReplicatorOptions{TMax: tmax, Tol: 1e-5, RelTol: 1e-5, AbsTol: 1e-8}
}

// normalizeGame shifts each payoff matrix so its minimum is 0 and divides both by the larger
// of the two ranges. Adding a constant to a player's payoffs does not change the replicator
// dynamics, and a common positive factor only rescales time, so the orbits, rest points and
// their stability are those of g; the payoff differences of order 1 keep the integrator's
// steps few.
func normalizeGame(g Bimatrix) Bimatrix {
	lo := func(M [][]float64) (mn, mx float64) {
		mn, mx = math.Inf(1), math.Inf(-1)
		for _, row := range M {
			for _, v := range row {
				mn, mx = math.Min(mn, v), math.Max(mx, v)
			}
		}
		return mn, mx
	}
	aMin, aMax := lo(g.A)
	dMin, dMax := lo(g.D)
	f := math.Max(aMax-aMin, dMax-dMin)
	if !(f > 0) || math.IsInf(f, 0) {
		f = 1
	}
	sc := func(M [][]float64, shift float64) [][]float64 {
		out := make([][]float64, len(M))
		for i, row := range M {
			out[i] = make([]float64, len(row))
			for j, v := range row {
				out[i][j] = (v - shift) / f
			}
		}
		return out
	}
	return Bimatrix{A: sc(g.A, aMin), D: sc(g.D, dMin)}
}

// outcome evolves g from every mix and returns the stable Nash end point with the highest
// defender payoff, or the best Nash equilibrium when none is stable.
func outcome(g Bimatrix, trueA [][]float64, mixes [][]float64, tmax float64) (Option, error) {
	m, n := len(g.A), len(g.A[0])
	gs := normalizeGame(g)
	var opt Option
	have := false
	if !hasStrictPureNash(g) {
		// Only strict Nash equilibria can be asymptotically stable under the two-population
		// replicator dynamics (Ritzberger and Weibull 1995), so no start can end at a stable
		// point: skip the integration and go to the Nash fallback below.
		mixes = nil
	}
	for _, mix := range mixes {
		x0, y0 := MixVectors(mix, m, n)
		r, err := Replicate(gs, x0, y0, replicatorOptions(tmax))
		if err != nil {
			return opt, err
		}
		// The replicator stops once the velocity is below the convergence error; the orbit is
		// then judged on the face it is converging to (components below snapTol dropped).
		x, y := snapMix(r.X), snapMix(r.Y)
		stable := false
		if r.Converged {
			if stable, _, err = Stability(gs, x, y); err != nil {
				return opt, err
			}
		}
		nash := IsNash(gs, x, y, nashTol)
		r.X, r.Y = x, y
		found := stable && nash
		dg := expected(g.D, r.X, r.Y)
		if have && samePoint(opt.X, opt.Y, r.X, r.Y) {
			opt.Reached++
			continue
		}
		if !have || (found && !opt.Found) || (found == opt.Found && dg > opt.DefenseGain) {
			have = true
			opt.Found, opt.Stable, opt.Nash = found, stable, nash
			opt.X, opt.Y = r.X, r.Y
			opt.DefenseGain = dg
			opt.AttackGain = expected(trueA, r.X, r.Y)
			opt.Reached = 1
		}
	}
	if !opt.Found {
		// No initial mix reached a stable Nash point (e.g. a cyclic 2×2 game whose replicator
		// orbits circle an interior equilibrium). Report the Nash equilibrium with the highest
		// defender payoff instead: the time average of such orbits is that equilibrium.
		eqs, err := NashEquilibria(g)
		if err != nil {
			return opt, err
		}
		first := true
		for _, e := range eqs {
			if first || e.DefenderPayoff > opt.DefenseGain {
				first = false
				opt.X, opt.Y = e.X, e.Y
				opt.Nash, opt.Stable = true, false
				opt.DefenseGain = e.DefenderPayoff
				opt.AttackGain = expected(trueA, e.X, e.Y)
				opt.Reached = 0
			}
		}
	}
	return opt, nil
}

// hasStrictPureNash reports whether some pure profile (i, j) is a strict Nash equilibrium of g:
// i is the attacker's unique best reply to j and j the defender's unique best reply to i.
func hasStrictPureNash(g Bimatrix) bool {
	for i, row := range g.A {
		for j := range row {
			strict := true
			for k := range g.A {
				if k != i && g.A[k][j] >= g.A[i][j] {
					strict = false
					break
				}
			}
			for l := range g.D[i] {
				if !strict {
					break
				}
				if l != j && g.D[i][l] >= g.D[i][j] {
					strict = false
				}
			}
			if strict {
				return true
			}
		}
	}
	return false
}

// snapTol is the mix component below which a converged orbit counts as having left the
// strategy: with velocity tolerance 1e-5 and transversal eigenvalues above 1e-2 (normalised
// games), the remaining mass on a dying strategy is below 1e-3.
const snapTol = 1e-3

func snapMix(p []float64) []float64 {
	q := append([]float64(nil), p...)
	var s float64
	for i, v := range q {
		if v < snapTol {
			q[i] = 0
		}
		s += q[i]
	}
	if s > 0 {
		for i := range q {
			q[i] /= s
		}
	}
	return q
}

// discount adds the Markov continuation values, last stage first:
// R^k = U^k + Σ_{h ∈ next(k)} ϑ^(h−k)·η(S_h|S_k)·R^h.
func (c *compiled) discount(sol *Solution) {
	theta := c.m.Markov.Discount
	for k := len(sol.Stages) - 1; k >= 0; k-- {
		st := &sol.Stages[k]
		st.DiscountedDefenseGain, st.DiscountedAttackGain = st.DefenseGain, st.AttackGain
		for _, e := range c.next[k] {
			w := math.Pow(theta, float64(e.to-k)) * e.p
			st.DiscountedDefenseGain += w * sol.Stages[e.to].DiscountedDefenseGain
			st.DiscountedAttackGain += w * sol.Stages[e.to].DiscountedAttackGain
		}
	}
}

func (c *compiled) typeMap(v []float64) map[string]float64 {
	out := make(map[string]float64, len(v))
	for i, t := range c.m.Types {
		out[t.ID] = v[i]
	}
	return out
}

// MixVectors expands an [x, y] initial mix: x on the first attack and y on the first defense,
// the rest of each mass spread evenly over the other strategies.
func MixVectors(mix []float64, m, n int) (x0, y0 []float64) {
	return spread(mix[0], m), spread(mix[1], n)
}

func spread(first float64, n int) []float64 {
	v := make([]float64, n)
	if n == 1 {
		v[0] = 1
		return v
	}
	v[0] = first
	for i := 1; i < n; i++ {
		v[i] = (1 - first) / float64(n-1)
	}
	return v
}

func expected(M [][]float64, x, y []float64) float64 {
	var s float64
	for i, row := range M {
		for j, v := range row {
			s += x[i] * v * y[j]
		}
	}
	return s
}

func samePoint(x1, y1, x2, y2 []float64) bool {
	const eps = 1e-6
	for i := range x1 {
		if math.Abs(x1[i]-x2[i]) > eps {
			return false
		}
	}
	for i := range y1 {
		if math.Abs(y1[i]-y2[i]) > eps {
			return false
		}
	}
	return true
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Trajectory is the evolution of one stage game from one initial mix: the probability of the
// stage's first attack (x) and first defense (y) over time.
type Trajectory struct {
	X0, Y0 float64
	T      []float64
	X, Y   []float64
}

// StageEvolution evolves stage k (1-based) for defender type typeID sending signal from each
// [x, y] mix and returns the trajectories (Figure 6), plus the stage's attack and defense ids.
// Time is in units of the game normalised by normalizeGame (payoff range 1). The attacker's belief is the one of
// the solved stage (its prior carried from the earlier stages).
func StageEvolution(m *Model, k int, typeID, signal string, mixes [][]float64) (attacks, defenses []string, out []Trajectory, err error) {
	c, s, t, sig, belief, err := solvedStage(m, k, typeID, signal)
	if err != nil {
		return nil, nil, nil, err
	}
	g := c.stageGame(s, t, sig, belief)
	gs := normalizeGame(g)
	for _, mix := range mixes {
		x0, y0 := MixVectors(mix, len(s.attacks), len(s.defenses))
		opt := replicatorOptions(m.Replicator.TMax)
		opt.Trajectory = true
		r, err := Replicate(gs, x0, y0, opt)
		if err != nil {
			return nil, nil, nil, err
		}
		tr := Trajectory{X0: mix[0], Y0: mix[1]}
		for _, p := range r.Trajectory {
			tr.T = append(tr.T, p.T)
			tr.X = append(tr.X, p.X[0])
			tr.Y = append(tr.Y, p.Y[0])
		}
		out = append(out, tr)
	}
	return s.st.Attacks, s.st.Defenses, out, nil
}

// MixTrajectory is the evolution of one stage game with the whole mixes: at each time T[i]
// X[i] is the attacker's mix over the stage's attacks and Y[i] the defender's over its
// defenses.
type MixTrajectory struct {
	T    []float64
	X, Y [][]float64
}

// StageMixEvolution is StageEvolution from the one start (x0 over the stage's attacks, y0
// over its defenses; nil: uniform) recording the whole mixes, at most about maxPoints of them
// (0: every accepted step). It is what the dashboard's evolution plot shows: how the
// proportions of every attack and defense strategy evolve under the replicator dynamics of
// the stage game the defender type plays with the signal.
func StageMixEvolution(m *Model, k int, typeID, signal string, x0, y0 []float64, maxPoints int) (attacks, defenses []string, tr MixTrajectory, err error) {
	c, s, t, sig, belief, err := solvedStage(m, k, typeID, signal)
	if err != nil {
		return nil, nil, tr, err
	}
	if x0 == nil {
		x0 = Uniform(len(s.attacks))
	}
	if y0 == nil {
		y0 = Uniform(len(s.defenses))
	}
	opt := replicatorOptions(m.Replicator.TMax)
	opt.Trajectory, opt.TrajectoryMax = true, maxPoints
	r, err := Replicate(normalizeGame(c.stageGame(s, t, sig, belief)), x0, y0, opt)
	if err != nil {
		return nil, nil, tr, err
	}
	for _, p := range r.Trajectory {
		tr.T = append(tr.T, p.T)
		tr.X = append(tr.X, p.X)
		tr.Y = append(tr.Y, p.Y)
	}
	return s.st.Attacks, s.st.Defenses, tr, nil
}

// solvedStage compiles and solves m and returns stage k (1-based), the indexes of defender
// type typeID and of signal, and the attacker's belief after that signal at that stage (its
// prior carried from the earlier stages of the solution).
func solvedStage(m *Model, k int, typeID, signal string) (c *compiled, s *stageData, t, sig int, belief []float64, err error) {
	if c, err = compile(m); err != nil {
		return nil, nil, 0, 0, nil, err
	}
	if k < 1 || k > len(c.stages) {
		return nil, nil, 0, 0, nil, fmt.Errorf("game: stage %d out of range 1..%d", k, len(c.stages))
	}
	t, sig = -1, -1
	for i, tp := range m.Types {
		if tp.ID == typeID {
			t = i
		}
		if tp.Signal == signal {
			sig = i
		}
	}
	if t < 0 || sig < 0 {
		return nil, nil, 0, 0, nil, fmt.Errorf("game: unknown defender type %q or signal %q", typeID, signal)
	}
	sol, err := c.solve()
	if err != nil {
		return nil, nil, 0, 0, nil, err
	}
	s = &c.stages[k-1]
	st := sol.Stages[k-1]
	prior := make([]float64, len(m.Types))
	for i, tp := range m.Types {
		prior[i] = st.Prior[tp.ID]
	}
	return c, s, t, sig, Posterior(prior, sig, m.Signaling.Credibility, st.Delta), nil
}

// Agreement counts where a solution agrees with the paper's published result (the stages'
// `expected` blocks, Table 11).
type Agreement struct {
	Stages   int `json:"stages"`   // stages with a published result
	Types    int `json:"types"`    // chosen defender type equal to the paper's
	Signals  int `json:"signals"`  // chosen signal equal to the paper's
	Attacks  int `json:"attacks"`  // chosen attack equal to the paper's
	Defenses int `json:"defenses"` // chosen defense equal to the paper's, where comparable
	// Comparable is the number of stages whose published defense is one of the stage's own
	// (Table 11 names defenses of other stages in S3 and S4, and an undefined d12 in S5).
	Comparable int `json:"comparable"`
}

// Reproduces reports whether the solution matches the paper in type and signal in every
// published stage and in the defense wherever the defense is comparable.
func (a Agreement) Reproduces() bool {
	return a.Stages > 0 && a.Types == a.Stages && a.Signals == a.Stages && a.Defenses == a.Comparable
}

// CompareExpected compares sol, a solution of m, with m's published results.
func CompareExpected(m *Model, sol *Solution) Agreement {
	var a Agreement
	for i, st := range m.Stages {
		e := st.Expected
		if e == nil || i >= len(sol.Stages) {
			continue
		}
		s := sol.Stages[i]
		a.Stages++
		if s.DefenderType == e.Type {
			a.Types++
		}
		if s.Signal == e.Signal {
			a.Signals++
		}
		if s.Attack == e.Attack {
			a.Attacks++
		}
		for _, d := range st.Defenses {
			if d == e.Defense {
				a.Comparable++
				if s.Defense == e.Defense {
					a.Defenses++
				}
			}
		}
	}
	return a
}
