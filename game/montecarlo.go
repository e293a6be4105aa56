package game

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/proteus-defense/proteus/strictyaml"
)

// MonteCarloReport compares the defense benefit of MTTEGDM with a traditional evolutionary
// game (Figure 7) under one or more cells (readings × evaluations). Every cell is evaluated on
// the same draws (world, defender type, attacker trust, attack path per run), so the cells'
// figures differ only by the reading and the differences between models are paired.
type MonteCarloReport struct {
	Runs   int          `json:"runs"`
	Seed   uint64       `json:"seed"`
	Noise  float64      `json:"noise"`
	Stages []string     `json:"stages"` // stage ids: the x-axis of the per-stage figures
	Cells  []CellResult `json:"cells"`
}

// CellResult is the comparison under one cell.
type CellResult struct {
	Cell
	Name string `json:"name"` // Cell.String()
	// MTTEGDMDecisions is MTTEGDM's signal/defense per stage and defender type, e.g.
	// "high:mL/d2 low:mL/d2"; TraditionalDefenses the traditional model's defense per stage.
	MTTEGDMDecisions    []string `json:"mttegdm_decisions"`
	TraditionalDefenses []string `json:"traditional_defenses"`

	MTTEGDM     []float64 `json:"mttegdm"`     // benefit of each run
	Traditional []float64 `json:"traditional"` // same runs, traditional model
	// Unsignalled is MTTEGDM's defenses deployed without any signal in the same runs (the
	// attacker keeps its prior): MeanMTTEGDM − MeanUnsignalled is the net effect of the
	// signaling layer, the attacker's changed choices minus the signal cost.
	Unsignalled    []float64 `json:"unsignalled"`
	CumMTTEGDM     []float64 `json:"cumulative_mttegdm"` // cumulative over runs
	CumTraditional []float64 `json:"cumulative_traditional"`
	// StageMTTEGDM[k] is the mean over runs of the benefit earned in stage k (0 in runs whose
	// path does not reach it); CumStage* the running sum over stages, whose last entry is the
	// mean per run.
	StageMTTEGDM        []float64 `json:"stage_mttegdm"`
	StageTraditional    []float64 `json:"stage_traditional"`
	CumStageMTTEGDM     []float64 `json:"cumulative_stage_mttegdm"`
	CumStageTraditional []float64 `json:"cumulative_stage_traditional"`

	MeanMTTEGDM     float64 `json:"mean_mttegdm"`
	MeanTraditional float64 `json:"mean_traditional"`
	MeanUnsignalled float64 `json:"mean_unsignalled"`
	// MeanSignalCost is the signal camouflage cost MTTEGDM paid per run (as scored).
	MeanSignalCost float64 `json:"mean_signal_cost"`
	// Difference is the paired per-run difference MTTEGDM − traditional.
	Difference Interval `json:"difference"`
	Wins       int      `json:"mttegdm_wins"` // runs where MTTEGDM's benefit is higher
	Ties       int      `json:"ties"`
	Losses     int      `json:"mttegdm_losses"`
}

// Interval is a mean with its two-sided 95 % Student-t confidence interval.
type Interval struct {
	Mean float64 `json:"mean"`
	Low  float64 `json:"low"`
	High float64 `json:"high"`
	SD   float64 `json:"sd"` // sample standard deviation
}

// MeanInterval returns the mean of v with its 95 % confidence interval (t with len(v)−1
// degrees of freedom); v needs at least two values.
func MeanInterval(v []float64) Interval {
	n := float64(len(v))
	var mean float64
	for _, x := range v {
		mean += x / n
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	sd := math.Sqrt(ss / (n - 1))
	h := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: n - 1}.Quantile(0.975) * sd / math.Sqrt(n)
	return Interval{Mean: mean, Low: mean - h, High: mean + h, SD: sd}
}

// mcDecision is MTTEGDM's choice for one stage and type: signal and defense index.
type mcDecision struct{ sig, y int }

// MonteCarlo runs the Figure 7 comparison for each cell (none: the model file's own cell).
// Each model decides once, on the nominal model, with its own game: MTTEGDM by the solve
// under the cell's reading, the traditional model by traditionalGame under the cell's
// traditional β. Each run r then draws from a PCG stream seeded with (seed, r):
//
//   - the world: β and attack/defense costs scaled by U(1−noise, 1+noise);
//   - the defender's type, from the prior;
//   - the attacker's trust in signals, a credibility ρ' ~ U(0.5, 1) (the model assumed ρ);
//   - the attack path through the Markov chain.
//
// In every stage of the path the attacker facing MTTEGDM updates its belief with the signal
// it sees (Bayes' rule with ρ' and the stage's δ_k, the posterior carried on) and plays the
// attack with the highest expected payoff under that belief against the deployed defense;
// facing the traditional model it keeps the prior. Under ScoringCommon both defenders earn the
// MTTEGDM payoff U_d of the true type in the drawn world (read with the cell's reading); under
// ScoringOwn the traditional model earns its own game's payoff against its own game's attacker.
// Under DiscountPath stage S_k's payoff counts ϑ^(k−1).
func MonteCarlo(m *Model, runs int, seed uint64, cells []Cell) (*MonteCarloReport, error) {
	if runs < 2 {
		return nil, fmt.Errorf("game: montecarlo needs at least two runs (for a confidence interval), got %d", runs)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("game: %w", err)
	}
	if len(cells) == 0 {
		cells = []Cell{{Reading: m.Reading, Evaluation: m.MonteCarlo.Evaluation()}}
	}
	cells = append([]Cell(nil), cells...) // defaults are filled in on a copy
	for i := range cells {
		cells[i] = cells[i].withDefaults()
		var p strictyaml.Problems
		cells[i].problems(&p)
		if err := p.Err("montecarlo cell"); err != nil {
			return nil, fmt.Errorf("game: %w", err)
		}
	}
	nominal, err := compile(m)
	if err != nil {
		return nil, err
	}
	nt, ns := len(m.Types), len(m.Stages)
	prior0 := make([]float64, nt)
	for i, t := range m.Types {
		prior0[i] = t.Prior
	}

	// MTTEGDM's decisions per reading, the traditional model's per β reading.
	type readingState struct {
		model *Model
		mtd   [][]mcDecision
		desc  []string
	}
	readings := map[Reading]*readingState{}
	trad := map[string][]int{}
	tradDesc := map[string][]string{}
	for _, cell := range cells {
		if readings[cell.Reading] == nil {
			rs := &readingState{model: withReading(m, cell.Reading)}
			if rs.mtd, rs.desc, err = mttegdmDecisions(rs.model); err != nil {
				return nil, err
			}
			readings[cell.Reading] = rs
		}
		tb := cell.Evaluation.TraditionalBeta
		if trad[tb] == nil {
			for k := range nominal.stages {
				s := &nominal.stages[k]
				g := nominal.traditionalGame(s, prior0, tb == TraditionalBetaTable8)
				o, err := outcome(g, g.A, m.Replicator.InitialMixes, m.Replicator.TMax)
				if err != nil {
					return nil, err
				}
				trad[tb] = append(trad[tb], argmax(o.Y))
				tradDesc[tb] = append(tradDesc[tb], s.defenses[argmax(o.Y)].ID)
			}
		}
	}

	rep := &MonteCarloReport{Runs: runs, Seed: seed, Noise: m.MonteCarlo.Noise}
	for _, s := range m.Stages {
		rep.Stages = append(rep.Stages, s.ID)
	}
	rep.Cells = make([]CellResult, len(cells))
	for i, cell := range cells {
		rep.Cells[i] = CellResult{
			Cell: cell, Name: cell.String(),
			MTTEGDMDecisions: readings[cell.Reading].desc, TraditionalDefenses: tradDesc[cell.Evaluation.TraditionalBeta],
			StageMTTEGDM: make([]float64, ns), StageTraditional: make([]float64, ns),
		}
	}
	for r := 0; r < runs; r++ {
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		world := perturb(m, rng, m.MonteCarlo.Noise)
		t := drawIndex(rng.Float64(), prior0)
		trust := 0.5 + 0.5*rng.Float64()
		var path []int
		for k := 0; k >= 0; k = nominal.nextStage(k, rng.Float64()) {
			path = append(path, k)
		}
		worlds := map[Reading]*compiled{}
		for i := range rep.Cells {
			cr := &rep.Cells[i]
			w := worlds[cr.Reading]
			if w == nil {
				if w, err = compile(withReading(world, cr.Reading)); err != nil {
					return nil, err
				}
				worlds[cr.Reading] = w
			}
			run := w.scoreRun(cr.Evaluation, readings[cr.Reading].mtd, trad[cr.Evaluation.TraditionalBeta], t, trust, path, prior0)
			cr.MTTEGDM = append(cr.MTTEGDM, run.mttegdm)
			cr.Traditional = append(cr.Traditional, run.traditional)
			cr.Unsignalled = append(cr.Unsignalled, run.unsignalled)
			cr.MeanSignalCost += run.scc / float64(runs)
			for k := range run.stageM {
				cr.StageMTTEGDM[k] += run.stageM[k] / float64(runs)
				cr.StageTraditional[k] += run.stageT[k] / float64(runs)
			}
		}
	}
	for i := range rep.Cells {
		rep.Cells[i].summarise()
	}
	return rep, nil
}

// withReading is a shallow copy of m with reading r (nothing the solver writes is shared).
func withReading(m *Model, r Reading) *Model {
	mm := *m
	mm.Reading = r
	return &mm
}

// mttegdmDecisions solves m and returns, per stage and type, the signal and defense MTTEGDM
// deploys: the type's best option (section 7 of docs/model.md), or its highest-gain option
// when no signal gives a stable Nash point.
func mttegdmDecisions(m *Model) ([][]mcDecision, []string, error) {
	c, err := compile(m)
	if err != nil {
		return nil, nil, err
	}
	sol, err := c.solve()
	if err != nil {
		return nil, nil, err
	}
	nt := len(m.Types)
	out := make([][]mcDecision, len(c.stages))
	desc := make([]string, len(c.stages))
	for k := range c.stages {
		st := sol.Stages[k]
		out[k] = make([]mcDecision, nt)
		var d []string
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
			out[k][t] = mcDecision{sig: best, y: argmax(opts[best].Y)}
			d = append(d, fmt.Sprintf("%s:%s/%s", m.Types[t].ID, m.Types[best].Signal, c.stages[k].defenses[out[k][t].y].ID))
		}
		desc[k] = strings.Join(d, " ")
	}
	return out, desc, nil
}

// runScore is one run of one cell.
type runScore struct {
	mttegdm, traditional, unsignalled, scc float64
	stageM, stageT                         []float64
}

// scoreRun plays the drawn path in world c (compiled with the cell's reading) for a defender
// of type t and an attacker with trust in signals.
func (c *compiled) scoreRun(e Evaluation, mtd [][]mcDecision, trad []int, t int, trust float64, path []int, prior0 []float64) runScore {
	out := runScore{stageM: make([]float64, len(c.stages)), stageT: make([]float64, len(c.stages))}
	belief := prior0
	for _, k := range path {
		s := &c.stages[k]
		w := 1.0
		if e.Discount == DiscountPath {
			w = math.Pow(c.m.Markov.Discount, float64(k))
		}
		d := mtd[k][t]
		belief = Posterior(belief, d.sig, trust, c.m.Signaling.Attenuation[k])
		x := c.attackerReply(s, d.sig, d.y, belief)
		um := w * c.defenderPayoff(s, t, d.sig, x, d.y)
		out.scc += w * c.scc[t][d.sig]
		xu := c.attackerReply(s, NoSignal, d.y, prior0)
		out.unsignalled += w * c.defenderPayoff(s, t, NoSignal, xu, d.y)
		y := trad[k]
		var ut float64
		if e.Scoring == ScoringOwn {
			g := c.traditionalGame(s, prior0, e.TraditionalBeta == TraditionalBetaTable8)
			xt := 0
			for i := range g.A {
				if g.A[i][y] > g.A[xt][y] {
					xt = i
				}
			}
			ut = w * g.D[xt][y]
		} else {
			xt := c.attackerReply(s, NoSignal, y, prior0)
			ut = w * c.defenderPayoff(s, t, NoSignal, xt, y)
		}
		out.mttegdm += um
		out.traditional += ut
		out.stageM[k] += um
		out.stageT[k] += ut
	}
	return out
}

// summarise fills the means, cumulative series, interval and win counts from the per-run and
// per-stage figures.
func (cr *CellResult) summarise() {
	n := float64(len(cr.MTTEGDM))
	diff := make([]float64, len(cr.MTTEGDM))
	var cm, ct, cu float64
	for i := range cr.MTTEGDM {
		bm, bt := cr.MTTEGDM[i], cr.Traditional[i]
		cm += bm
		ct += bt
		cu += cr.Unsignalled[i]
		cr.CumMTTEGDM = append(cr.CumMTTEGDM, cm)
		cr.CumTraditional = append(cr.CumTraditional, ct)
		diff[i] = bm - bt
		switch {
		case math.Abs(bm-bt) <= 1e-9*math.Max(1, math.Abs(bm)):
			cr.Ties++
		case bm > bt:
			cr.Wins++
		default:
			cr.Losses++
		}
	}
	cr.MeanMTTEGDM, cr.MeanTraditional, cr.MeanUnsignalled = cm/n, ct/n, cu/n
	cr.Difference = MeanInterval(diff)
	var sm, st float64
	for k := range cr.StageMTTEGDM {
		sm += cr.StageMTTEGDM[k]
		st += cr.StageTraditional[k]
		cr.CumStageMTTEGDM = append(cr.CumStageMTTEGDM, sm)
		cr.CumStageTraditional = append(cr.CumStageTraditional, st)
	}
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
// every defense instead (TraditionalBetaTable8).
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
