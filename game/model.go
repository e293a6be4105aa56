package game

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/proteus-defense/proteus/strictyaml"
)

// ModelVersion is the only model-file version this build understands.
const ModelVersion = 1

// Model is a whole MTTEGDM instance: the network, the strategy catalogues, the signaling
// layer, the Markov chain over stages and the stages themselves. It is what
// examples/mttegdm-paper.yaml decodes into; every field maps to a table or a parameter of
// Zhang et al. 2024 (see docs/model.md).
type Model struct {
	Version         int             `yaml:"version"`
	Name            string          `yaml:"name"`
	Devices         []Device        `yaml:"devices"`
	Lateral         Lateral         `yaml:"lateral"`
	Attacks         []Attack        `yaml:"attacks"`
	Defenses        []Defense       `yaml:"defenses"`
	Reconfiguration Reconfiguration `yaml:"reconfiguration"`
	Types           []DefenderType  `yaml:"types"`
	Signaling       Signaling       `yaml:"signaling"`
	Regulator       Regulator       `yaml:"regulator"`
	Incentive       Incentive       `yaml:"incentive"`
	Markov          Markov          `yaml:"markov"`
	Replicator      ReplicatorSpec  `yaml:"replicator"`
	MonteCarlo      MonteCarloSpec  `yaml:"montecarlo"`
	// Reading chooses how the open parts of the paper's cost definitions are read; empty
	// fields take EngineReading's (docs/model.md, "Readings of the paper").
	Reading Reading `yaml:"reading"`
	Stages  []Stage `yaml:"stages"`
}

// Device is a protected host with its security-attribute values (Table 9).
type Device struct {
	ID              string  `yaml:"id"`
	Name            string  `yaml:"name"`
	Confidentiality float64 `yaml:"confidentiality"`
	Integrity       float64 `yaml:"integrity"`
	Availability    float64 `yaml:"availability"`
	Significance    float64 `yaml:"significance"` // resource importance C_r
}

// Values returns R(C_c), R(C_i), R(C_a).
func (d Device) Values() [3]float64 {
	return [3]float64{d.Confidentiality, d.Integrity, d.Availability}
}

// Lateral describes the connectivity used for the lateral infection coefficient ξ_m.
type Lateral struct {
	Gamma        float64     `yaml:"gamma"`        // infection attenuation γ
	Connectivity [][]float64 `yaml:"connectivity"` // r_ij in {0,1}, indexed like Devices
	On           []float64   `yaml:"on"`           // b_i in {0,1}, indexed like Devices
}

// Attack is one attack strategy (Table 6).
type Attack struct {
	ID              string  `yaml:"id"`
	Name            string  `yaml:"name"`
	Cost            float64 `yaml:"cost"`             // AC
	Detection       float64 `yaml:"detection"`        // λ_x
	Intensity       float64 `yaml:"intensity"`        // π_x
	FailureDiscount float64 `yaml:"failure_discount"` // kept from Table 6; see docs/model.md
}

// Defense is one defense strategy (Table 7).
type Defense struct {
	ID              string  `yaml:"id"`
	Name            string  `yaml:"name"`
	Rate            string  `yaml:"rate"` // key into Reconfiguration.Rates ("random", "fixed", "none")
	Kind            string  `yaml:"kind"`
	CostHigh        float64 `yaml:"cost_high"`
	CostLow         float64 `yaml:"cost_low"`
	FailureDiscount float64 `yaml:"failure_discount"` // μ_y
}

// Reconfiguration holds the MTD resource parameters: the cap c* on concurrent
// reconfigurations, the numeric rate a for each rate class of Table 7, and the
// service-quality logistic of the negative-impact cost NC.
type Reconfiguration struct {
	MaxConcurrent  float64            `yaml:"max_concurrent"`  // c*
	Rates          map[string]float64 `yaml:"rates"`           // a per rate class
	ServiceQuality float64            `yaml:"service_quality"` // SQ
	Midpoint       float64            `yaml:"midpoint"`        // k in NC = SQ·(1 − 1/(1+e^(a−k)))
}

// DefenderType is φ_H or φ_L with its prior, its own signal, the signal cost (SCC) and the
// attack-identification cost (AIC); Cost selects the Table 7 cost column.
type DefenderType struct {
	ID              string  `yaml:"id"`
	Prior           float64 `yaml:"prior"`
	Signal          string  `yaml:"signal"`
	SignalCost      float64 `yaml:"signal_cost"`
	RecognitionCost float64 `yaml:"recognition_cost"`
	Cost            string  `yaml:"cost"` // "high" or "low": which Table 7 column
}

// Signaling holds the credibility of induced signals and the per-stage attenuation δ_k.
type Signaling struct {
	Credibility float64   `yaml:"credibility"` // ρ: P(own signal | type) at δ = 1
	Attenuation []float64 `yaml:"attenuation"` // δ_k, one per stage
}

// Regulator is the third-party penalty G = strike·θ.
type Regulator struct {
	Strike float64 `yaml:"strike"`
}

// Incentive is the third-party reward R = α·I.
type Incentive struct {
	SocialBenefit float64 `yaml:"social_benefit"` // α
	Information   float64 `yaml:"information"`    // I
}

// Markov holds the discount factor ϑ and the stage transition probabilities η (Table 5).
type Markov struct {
	Discount      float64      `yaml:"discount"`
	NormalizeRows bool         `yaml:"normalize_rows"`
	Transitions   []Transition `yaml:"transitions"`
}

// Transition is η(S_to | S_from).
type Transition struct {
	From string  `yaml:"from"`
	To   string  `yaml:"to"`
	P    float64 `yaml:"p"`
}

// ReplicatorSpec lists the initial mixes each stage game is started from. Each mix is
// [x, y]: x is the probability of the stage's first attack, y of its first defense; the rest
// of each mass is spread evenly over the other strategies.
type ReplicatorSpec struct {
	InitialMixes [][]float64 `yaml:"initial_mixes"`
	PlotMixes    [][]float64 `yaml:"plot_mixes"`
	TMax         float64     `yaml:"t_max"`
}

// MonteCarloSpec controls the Figure 7 comparison: the noise of the drawn worlds and how the
// decisions are scored (empty fields take DefaultEvaluation's).
type MonteCarloSpec struct {
	Noise           float64 `yaml:"noise"` // relative perturbation of β, costs per run
	Scoring         string  `yaml:"scoring"`
	Discount        string  `yaml:"discount"`
	TraditionalBeta string  `yaml:"traditional_beta"`
}

// Evaluation returns the scoring choices of the model file.
func (s MonteCarloSpec) Evaluation() Evaluation {
	return Evaluation{Scoring: s.Scoring, Discount: s.Discount, TraditionalBeta: s.TraditionalBeta}
}

// Stage is one attack stage G(k) (Tables 4, 8).
type Stage struct {
	ID             string                 `yaml:"id"`
	Initial        string                 `yaml:"initial"`
	Stable         string                 `yaml:"stable"`
	Target         string                 `yaml:"target"`
	InfectionRound int                    `yaml:"infection_rounds"`
	Attacks        []string               `yaml:"attacks"`
	Defenses       []string               `yaml:"defenses"`
	Success        map[string][][]float64 `yaml:"success"` // per type id: β[x][y]
	Table8         map[string][]float64   `yaml:"table8"`  // the six printed values, reference only
	Misjudgment    [][]float64            `yaml:"misjudgment"`
	Expected       *Expected              `yaml:"expected"`
}

// Expected is the paper's published result for a stage (Tables 10 and 11). It is reference
// data for side-by-side display and tests only; the solver never reads it.
type Expected struct {
	Alpha       float64 `yaml:"alpha"`
	Beta        float64 `yaml:"beta"`
	Type        string  `yaml:"type"`
	Defense     string  `yaml:"defense"`
	Signal      string  `yaml:"signal"`
	Attack      string  `yaml:"attack"`
	AttackGain  float64 `yaml:"attack_gain"`
	DefenseGain float64 `yaml:"defense_gain"`
	Note        string  `yaml:"note"`
}

// ParseModel decodes and validates a model file. Errors name the file, line and field and wrap
// strictyaml.ErrInvalid.
func ParseModel(name string, data []byte) (*Model, error) {
	m := &Model{}
	doc, err := strictyaml.Decode(name, data, m)
	if err != nil {
		return nil, err
	}
	if err := doc.Locate(m.Problems()); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks a model built in code; problems carry field paths but no lines.
func (m *Model) Validate() error { return m.Problems().Err("model") }

// Problems lists every validation problem of m.
func (m *Model) Problems() strictyaml.Problems {
	var p strictyaml.Problems
	if m.Version != ModelVersion {
		if m.Version == 0 {
			p.Addf("version", "is required; set version: %d", ModelVersion)
		} else {
			p.Addf("version", "unsupported version %d; this build understands %d", m.Version, ModelVersion)
		}
	}
	devices := ids(&p, "devices", len(m.Devices), func(i int) string { return m.Devices[i].ID })
	for i, d := range m.Devices {
		f := fmt.Sprintf("devices[%d]", i)
		p.NonNegative(f+".confidentiality", d.Confidentiality)
		p.NonNegative(f+".integrity", d.Integrity)
		p.NonNegative(f+".availability", d.Availability)
		p.NonNegative(f+".significance", d.Significance)
		if sum := d.Confidentiality + d.Integrity + d.Availability; !math.IsNaN(sum) && sum <= 0 {
			p.Addf(f, "needs a positive value for at least one security attribute")
		}
	}
	m.Lateral.problems(&p, len(m.Devices))
	attacks := ids(&p, "attacks", len(m.Attacks), func(i int) string { return m.Attacks[i].ID })
	for i, a := range m.Attacks {
		f := fmt.Sprintf("attacks[%d]", i)
		p.NonNegative(f+".cost", a.Cost)
		p.Probability(f+".detection", a.Detection)
		p.Probability(f+".intensity", a.Intensity)
		p.Probability(f+".failure_discount", a.FailureDiscount)
	}
	defenses := ids(&p, "defenses", len(m.Defenses), func(i int) string { return m.Defenses[i].ID })
	for i, d := range m.Defenses {
		f := fmt.Sprintf("defenses[%d]", i)
		p.NonNegative(f+".cost_high", d.CostHigh)
		p.NonNegative(f+".cost_low", d.CostLow)
		p.Probability(f+".failure_discount", d.FailureDiscount)
		if _, ok := m.Reconfiguration.Rates[d.Rate]; !ok {
			p.Addf(f+".rate", "unknown rate class %q; define it under reconfiguration.rates (have %s)", d.Rate, keys(m.Reconfiguration.Rates))
		}
	}
	r := m.Reconfiguration
	p.NonNegative("reconfiguration.max_concurrent", r.MaxConcurrent)
	p.NonNegative("reconfiguration.service_quality", r.ServiceQuality)
	p.Finite("reconfiguration.midpoint", r.Midpoint)
	if len(r.Rates) == 0 {
		p.Addf("reconfiguration.rates", "must define at least one rate class")
	}
	for _, k := range sortedKeys(r.Rates) {
		p.NonNegative("reconfiguration.rates."+k, r.Rates[k])
	}
	types := ids(&p, "types", len(m.Types), func(i int) string { return m.Types[i].ID })
	if len(m.Types) > 0 && len(m.Types) != 2 {
		p.Addf("types", "the signaling layer has exactly two defender types (high and low), got %d", len(m.Types))
	}
	var priorSum float64
	signals := map[string]bool{}
	for i, t := range m.Types {
		f := fmt.Sprintf("types[%d]", i)
		p.Probability(f+".prior", t.Prior)
		priorSum += t.Prior
		if t.Signal == "" {
			p.Addf(f+".signal", "is required")
		} else if signals[t.Signal] {
			p.Addf(f+".signal", "signal %q is already used by another type", t.Signal)
		}
		signals[t.Signal] = true
		p.NonNegative(f+".signal_cost", t.SignalCost)
		p.NonNegative(f+".recognition_cost", t.RecognitionCost)
		if t.Cost != "high" && t.Cost != "low" {
			p.Addf(f+".cost", "must be high or low (the Table 7 cost column), got %q", t.Cost)
		}
	}
	if len(m.Types) > 0 && !math.IsNaN(priorSum) && math.Abs(priorSum-1) > 1e-9 {
		p.Addf("types", "priors must sum to 1, got %v", priorSum)
	}
	s := m.Signaling
	p.Probability("signaling.credibility", s.Credibility)
	if p.Finite("signaling.credibility", s.Credibility) && s.Credibility < 0.5 {
		p.Addf("signaling.credibility", "must be >= 0.5 (a signal at least as likely from its own type), got %v", s.Credibility)
	}
	if len(s.Attenuation) != len(m.Stages) {
		p.Addf("signaling.attenuation", "needs one δ per stage: %d stages, %d values", len(m.Stages), len(s.Attenuation))
	}
	for i, d := range s.Attenuation {
		p.Probability(fmt.Sprintf("signaling.attenuation[%d]", i), d)
	}
	p.NonNegative("regulator.strike", m.Regulator.Strike)
	p.NonNegative("incentive.social_benefit", m.Incentive.SocialBenefit)
	p.NonNegative("incentive.information", m.Incentive.Information)
	m.Replicator.problems(&p)
	p.Range("montecarlo.noise", m.MonteCarlo.Noise, 0, 0.9)
	Cell{Reading: m.Reading, Evaluation: m.MonteCarlo.Evaluation()}.problems(&p)

	stages := ids(&p, "stages", len(m.Stages), func(i int) string { return m.Stages[i].ID })
	if len(m.Stages) == 0 {
		p.Addf("stages", "must list at least one stage")
	}
	for i := range m.Stages {
		m.Stages[i].problems(&p, fmt.Sprintf("stages[%d]", i), devices, attacks, defenses, types)
	}
	m.Markov.problems(&p, stages)
	return p
}

func (l Lateral) problems(p *strictyaml.Problems, n int) {
	p.Probability("lateral.gamma", l.Gamma)
	if len(l.Connectivity) != n {
		p.Addf("lateral.connectivity", "must be %d×%d (one row per device), has %d rows", n, n, len(l.Connectivity))
	}
	for i, row := range l.Connectivity {
		f := fmt.Sprintf("lateral.connectivity[%d]", i)
		if len(row) != n {
			p.Addf(f, "must have %d entries (one per device), has %d", n, len(row))
			continue
		}
		for j, v := range row {
			if v != 0 && v != 1 {
				p.Addf(fmt.Sprintf("%s[%d]", f, j), "must be 0 or 1, got %v", v)
			}
			if i == j && v != 0 {
				p.Addf(fmt.Sprintf("%s[%d]", f, j), "a host is not connected to itself (r_ii = 0)")
			}
		}
	}
	if len(l.On) != n {
		p.Addf("lateral.on", "needs one 0/1 entry per device (%d), has %d", n, len(l.On))
	}
	for i, v := range l.On {
		if v != 0 && v != 1 {
			p.Addf(fmt.Sprintf("lateral.on[%d]", i), "must be 0 or 1, got %v", v)
		}
	}
}

func (r ReplicatorSpec) problems(p *strictyaml.Problems) {
	if len(r.InitialMixes) == 0 {
		p.Addf("replicator.initial_mixes", "must list at least one [x, y] mix")
	}
	for name, mixes := range map[string][][]float64{"initial_mixes": r.InitialMixes, "plot_mixes": r.PlotMixes} {
		for i, mix := range mixes {
			f := fmt.Sprintf("replicator.%s[%d]", name, i)
			if len(mix) != 2 {
				p.Addf(f, "must be [x, y], got %d numbers", len(mix))
				continue
			}
			p.Probability(f+"[0]", mix[0])
			p.Probability(f+"[1]", mix[1])
		}
	}
	p.NonNegative("replicator.t_max", r.TMax)
}

func (s Stage) problems(p *strictyaml.Problems, f string, devices, attacks, defenses, types map[string]int) {
	if _, ok := devices[s.Target]; !ok {
		p.Addf(f+".target", "unknown device %q", s.Target)
	}
	if s.InfectionRound < 1 || s.InfectionRound > 3 {
		p.Addf(f+".infection_rounds", "must be 1, 2 or 3 (ξ_m is defined for m ≤ 3), got %d", s.InfectionRound)
	}
	if len(s.Attacks) == 0 {
		p.Addf(f+".attacks", "must list at least one attack strategy")
	}
	if len(s.Defenses) == 0 {
		p.Addf(f+".defenses", "must list at least one defense strategy")
	}
	refs(p, f+".attacks", s.Attacks, attacks, "attack")
	refs(p, f+".defenses", s.Defenses, defenses, "defense")
	m, n := len(s.Attacks), len(s.Defenses)
	for _, t := range sortedKeys(types) {
		if _, ok := s.Success[t]; !ok {
			p.Addf(f+".success", "needs a β matrix for defender type %q", t)
		}
	}
	shaped := m > 0 && n > 0 // with an empty strategy set the matrices have no shape to check
	for _, t := range sortedKeys(s.Success) {
		ff := f + ".success." + t
		if _, ok := types[t]; !ok {
			p.Addf(ff, "unknown defender type %q", t)
		}
		if shaped {
			matrix(p, ff, s.Success[t], m, n, true)
		}
	}
	for _, t := range sortedKeys(s.Table8) {
		ff := f + ".table8." + t
		if _, ok := types[t]; !ok {
			p.Addf(ff, "unknown defender type %q", t)
		}
		for i, v := range s.Table8[t] {
			p.Probability(fmt.Sprintf("%s[%d]", ff, i), v)
		}
	}
	if s.Misjudgment != nil && shaped {
		matrix(p, f+".misjudgment", s.Misjudgment, m, m, true)
		for i, row := range s.Misjudgment {
			if len(row) == m {
				if sum := sumOf(row); !math.IsNaN(sum) && math.Abs(sum-1) > 1e-6 {
					p.Addf(fmt.Sprintf("%s.misjudgment[%d]", f, i), "row must sum to 1 (IDS verdict for a real attack), got %v", sum)
				}
			}
		}
	}
	if e := s.Expected; e != nil {
		p.Probability(f+".expected.alpha", e.Alpha)
		p.Probability(f+".expected.beta", e.Beta)
		p.Finite(f+".expected.attack_gain", e.AttackGain)
		p.Finite(f+".expected.defense_gain", e.DefenseGain)
	}
}

func (mk Markov) problems(p *strictyaml.Problems, stages map[string]int) {
	p.Probability("markov.discount", mk.Discount)
	out := map[string]float64{}
	first := map[string]int{}
	seen := map[[2]string]bool{}
	for i, t := range mk.Transitions {
		f := fmt.Sprintf("markov.transitions[%d]", i)
		fi, okf := stages[t.From]
		ti, okt := stages[t.To]
		if !okf {
			p.Addf(f+".from", "unknown stage %q", t.From)
		}
		if !okt {
			p.Addf(f+".to", "unknown stage %q", t.To)
		}
		if okf && okt && ti <= fi {
			p.Addf(f+".to", "transitions must move to a later stage (%s is not after %s)", t.To, t.From)
		}
		if seen[[2]string{t.From, t.To}] {
			p.Addf(f, "duplicate transition %s -> %s", t.From, t.To)
		}
		seen[[2]string{t.From, t.To}] = true
		p.Probability(f+".p", t.P)
		if _, ok := first[t.From]; !ok {
			first[t.From] = i
		}
		out[t.From] += t.P
	}
	if mk.NormalizeRows {
		return
	}
	for _, from := range sortedKeys(out) {
		if out[from] > 1+1e-9 {
			p.Addf(fmt.Sprintf("markov.transitions[%d]", first[from]),
				"transitions out of %s sum to %.4g > 1; fix them or set markov.normalize_rows: true", from, out[from])
		}
	}
}

func matrix(p *strictyaml.Problems, f string, mat [][]float64, m, n int, prob bool) {
	if len(mat) != m {
		p.Addf(f, "must be %d×%d, has %d rows", m, n, len(mat))
		return
	}
	for i, row := range mat {
		if len(row) != n {
			p.Addf(fmt.Sprintf("%s[%d]", f, i), "must have %d entries, has %d", n, len(row))
			continue
		}
		for j, v := range row {
			if prob {
				p.Probability(fmt.Sprintf("%s[%d][%d]", f, i, j), v)
			} else {
				p.Finite(fmt.Sprintf("%s[%d][%d]", f, i, j), v)
			}
		}
	}
}

func ids(p *strictyaml.Problems, f string, n int, id func(int) string) map[string]int {
	out := make(map[string]int, n)
	for i := 0; i < n; i++ {
		v := id(i)
		switch {
		case v == "":
			p.Addf(fmt.Sprintf("%s[%d].id", f, i), "is required")
		case hasKey(out, v):
			p.Addf(fmt.Sprintf("%s[%d].id", f, i), "duplicate id %q", v)
		default:
			out[v] = i
		}
	}
	return out
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

func refs(p *strictyaml.Problems, f string, list []string, known map[string]int, what string) {
	seen := map[string]bool{}
	for i, id := range list {
		if _, ok := known[id]; !ok {
			p.Addf(fmt.Sprintf("%s[%d]", f, i), "unknown %s %q", what, id)
		}
		if seen[id] {
			p.Addf(fmt.Sprintf("%s[%d]", f, i), "duplicate %s %q", what, id)
		}
		seen[id] = true
	}
}

func sumOf(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

func keys[V any](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(sortedKeys(m), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
