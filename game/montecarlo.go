package game

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
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
	// MeanSignalCost is the signal camouflage cost (SCC) MTTEGDM paid per run on average.
	MeanSignalCost float64 `json:"mean_signal_cost"`
	// MeanUnsignalled is MTTEGDM's defenses deployed without any signal, in the same runs
	// (same world, type, path and attacker): MeanMTTEGDM − MeanUnsignalled is the net effect of
	// the signaling layer, the attacker's changed choices minus the signal cost.
	MeanUnsignalled float64   `json:"mean_unsignalled"`
	Unsignalled     []float64 `json:"unsignalled"` // per run
	// MeanTraditionalTableBeta is a second baseline: the traditional game given Table 8's β
	// for every defense (it then knows the reconfiguring defenses' success without modelling
	// it). It separates the share of the gap due to the MTD success analysis.
	MeanTraditionalTableBeta float64   `json:"mean_traditional_table_beta"`
	TraditionalTableBeta     []float64 `json:"traditional_table_beta"` // per run
	WinsTableBeta            int       `json:"mttegdm_wins_table_beta"`
	TraditionalDefs          []string  `json:"traditional_defenses"` // per stage
	TraditionalTableBetaDefs []string  `json:"traditional_table_beta_defenses"`
	// MTTEGDMDecisions lists MTTEGDM's signal/defense per stage and defender type, e.g.
	// "high:mL/d2 low:mL/d2".
	MTTEGDMDecisions []string `json:"mttegdm_decisions"`
}

// MonteCarlo runs the Figure 7 comparison. Each model decides with its own game, once, on the
// nominal model; both decisions are then evaluated in the same true environment, the full
// MTTEGDM world, drawn anew for each run from a PCG stream seeded with (seed, run):
//
//   - the world: β and attack/defense costs scaled by U(1−noise, 1+noise);
//   - the defender's type, from the prior, and the attack path through the Markov chain;
//   - the attacker's trust in signals, a credibility ρ' ~ U(0.5, 1) (the model assumed ρ).
//
// In every stage of the path the attacker updates its belief with the signal it sees (Bayes'
// rule with ρ' and the stage's attenuation δ_k, the posterior carried to the next stage) and
// plays the attack with the highest expected payoff under that belief against the deployed
// defense; the defender earns its MTTEGDM payoff U_d for its true type in the drawn world. So a
// signal pays when it moves the attacker to an attack that is worse against the true type, and
// costs its SCC in every stage. MTTEGDM deploys the signal and defense its solve chose for the
// true type; the traditional model sends no signal (the attacker keeps its prior) and deploys
// the defense of traditionalGame.
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
	tradTB := make([]int, len(c.stages))
	prior0 := make([]float64, nt)
	for i, t := range m.Types {
		prior0[i] = t.Prior
	}
	res := &MonteCarloResult{Runs: runs, Seed: seed, Noise: m.MonteCarlo.Noise}
	for k := range c.stages {
		s := &c.stages[k]
		st := sol.Stages[k]
		mtd[k] = make([]decision, nt)
		var desc []string
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
			desc = append(desc, fmt.Sprintf("%s:%s/%s", m.Types[t].ID, m.Types[best].Signal, s.defenses[mtd[k][t].y].ID))
		}
		res.MTTEGDMDecisions = append(res.MTTEGDMDecisions, strings.Join(desc, " "))
		for i, tableBeta := range []bool{false, true} {
			g := c.traditionalGame(s, prior0, tableBeta)
			o, err := outcome(g, g.A, m.Replicator.InitialMixes, m.Replicator.TMax)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				trad[k] = argmax(o.Y)
				res.TraditionalDefs = append(res.TraditionalDefs, s.defenses[trad[k]].ID)
			} else {
				tradTB[k] = argmax(o.Y)
				res.TraditionalTableBetaDefs = append(res.TraditionalTableBetaDefs, s.defenses[tradTB[k]].ID)
			}
		}
	}
	var sumTB, sumUn float64
	for r := 0; r < runs; r++ {
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		w, err := compile(perturb(m, rng, m.MonteCarlo.Noise))
		if err != nil {
			return nil, err
		}
		t := drawIndex(rng.Float64(), prior0)
		trust := 0.5 + 0.5*rng.Float64()
		belief := append([]float64(nil), prior0...) // the attacker's belief facing MTTEGDM
		var bm, bt, btb, bu, scc float64
		for k := 0; k >= 0; {
			s := &w.stages[k]
			d := mtd[k][t]
			belief = Posterior(belief, d.sig, trust, m.Signaling.Attenuation[k])
			x := w.attackerReply(s, d.sig, d.y, belief)
			bm += w.defenderPayoff(s, t, d.sig, x, d.y)
			scc += m.Types[d.sig].SignalCost
			// Without signals the attacker keeps the prior.
			xu := w.attackerReply(s, NoSignal, d.y, prior0)
			bu += w.defenderPayoff(s, t, NoSignal, xu, d.y)
			xt := w.attackerReply(s, NoSignal, trad[k], prior0)
			bt += w.defenderPayoff(s, t, NoSignal, xt, trad[k])
			xtb := w.attackerReply(s, NoSignal, tradTB[k], prior0)
			btb += w.defenderPayoff(s, t, NoSignal, xtb, tradTB[k])
			k = w.nextStage(k, rng.Float64())
		}
		res.MeanSignalCost += scc / float64(runs)
		sumTB += btb
		sumUn += bu
		res.TraditionalTableBeta = append(res.TraditionalTableBeta, btb)
		res.Unsignalled = append(res.Unsignalled, bu)
		res.MTTEGDM = append(res.MTTEGDM, bm)
		res.Traditional = append(res.Traditional, bt)
		switch {
		case math.Abs(bm-bt) <= 1e-9*math.Max(1, math.Abs(bm)):
			res.Ties++
		case bm > bt:
			res.Wins++
		}
		if bm > btb+1e-9*math.Max(1, math.Abs(bm)) {
			res.WinsTableBeta++
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
	res.MeanTraditionalTableBeta, res.MeanUnsignalled = sumTB/float64(runs), sumUn/float64(runs)
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

// traditionalGame is the stage game of a classic attack–defense evolutionary game, the
// model "without the specific analysis of MTD benefits" of Section 4.4. It has no defender
// types or signals (β and defense costs are prior-weighted averages over types, the attacker
// holds the prior), equal attribute weights (no three-way weighting), no lateral infection ξ,
// no failure discount μ, no misjudgment risk, no third parties and no Markov continuation. And
// it does not model the success of reconfiguration: the MTD success β_y = tanh(c*·a/(2π)) of a
// defense that reconfigures (rate a > 0) is what the MTD analysis adds, so without it such a
// defense is credited with no success (a = 0 gives β = 0) and costs no NC; a defense that
// does not reconfigure keeps its Table 8 β. With tableBeta the game is given Table 8's β for
// every defense instead (the comparison's second baseline).
func (c *compiled) traditionalGame(s *stageData, prior []float64, tableBeta bool) Bimatrix {
	var total float64
	for _, v := range s.values {
		total += v
	}
	m, n := len(s.attacks), len(s.defenses)
	g := newBimatrix(m, n)
	for x := 0; x < m; x++ {
		for y := 0; y < n; y++ {
			reconfigures := c.m.Reconfiguration.Rates[s.defenses[y].Rate] > 0
			var beta, cost float64
			for t, p := range prior {
				if tableBeta || !reconfigures {
					beta += p * s.success[t][x][y]
				}
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
