package game

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/strictyaml"
)

// The engine names its reading in `proteus decisions show`; the string is a contract.
func TestEngineReadingString(t *testing.T) {
	if got, want := EngineReading.String(), "signal-cost=printed deception-cost=defense-cost"; got != want {
		t.Fatalf("EngineReading.String() = %q, want %q", got, want)
	}
	if got := (Reading{}).String(); got != EngineReading.String() {
		t.Errorf("zero reading = %q, want the engine's", got)
	}
	r, err := ParseReading(EngineReading.String())
	if err != nil || r != EngineReading {
		t.Errorf("ParseReading(String()) = %v, %v", r, err)
	}
	m := loadPaper(t)
	m.Reading = Reading{}
	sol, err := Solve(m)
	if err != nil {
		t.Fatal(err)
	}
	if sol.Reading != EngineReading {
		t.Errorf("solution of a model without a reading is under %v, want the engine's", sol.Reading)
	}
}

func TestParseReading(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Reading
		err  string
	}{
		{"signal-cost=swapped", Reading{SignalCost: SignalCostSwapped}, ""},
		{" deception-cost=type-conditional\tsignal-cost=none ", Reading{SignalCost: SignalCostNone, DeceptionCost: DeceptionTypeConditional}, ""},
		{"", Reading{}, ""},
		{"signal-cost=free", Reading{}, `unknown signal-cost "free"`},
		{"signal-cost", Reading{}, "want signal-cost=V"},
		{"scoring=own", Reading{}, "want signal-cost=V"}, // an evaluation axis is not a reading
		{"colour=red", Reading{}, "want signal-cost=V"},
		{"signal-cost=printed,swapped", Reading{}, "unknown signal-cost"},
	} {
		got, err := ParseReading(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestReadingSpace(t *testing.T) {
	all, err := NewReadingSpace(Cell{}, []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	cells := all.Cells()
	if len(cells) != 4*2*2*2*2 {
		t.Fatalf("all: %d cells", len(cells))
	}
	seen := map[Cell]bool{}
	for _, c := range cells {
		if seen[c] {
			t.Errorf("duplicate cell %v", c)
		}
		seen[c] = true
		var p strictyaml.Problems
		c.problems(&p)
		if len(p) != 0 {
			t.Errorf("cell %v: %v", c, p)
		}
	}
	if cells[0] != (Cell{Reading: Reading{SignalCostPrinted, DeceptionDefenseCost}, Evaluation: Evaluation{ScoringCommon, DiscountNone, TraditionalBetaZero}}) {
		t.Errorf("first cell %v", cells[0])
	}

	base := Cell{Reading: Reading{SignalCost: SignalCostSwapped}}
	s, err := NewReadingSpace(base, []string{"scoring=own,common", "traditional-beta=all"})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Cells()
	if len(got) != 4 || got[0].Reading != (Reading{SignalCostSwapped, DeceptionDefenseCost}) ||
		got[0].Evaluation != (Evaluation{ScoringOwn, DefaultEvaluation.Discount, TraditionalBetaZero}) ||
		got[3].Evaluation != (Evaluation{ScoringCommon, DefaultEvaluation.Discount, TraditionalBetaTable8}) {
		t.Errorf("cells %v", got)
	}
	one, err := NewReadingSpace(Cell{}, nil)
	if err != nil || len(one.Cells()) != 1 || one.Cells()[0] != (Cell{EngineReading, DefaultEvaluation}) {
		t.Errorf("no specs: %v, %v", one.Cells(), err)
	}
	for _, bad := range [][]string{{"scoring=mine"}, {"colour=red"}, {"scoring"}, {"discount=none,none"}, {"scoring="}, {"ALL"}} {
		if _, err := NewReadingSpace(Cell{}, bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := NewReadingSpace(Cell{Evaluation: Evaluation{Scoring: "mine"}}, nil); err == nil {
		t.Error("a bad base accepted")
	}
}

// Who pays what for a signal under each reading (type 0 = high, own signal mH 60; type 1 =
// low, own signal mL 70).
func TestSignalCosts(t *testing.T) {
	types := []DefenderType{{ID: "high", Signal: "mH", SignalCost: 60}, {ID: "low", Signal: "mL", SignalCost: 70}}
	for reading, want := range map[string][][]float64{
		SignalCostPrinted:   {{60, 70}, {60, 70}},
		SignalCostSwapped:   {{70, 60}, {70, 60}},
		SignalCostFalseOnly: {{0, 70}, {60, 0}},
		SignalCostNone:      {{0, 0}, {0, 0}},
	} {
		if got := signalCosts(types, reading); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", reading, got, want)
		}
	}
}

// Under the type-conditional reading p(a_x|T_j) is a distribution over attacks, the deception
// cost depends on the attack, and a truthful signal believed fully costs nothing.
func TestTypeConditionalDeceptionCost(t *testing.T) {
	m := loadPaper(t)
	m.Reading = Reading{DeceptionCost: DeceptionTypeConditional}
	c, err := compile(m)
	if err != nil {
		t.Fatal(err)
	}
	dependsOnAttack := false
	for k := range c.stages {
		s := &c.stages[k]
		for j := range m.Types {
			for y := range s.defenses {
				var sum float64
				for _, p := range s.typeMix[j][y] {
					sum += p
				}
				if math.Abs(sum-1) > 1e-12 {
					t.Fatalf("%s: p(·|T_%d, d_%d) sums to %v", s.st.ID, j, y, sum)
				}
			}
		}
		belief := []float64{0.5, 0.5}
		for y := range s.defenses {
			sdc := func(x int) float64 {
				// U_a without signal minus U_a with signal mL is the SDC.
				return c.attackerPayoff(s, 0, NoSignal, x, y, belief) - c.attackerPayoff(s, 0, 1, x, y, belief)
			}
			if math.Abs(sdc(0)-sdc(1)) > 1e-9 {
				dependsOnAttack = true
			}
			for x := range s.attacks {
				if v := sdc(x); v < 0 {
					t.Errorf("%s: negative deception cost %v", s.st.ID, v)
				}
				// A high defender claiming high to an attacker sure it is high: no deception.
				if v := c.attackerPayoff(s, 0, NoSignal, x, y, []float64{1, 0}) - c.attackerPayoff(s, 0, 0, x, y, []float64{1, 0}); v != 0 {
					t.Errorf("%s: truthful signal costs the attacker %v", s.st.ID, v)
				}
			}
		}
	}
	if !dependsOnAttack {
		t.Error("the type-conditional deception cost never depends on the attack")
	}
	// Under the engine's reading it never does.
	m.Reading = EngineReading
	c, err = compile(m)
	if err != nil {
		t.Fatal(err)
	}
	for k := range c.stages {
		s := &c.stages[k]
		for y := range s.defenses {
			b := []float64{0.3, 0.7}
			d0 := c.attackerPayoff(s, 0, NoSignal, 0, y, b) - c.attackerPayoff(s, 0, 1, 0, y, b)
			d1 := c.attackerPayoff(s, 0, NoSignal, 1, y, b) - c.attackerPayoff(s, 0, 1, 1, y, b)
			if math.Abs(d0-d1) > 1e-9 {
				t.Errorf("%s: defense-cost SDC depends on the attack (%v, %v)", s.st.ID, d0, d1)
			}
		}
	}
}

// Table 11 names m_L in all five stages. With the signal costs swapped (m_H 70, m_L 60) the
// solve picks m_L in all five, the high type everywhere, and Table 11's defense wherever it is
// one of the stage's (S1 d2, S2 d4); as printed it picks m_L in S1 only.
func TestTable11SignalsUnderSwappedCosts(t *testing.T) {
	m := loadPaper(t)
	for _, c := range []struct {
		reading Reading
		signals []string
		repro   bool
	}{
		{Reading{SignalCost: SignalCostSwapped}, []string{"mL", "mL", "mL", "mL", "mL"}, true},
		{Reading{SignalCost: SignalCostSwapped, DeceptionCost: DeceptionTypeConditional}, []string{"mL", "mL", "mL", "mL", "mL"}, true},
		{Reading{SignalCost: SignalCostPrinted}, []string{"mL", "mH", "mH", "mH", "mH"}, false},
	} {
		m.Reading = c.reading
		sol, err := Solve(m)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range sol.Stages {
			got = append(got, s.Signal)
		}
		if !reflect.DeepEqual(got, c.signals) {
			t.Errorf("%v: signals %v, want %v", c.reading, got, c.signals)
		}
		a := CompareExpected(m, sol)
		if a.Reproduces() != c.repro || a.Stages != 5 || a.Types != 5 || a.Comparable != 2 || a.Defenses != 2 {
			t.Errorf("%v: agreement %+v, reproduces %v", c.reading, a, a.Reproduces())
		}
	}
}

func TestMeanInterval(t *testing.T) {
	iv := MeanInterval([]float64{1, 2, 3, 4, 5})
	// mean 3, sd √2.5, t(4; 0.975) = 2.776445
	h := 2.776445105 * math.Sqrt(2.5) / math.Sqrt(5)
	if math.Abs(iv.Mean-3) > 1e-12 || math.Abs(iv.SD-math.Sqrt(2.5)) > 1e-12 ||
		math.Abs(iv.Low-(3-h)) > 1e-6 || math.Abs(iv.High-(3+h)) > 1e-6 {
		t.Errorf("interval %+v, want 3 ± %v", iv, h)
	}
	if iv := MeanInterval([]float64{2, 2, 2}); iv.Low != 2 || iv.High != 2 {
		t.Errorf("constant sample: %+v", iv)
	}
}

// FuzzParseReading: an accepted reading prints back to a string that parses to itself.
func FuzzParseReading(f *testing.F) {
	for _, s := range []string{EngineReading.String(), "signal-cost=swapped", "deception-cost=type-conditional signal-cost=none", "scoring=own", "=", "signal-cost=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReading(s)
		if err != nil {
			return
		}
		back, err := ParseReading(r.String())
		if err != nil || back != r.withDefaults() {
			t.Fatalf("%q → %v → %q → %v, %v", s, r, r.String(), back, err)
		}
	})
}

// FuzzReadingSpace: any accepted spec list gives valid, distinct cells.
func FuzzReadingSpace(f *testing.F) {
	for _, s := range []string{"all", "scoring=own,common", "signal-cost=all", "discount=path", "x=y", "traditional-beta=zero,table8,zero"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := NewReadingSpace(Cell{}, strings.Split(spec, ";"))
		if err != nil {
			return
		}
		cells := s.Cells()
		if len(cells) == 0 || len(cells) > 64 {
			t.Fatalf("%q: %d cells", spec, len(cells))
		}
		seen := map[Cell]bool{}
		for _, c := range cells {
			var p strictyaml.Problems
			c.problems(&p)
			if len(p) != 0 || seen[c] {
				t.Fatalf("%q: cell %v: %v (duplicate %v)", spec, c, p, seen[c])
			}
			seen[c] = true
		}
	})
}
