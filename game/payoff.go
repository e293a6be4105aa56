package game

import (
	"fmt"
	"math"
)

// NoSignal selects the payoffs of a defender that sends no induced signal (no signal
// camouflage cost, no deception cost for the attacker, attacker belief = prior).
const NoSignal = -1

// compiled is a validated Model with every reference resolved to an index, ready for fast
// payoff evaluation. It is built once per solve.
type compiled struct {
	m       *Model
	reading Reading // m.Reading with defaults
	// scc[t][sig] is the signal camouflage cost a type-t defender pays for sending sig.
	scc    [][]float64
	stages []stageData
	// next[k] lists the transitions out of stage k as (stage index, probability), normalised
	// when the model asks for it.
	next [][]edge
}

type edge struct {
	to int
	p  float64
}

// stageData is one stage with everything that does not depend on type or signal precomputed.
type stageData struct {
	k         int
	st        *Stage
	dev       Device
	values    [3]float64
	xi        float64 // ξ_m of the target host
	alpha     float64 // three-way thresholds (Table 10)
	beta      float64
	attacks   []*Attack
	defenses  []*Defense
	weighting []Weighting  // per attack
	weights   [][3]float64 // per attack
	nc        []float64    // negative-impact cost per defense
	success   [][][]float64
	misjudge  [][]float64
	// best[t][w] is d*(a_w) for type t: the defense the defender would deploy if the IDS
	// reported attack w (best response by the payoff without the misjudgment risk).
	best [][]int
	// typeMix[j][y][x] is p(a_x | T_j) against d_y under DeceptionTypeConditional: the
	// attacker's best reply to d_y if it knew the type were j (nil under other readings).
	typeMix [][][]float64
}

func compile(m *Model) (*compiled, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("game: %w", err)
	}
	c := &compiled{m: m, reading: m.Reading.withDefaults()}
	c.scc = signalCosts(m.Types, c.reading.SignalCost)
	devIdx := map[string]int{}
	for i, d := range m.Devices {
		devIdx[d.ID] = i
	}
	atk := map[string]*Attack{}
	for i := range m.Attacks {
		atk[m.Attacks[i].ID] = &m.Attacks[i]
	}
	def := map[string]*Defense{}
	for i := range m.Defenses {
		def[m.Defenses[i].ID] = &m.Defenses[i]
	}
	stageIdx := map[string]int{}
	for k := range m.Stages {
		stageIdx[m.Stages[k].ID] = k
	}
	c.stages = make([]stageData, len(m.Stages))
	for k := range m.Stages {
		st := &m.Stages[k]
		di := devIdx[st.Target]
		sd := stageData{k: k, st: st, dev: m.Devices[di], values: m.Devices[di].Values()}
		sd.xi = Infection(m.Lateral.Connectivity, m.Lateral.On, m.Lateral.Gamma, di)[st.InfectionRound-1]
		sd.alpha, sd.beta = ThreeWayLosses(sd.values).Thresholds()
		for _, id := range st.Attacks {
			a := atk[id]
			sd.attacks = append(sd.attacks, a)
			w := Classify(a.Intensity, sd.alpha, sd.beta)
			sd.weighting = append(sd.weighting, w)
			sd.weights = append(sd.weights, Weights(sd.values, w))
		}
		for _, id := range st.Defenses {
			d := def[id]
			sd.defenses = append(sd.defenses, d)
			sd.nc = append(sd.nc, NegativeImpactCost(m.Reconfiguration, d))
		}
		for _, t := range m.Types {
			sd.success = append(sd.success, st.Success[t.ID])
		}
		sd.misjudge = st.Misjudgment
		if sd.misjudge == nil {
			sd.misjudge = identity(len(sd.attacks))
		}
		c.stages[k] = sd
		c.stages[k].best = make([][]int, len(m.Types))
		for t := range m.Types {
			c.stages[k].best[t] = c.bestResponses(&c.stages[k], t)
		}
		if c.reading.DeceptionCost == DeceptionTypeConditional {
			c.stages[k].typeMix = c.typeConditionalMix(&c.stages[k])
		}
	}
	c.next = make([][]edge, len(m.Stages))
	for _, tr := range m.Markov.Transitions {
		f := stageIdx[tr.From]
		c.next[f] = append(c.next[f], edge{to: stageIdx[tr.To], p: tr.P})
	}
	if m.Markov.NormalizeRows {
		for k, es := range c.next {
			var s float64
			for _, e := range es {
				s += e.p
			}
			if s > 1 {
				for i := range es {
					c.next[k][i].p /= s
				}
			}
		}
	}
	return c, nil
}

// signalCosts is the SCC table [type][signal] of a signal-cost reading (two types; signal i is
// type i's own).
func signalCosts(types []DefenderType, reading string) [][]float64 {
	out := make([][]float64, len(types))
	for t := range types {
		out[t] = make([]float64, len(types))
		for sig := range types {
			switch reading {
			case SignalCostPrinted:
				out[t][sig] = types[sig].SignalCost
			case SignalCostSwapped:
				out[t][sig] = types[len(types)-1-sig].SignalCost
			case SignalCostFalseOnly:
				if sig != t {
					out[t][sig] = types[sig].SignalCost
				}
			}
		}
	}
	return out
}

// typeConditionalMix is p(a_x | T_j, d_y): the attacker's best reply to d_y against a known
// type j by SAL − AC − G (the payoff before any deception cost, so the definition is not
// circular), with ties shared evenly.
func (c *compiled) typeConditionalMix(s *stageData) [][][]float64 {
	out := make([][][]float64, len(c.m.Types))
	u := make([]float64, len(s.attacks))
	for j := range c.m.Types {
		out[j] = make([][]float64, len(s.defenses))
		for y := range s.defenses {
			best := math.Inf(-1)
			for x := range s.attacks {
				th := s.theta(j, x, y)
				u[x] = s.sal(th, x) - s.attacks[x].Cost - c.m.Regulator.Strike*th
				best = math.Max(best, u[x])
			}
			mix := make([]float64, len(s.attacks))
			var n float64
			for x, v := range u {
				if v >= best-1e-9*math.Max(1, math.Abs(best)) {
					mix[x] = 1
					n++
				}
			}
			for x := range mix {
				mix[x] /= n
			}
			out[j][y] = mix
		}
	}
	return out
}

func identity(n int) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, n)
		out[i][i] = 1
	}
	return out
}

// NegativeImpactCost is NC = SQ·(1 − 1/(1 + e^(a−k))) of Section 3.2.2 (3): the service-quality
// loss of reconfiguring at rate a, rising with a. A defense that does not reconfigure
// (rate 0) costs nothing.
func NegativeImpactCost(r Reconfiguration, d *Defense) float64 {
	a := r.Rates[d.Rate]
	if a <= 0 {
		return 0
	}
	return r.ServiceQuality * (1 - 1/(1+math.Exp(a-r.Midpoint)))
}

// DefenseCost returns the Table 7 cost of d for a defender type ("high" or "low" column).
func DefenseCost(d *Defense, column string) float64 {
	if column == "low" {
		return d.CostLow
	}
	return d.CostHigh
}

// theta is θ_xy for type t.
func (s *stageData) theta(t, x, y int) float64 {
	return AttackSuccess(s.attacks[x].Detection, s.success[t][x][y])
}

// sal is the security-attribute loss of equation (11): (1+ξ_m)·C_r·Σ θ·W·R.
func (s *stageData) sal(theta float64, x int) float64 {
	var sum float64
	for i, r := range s.values {
		sum += theta * s.weights[x][i] * r
	}
	return (1 + s.xi) * s.dev.Significance * sum
}

// sap is the security-attribute protection of equation (14):
// (1−ξ_m)·C_r·Σ [μ_y·θ + (1−θ)]·(1−W)·R.
func (s *stageData) sap(theta float64, x, y int) float64 {
	mu := s.defenses[y].FailureDiscount
	var sum float64
	for i, r := range s.values {
		sum += (mu*theta + (1 - theta)) * (1 - s.weights[x][i]) * r
	}
	return (1 - s.xi) * s.dev.Significance * sum
}

// bestResponses returns d*(a_w) for each attack w: the defense with the highest
// SAP − ASSC − NC against a_w for type t.
func (c *compiled) bestResponses(s *stageData, t int) []int {
	col := c.m.Types[t].Cost
	out := make([]int, len(s.attacks))
	for w := range s.attacks {
		best := math.Inf(-1)
		for y, d := range s.defenses {
			v := s.sap(s.theta(t, w, y), w, y) - DefenseCost(d, col) - s.nc[y]
			if v > best {
				best, out[w] = v, y
			}
		}
	}
	return out
}

// signalType returns the index of the type whose own signal is sig.
func (c *compiled) signalType(sig int) int { return sig }

// attackerPayoff is U_a = SAL − AC − SDC − G for the attacker facing a defender of true type
// t that sent signal sig (NoSignal for none); belief is the attacker's belief over types and
// enters the signal deception cost only.
func (c *compiled) attackerPayoff(s *stageData, t, sig, x, y int, belief []float64) float64 {
	th := s.theta(t, x, y)
	u := s.sal(th, x) - s.attacks[x].Cost - c.m.Regulator.Strike*th
	if sig != NoSignal {
		// SDC = Σ_j λ(a_x,d_y)·p(a_x|T_j)·p(T_j|m) with λ = |DeC(d_y|T_j) − DeC(d_y|m)|: the
		// attacker's misestimate of the defense cost when it trusts the signal; p(a_x|T_j) is 1
		// or the type-conditional mix, by the reading.
		claimed := DefenseCost(s.defenses[y], c.m.Types[c.signalType(sig)].Cost)
		var sdc float64
		for j, tp := range c.m.Types {
			l := belief[j] * math.Abs(DefenseCost(s.defenses[y], tp.Cost)-claimed)
			if s.typeMix != nil {
				l *= s.typeMix[j][y][x]
			}
			sdc += l
		}
		u -= sdc
	}
	return u
}

// defenderPayoff is U_d = SAP − DC − DSR + R for a defender of type t sending sig.
func (c *compiled) defenderPayoff(s *stageData, t, sig, x, y int) float64 {
	tp := c.m.Types[t]
	th := s.theta(t, x, y)
	dc := DefenseCost(s.defenses[y], tp.Cost) + s.nc[y] + tp.RecognitionCost
	if sig != NoSignal {
		dc += c.scc[t][sig]
	}
	var dsr float64
	own := DefenseCost(s.defenses[y], tp.Cost)
	for w, pw := range s.misjudge[x] {
		if w == x || pw == 0 {
			continue
		}
		dsr += pw * math.Abs(DefenseCost(s.defenses[s.best[t][w]], tp.Cost)-own)
	}
	r := c.m.Incentive.SocialBenefit * c.m.Incentive.Information
	return s.sap(th, x, y) - dc - dsr + r
}

// stageGame builds the bimatrix of stage s for a defender of type t sending sig, with the
// attacker holding belief over types. The attacker's matrix is its expected payoff under its
// belief (it does not know t); the defender's matrix is its own payoff.
func (c *compiled) stageGame(s *stageData, t, sig int, belief []float64) Bimatrix {
	m, n := len(s.attacks), len(s.defenses)
	g := newBimatrix(m, n)
	for x := 0; x < m; x++ {
		for y := 0; y < n; y++ {
			for j, b := range belief {
				if b != 0 {
					g.A[x][y] += b * c.attackerPayoff(s, j, sig, x, y, belief)
				}
			}
			g.D[x][y] = c.defenderPayoff(s, t, sig, x, y)
		}
	}
	return g
}

// trueAttackerGame is the attacker's realised payoff matrix against type t.
func (c *compiled) trueAttackerPayoffs(s *stageData, t, sig int, belief []float64) [][]float64 {
	out := make([][]float64, len(s.attacks))
	for x := range out {
		out[x] = make([]float64, len(s.defenses))
		for y := range out[x] {
			out[x][y] = c.attackerPayoff(s, t, sig, x, y, belief)
		}
	}
	return out
}
