package game

import (
	"fmt"
	"strings"

	"github.com/proteus-defense/proteus/strictyaml"
)

// The paper's damaged text leaves choices open that decide its two headline results (Table 11,
// Figure 7). A Reading fixes the two that change what the defender decides; an Evaluation
// fixes the three that only change how the Monte Carlo comparison scores the decisions. Each
// choice is an axis with named values; docs/model.md, "Readings of the paper", argues each.

// Signal camouflage cost (SCC) readings: who pays which cost for an induced signal.
const (
	// SignalCostPrinted: the cost of the signal sent, as Section 4.2 prints it
	// ((m_H, m_L) = (60, 70)), paid by whichever type sends it (DC = … + SCC(m_n)).
	SignalCostPrinted = "printed"
	// SignalCostSwapped: the two printed costs exchanged (m_H 70, m_L 60), the order the
	// paper's own stage-1 gains (324 under m_L, 314 under m_H) imply.
	SignalCostSwapped = "swapped"
	// SignalCostFalseOnly: a camouflage cost, paid only when a type sends the other type's
	// signal (at that signal's printed cost); a type's own signal is free.
	SignalCostFalseOnly = "false-signal-only"
	// SignalCostNone: signals are free.
	SignalCostNone = "none"
)

// Signal deception cost (SDC) readings: what p(a_x | T_j) in SDC = Σ_j λ·p(a_x|T_j)·p(T_j|m) is.
const (
	// DeceptionDefenseCost: p(a_x | T_j) = 1 (the payoff cell fixes a_x), so SDC is the
	// attacker's belief-weighted misestimate of the defense cost and does not depend on a_x.
	DeceptionDefenseCost = "defense-cost"
	// DeceptionTypeConditional: p(a_x | T_j) is the attacker's type-conditional strategy, its
	// best reply to d_y if it knew the type were T_j (SAL − AC − G, ties split evenly), so the
	// deception cost falls on the attacks the attacker would tailor to each type.
	DeceptionTypeConditional = "type-conditional"
)

// Monte Carlo scoring readings: in whose payoff each model's decisions are scored.
const (
	// ScoringCommon: both models are scored by the defender's MTTEGDM payoff U_d in the same
	// drawn world, against an attacker that replies by that world's payoffs.
	ScoringCommon = "common"
	// ScoringOwn: each model is scored by its own payoff: MTTEGDM by U_d, the traditional model
	// by its own game's defender payoff against the attacker of its own game.
	ScoringOwn = "own"
)

// Monte Carlo discount readings.
const (
	// DiscountNone: the benefit of a run is the plain sum of its stages' payoffs.
	DiscountNone = "none"
	// DiscountPath: stage S_k's payoff is weighted by ϑ^(k−1) (the Markov criterion R of
	// Section 3.3 expanded along the drawn path).
	DiscountPath = "path"
)

// Readings of the traditional model's β for defenses that reconfigure.
const (
	// TraditionalBetaZero: without the MTD analysis a reconfiguring defense is credited with no
	// success (rate a = 0 in β_y = tanh(c*·a/(2π))).
	TraditionalBetaZero = "zero"
	// TraditionalBetaTable8: the traditional model is given Table 8's β for every defense.
	TraditionalBetaTable8 = "table8"
)

// Reading is how the engine reads the parts of the paper that change a decision: the signal
// camouflage cost and the signal deception cost. The zero value means EngineReading.
type Reading struct {
	SignalCost    string `yaml:"signal_cost" json:"signal_cost"`
	DeceptionCost string `yaml:"deception_cost" json:"deception_cost"`
}

// EngineReading is the reading the live engine decides with (docs/model.md, "Which reading
// the engine uses"): every signal sent costs its stated SCC, whatever the sender's type, and
// the attacker's deception cost does not depend on its attack.
var EngineReading = Reading{SignalCost: SignalCostPrinted, DeceptionCost: DeceptionDefenseCost}

// String names the reading as "signal-cost=V deception-cost=V" (ParseReading reads it back).
func (r Reading) String() string {
	r = r.withDefaults()
	return fmt.Sprintf("signal-cost=%s deception-cost=%s", r.SignalCost, r.DeceptionCost)
}

func (r Reading) withDefaults() Reading { return Cell{Reading: r}.withDefaults().Reading }

// Evaluation is how the Monte Carlo comparison (Figure 7) scores decisions. It never changes
// a decision. The zero value means DefaultEvaluation.
type Evaluation struct {
	Scoring         string `yaml:"scoring" json:"scoring"`
	Discount        string `yaml:"discount" json:"discount"`
	TraditionalBeta string `yaml:"traditional_beta" json:"traditional_beta"`
}

// DefaultEvaluation is the comparison docs/model.md stands behind: both models scored in one
// world, undiscounted, against the traditional model given Table 8's β (the strongest
// baseline, not a strawman).
var DefaultEvaluation = Evaluation{Scoring: ScoringCommon, Discount: DiscountNone, TraditionalBeta: TraditionalBetaTable8}

// String names the evaluation as "scoring=V discount=V traditional-beta=V".
func (e Evaluation) String() string {
	e = e.withDefaults()
	return fmt.Sprintf("scoring=%s discount=%s traditional-beta=%s", e.Scoring, e.Discount, e.TraditionalBeta)
}

func (e Evaluation) withDefaults() Evaluation { return Cell{Evaluation: e}.withDefaults().Evaluation }

// Cell is one combination of a reading and an evaluation: one row of the readings table.
type Cell struct {
	Reading    Reading    `json:"reading"`
	Evaluation Evaluation `json:"evaluation"`
}

// String names the cell with all five axes.
func (c Cell) String() string { return c.Reading.String() + " " + c.Evaluation.String() }

// withDefaults fills every empty axis of c from EngineReading and DefaultEvaluation.
func (c Cell) withDefaults() Cell {
	d := Cell{Reading: EngineReading, Evaluation: DefaultEvaluation}
	for i := range axes {
		if p := axes[i].of(&c); *p == "" {
			*p = *axes[i].of(&d)
		}
	}
	return c
}

// axis is one open choice: its CLI name, its model-file field, its values (the first is listed
// first in tables) and where it lives in a Cell.
type axis struct {
	name, field string
	values      []string
	of          func(*Cell) *string
}

var axes = []axis{
	{"signal-cost", "reading.signal_cost", []string{SignalCostPrinted, SignalCostSwapped, SignalCostFalseOnly, SignalCostNone},
		func(c *Cell) *string { return &c.Reading.SignalCost }},
	{"deception-cost", "reading.deception_cost", []string{DeceptionDefenseCost, DeceptionTypeConditional},
		func(c *Cell) *string { return &c.Reading.DeceptionCost }},
	{"scoring", "montecarlo.scoring", []string{ScoringCommon, ScoringOwn},
		func(c *Cell) *string { return &c.Evaluation.Scoring }},
	{"discount", "montecarlo.discount", []string{DiscountNone, DiscountPath},
		func(c *Cell) *string { return &c.Evaluation.Discount }},
	{"traditional-beta", "montecarlo.traditional_beta", []string{TraditionalBetaZero, TraditionalBetaTable8},
		func(c *Cell) *string { return &c.Evaluation.TraditionalBeta }},
}

// findAxis returns the index of the axis called name, or -1.
func findAxis(name string) int {
	for i := range axes {
		if axes[i].name == name {
			return i
		}
	}
	return -1
}

func axisNames() string {
	var n []string
	for _, a := range axes {
		n = append(n, a.name)
	}
	return strings.Join(n, ", ")
}

func (a *axis) check(v string) error {
	for _, w := range a.values {
		if v == w {
			return nil
		}
	}
	return fmt.Errorf("unknown %s %q (want one of %s)", a.name, v, strings.Join(a.values, ", "))
}

// problems checks the fields of c that are set; an empty field takes its default.
func (c Cell) problems(p *strictyaml.Problems) {
	for i := range axes {
		a := &axes[i]
		if v := *a.of(&c); v != "" {
			if err := a.check(v); err != nil {
				p.Addf(a.field, "%v", err)
			}
		}
	}
}

// ParseReading reads a reading written by Reading.String ("signal-cost=V deception-cost=V",
// whitespace-separated, either pair may be left out). Evaluation axes are refused.
func ParseReading(s string) (Reading, error) {
	var c Cell
	for _, kv := range strings.Fields(s) {
		name, v, ok := strings.Cut(kv, "=")
		i := findAxis(name)
		if !ok || i < 0 || (name != "signal-cost" && name != "deception-cost") {
			return Reading{}, fmt.Errorf("game: reading %q: want signal-cost=V or deception-cost=V", kv)
		}
		a := &axes[i]
		if err := a.check(v); err != nil {
			return Reading{}, fmt.Errorf("game: reading: %w", err)
		}
		*a.of(&c) = v
	}
	return c.Reading, nil
}

// ReadingSpace is a set of values per axis; Cells is its cross product.
type ReadingSpace struct {
	values [][]string // per axis, in axes order
}

// NewReadingSpace starts from the single cell base (empty fields take their defaults) and
// applies specs, each "AXIS=V1,V2,…", "AXIS=all" or "all" (every value of every axis). A
// later spec for the same axis replaces the earlier one.
func NewReadingSpace(base Cell, specs []string) (ReadingSpace, error) {
	base = base.withDefaults()
	s := ReadingSpace{values: make([][]string, len(axes))}
	for i := range axes {
		s.values[i] = []string{*axes[i].of(&base)}
		if err := axes[i].check(s.values[i][0]); err != nil {
			return s, fmt.Errorf("game: reading: %w", err)
		}
	}
	for _, spec := range specs {
		if spec == "all" {
			for i := range axes {
				s.values[i] = append([]string(nil), axes[i].values...)
			}
			continue
		}
		name, list, ok := strings.Cut(spec, "=")
		i := findAxis(name)
		if !ok || i < 0 {
			return s, fmt.Errorf("game: reading %q: want AXIS=V1,V2 or all (axes: %s)", spec, axisNames())
		}
		a := &axes[i]
		if list == "all" {
			s.values[i] = append([]string(nil), a.values...)
			continue
		}
		var vs []string
		seen := map[string]bool{}
		for _, v := range strings.Split(list, ",") {
			if err := a.check(v); err != nil {
				return s, fmt.Errorf("game: reading %q: %w", spec, err)
			}
			if seen[v] {
				return s, fmt.Errorf("game: reading %q: %s listed twice", spec, v)
			}
			seen[v] = true
			vs = append(vs, v)
		}
		s.values[i] = vs
	}
	return s, nil
}

// Cells lists the cross product, the first axis varying slowest.
func (s ReadingSpace) Cells() []Cell {
	out := []Cell{{}}
	for i := range axes {
		var next []Cell
		for _, c := range out {
			for _, v := range s.values[i] {
				d := c
				*axes[i].of(&d) = v
				next = append(next, d)
			}
		}
		out = next
	}
	return out
}
