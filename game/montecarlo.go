package game

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// MonteCarloResult compares the cumulative defense benefit of MTTEGDM with a traditional
// evolutionary game over independent runs (Figure 7).
type MonteCarloResult struct {
	Runs            int       `json:"runs"`
	Seed            uint64    `json:"seed"`
	Noise           float64   `json:"noise"`
	MTTEGDM         []float64 `json:"mttegdm"`     // defense benefit of each run
	Traditional     []float64 `json:"traditional"` // same runs, traditional model
	CumMTTEGDM      []float64 `json:"cumulative_mttegdm"`
	CumTraditional  []float64 `json:"cumulative_traditional"`
	MeanMTTEGDM     float64   `json:"mean_mttegdm"`
	MeanTraditional float64   `json:"mean_traditional"`
	Wins            int       `json:"mttegdm_wins"` // runs where MTTEGDM's benefit is higher
	Ties            int       `json:"ties"`
	// MeanSignalCost is the signal camouflage cost (SCC) MTTEGDM paid per run on average: the
	// part of the gap that the traditional model, which sends no signal, does not pay.
	MeanSignalCost  float64  `json:"mean_signal_cost"`
	TraditionalDefs []string `json:"traditional_defenses"` // per stage
}

// MonteCarlo runs the Figure 7 comparison. Each run draws (from a PCG stream seeded with seed
// and the run number) a perturbed world (β and costs scaled by U(1−noise, 1+noise)), the
// defender's type from the prior and an attack path through the Markov chain of stages. In
// every stage each model deploys the defense it chose on the nominal model, the attacker
// best-responds to the deployed defense under its belief, and the defender's realised MTTEGDM
// payoff in the perturbed world is added to that model's benefit. MTTEGDM sends its chosen
// signal; the traditional model sends none, and chose its defense from a game without the
// MTD-specific terms (see traditionalGame).
func MonteCarlo(m *Model, runs int, seed uint64) (*MonteCarloResult, error) {
	if runs < 1 {
		return nil, fmt.Errorf("game: montecarlo needs at least one run, got %d", runs)
	}
	c, err := compile(m)
	if err != nil {
		return nil, err
	}
	sol, err := c.solve()
	if err != nil {
		return nil, err
	}
	nt := len(m.Types)
	// MTTEGDM's decision per stage and type: (signal, defense index).
	type decision struct{ sig, y int }
	mtd := make([][]decision, len(c.stages))
	trad := make([]int, len(c.stages))
	priors := make([][]float64, len(c.stages))
	res := &MonteCarloResult{Runs: runs, Seed: seed, Noise: m.MonteCarlo.Noise}
	for k := range c.stages {
		s := &c.stages[k]
		st := sol.Stages[k]
		priors[k] = make([]float64, nt)
		for i, t := range m.Types {
			priors[k][i] = st.Prior[t.ID]
		}
		mtd[k] = make([]decision, nt)
		for t := 0; t < nt; t++ {
			opts := st.Options[t*nt : t*nt+nt]
			best := 0
			for sig, o := range opts {
				if o.Best {
					best = sig
					break
				}
				if o.DefenseGain > opts[best].DefenseGain {
					best = sig
				}
			}
			mtd[k][t] = decision{sig: best, y: argmax(st.Options[t*nt+best].Y)}
		}
		g := c.traditionalGame(s, priors[k])
		o, err := outcome(g, g.A, m.Replicator.InitialMixes, m.Replicator.TMax)
		if err != nil {
			return nil, err
		}
		trad[k] = argmax(o.Y)
		res.TraditionalDefs = append(res.TraditionalDefs, s.defenses[trad[k]].ID)
	}
	for r := 0; r < runs; r++ {
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		w, err := compile(perturb(m, rng, m.MonteCarlo.Noise))
		if err != nil {
			return nil, err
		}
		t := drawIndex(rng.Float64(), priors[0])
		var bm, bt, scc float64
		for k := 0; k >= 0; {
			s := &w.stages[k]
			d := mtd[k][t]
			bel := Posterior(priors[k], d.sig, m.Signaling.Credibility, m.Signaling.Attenuation[k])
			x := w.attackerReply(s, d.sig, d.y, bel)
			bm += w.defenderPayoff(s, t, d.sig, x, d.y)
			scc += m.Types[d.sig].SignalCost
			xt := w.attackerReply(s, NoSignal, trad[k], priors[k])
			bt += w.defenderPayoff(s, t, NoSignal, xt, trad[k])
			k = w.nextStage(k, rng.Float64())
		}
		res.MeanSignalCost += scc / float64(runs)
		res.MTTEGDM = append(res.MTTEGDM, bm)
		res.Traditional = append(res.Traditional, bt)
		switch {
		case math.Abs(bm-bt) <= 1e-9*math.Max(1, math.Abs(bm)):
			res.Ties++
		case bm > bt:
			res.Wins++
		}
	}
	var cm, ct float64
	for i := range res.MTTEGDM {
		cm += res.MTTEGDM[i]
		ct += res.Traditional[i]
		res.CumMTTEGDM = append(res.CumMTTEGDM, cm)
		res.CumTraditional = append(res.CumTraditional, ct)
	}
	res.MeanMTTEGDM, res.MeanTraditional = cm/float64(runs), ct/float64(runs)
	return res, nil
}

// attackerReply is the attack with the highest expected payoff under belief against defense y.
func (c *compiled) attackerReply(s *stageData, sig, y int, belief []float64) int {
	best, bx := math.Inf(-1), 0
	for x := range s.attacks {
		var u float64
		for j, b := range belief {
			if b != 0 {
				u += b * c.attackerPayoff(s, j, sig, x, y, belief)
			}
		}
		if u > best {
			best, bx = u, x
		}
	}
	return bx
}

// nextStage draws the stage after k from the (normalised) transitions; -1 ends the attack.
func (c *compiled) nextStage(k int, u float64) int {
	var acc float64
	for _, e := range c.next[k] {
		acc += e.p
		if u < acc {
			return e.to
		}
	}
	return -1
}

func drawIndex(u float64, p []float64) int {
	var acc float64
	for i, v := range p {
		acc += v
		if u < acc {
			return i
		}
	}
	return len(p) - 1
}

// traditionalGame is the stage game of a classic attack–defense evolutionary game without the
// MTD-specific analysis: equal attribute weights (no three-way weighting), no lateral
// infection, no failure discount, no reconfiguration cost, no signals, no misjudgment risk and
// no third parties; β and the defense cost are the prior-weighted averages over types.
func (c *compiled) traditionalGame(s *stageData, prior []float64) Bimatrix {
	var total float64
	for _, v := range s.values {
		total += v
	}
	m, n := len(s.attacks), len(s.defenses)
	g := Bimatrix{A: make([][]float64, m), D: make([][]float64, m)}
	for x := 0; x < m; x++ {
		g.A[x] = make([]float64, n)
		g.D[x] = make([]float64, n)
		for y := 0; y < n; y++ {
			var beta, cost float64
			for t, p := range prior {
				beta += p * s.success[t][x][y]
				cost += p * DefenseCost(s.defenses[y], c.m.Types[t].Cost)
			}
			th := AttackSuccess(s.attacks[x].Detection, beta)
			g.A[x][y] = s.dev.Significance*th*total/3 - s.attacks[x].Cost
			g.D[x][y] = s.dev.Significance*(1-th)*total*2/3 - cost
		}
	}
	return g
}

// perturb copies m with β entries and attack/defense costs scaled by U(1−eps, 1+eps); β stays
// in [0,1].
func perturb(m *Model, rng *rand.Rand, eps float64) *Model {
	f := func() float64 { return 1 + eps*(2*rng.Float64()-1) }
	w := *m
	w.Attacks = append([]Attack(nil), m.Attacks...)
	for i := range w.Attacks {
		w.Attacks[i].Cost *= f()
	}
	w.Defenses = append([]Defense(nil), m.Defenses...)
	for i := range w.Defenses {
		w.Defenses[i].CostHigh *= f()
		w.Defenses[i].CostLow *= f()
	}
	w.Stages = append([]Stage(nil), m.Stages...)
	for k := range w.Stages {
		succ := make(map[string][][]float64, len(m.Stages[k].Success))
		for _, t := range sortedKeys(m.Stages[k].Success) {
			mat := m.Stages[k].Success[t]
			cp := make([][]float64, len(mat))
			for i, row := range mat {
				cp[i] = make([]float64, len(row))
				for j, v := range row {
					cp[i][j] = clamp01(v * f())
				}
			}
			succ[t] = cp
		}
		w.Stages[k].Success = succ
	}
	return &w
}
