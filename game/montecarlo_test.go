package game

import (
	"math"
	"reflect"
	"testing"
)

func allCells(t *testing.T) []Cell {
	t.Helper()
	s, err := NewReadingSpace(Cell{}, []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	return s.Cells()
}

func TestMonteCarloDeterministic(t *testing.T) {
	m := loadPaper(t)
	a, err := MonteCarlo(m, 12, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MonteCarlo(m, 12, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different results")
	}
	c, err := MonteCarlo(m, 12, 43, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a.Cells[0].MTTEGDM, c.Cells[0].MTTEGDM) {
		t.Error("different seeds gave identical runs")
	}
	if len(a.Cells) != 1 || a.Cells[0].Cell != (Cell{m.Reading, m.MonteCarlo.Evaluation()}) {
		t.Errorf("without cells: %v", a.Cells)
	}
	for _, runs := range []int{0, 1, -3} {
		if _, err := MonteCarlo(m, runs, 1, nil); err == nil {
			t.Errorf("%d runs accepted", runs)
		}
	}
	if _, err := MonteCarlo(m, 4, 1, []Cell{{Evaluation: Evaluation{Scoring: "mine"}}}); err == nil {
		t.Error("a bad cell accepted")
	}
}

// Every cell's figures are consistent with its runs: means, cumulative series, per-stage
// figures summing to the mean, win counts, the interval around the mean difference.
func TestMonteCarloCellsConsistent(t *testing.T) {
	m := loadPaper(t)
	rep, err := MonteCarlo(m, 8, 3, allCells(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cells) != 64 || !reflect.DeepEqual(rep.Stages, []string{"S1", "S2", "S3", "S4", "S5"}) {
		t.Fatalf("%d cells, stages %v", len(rep.Cells), rep.Stages)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(a)) }
	for _, c := range rep.Cells {
		if c.Name != c.Cell.String() || len(c.MTTEGDM) != 8 || len(c.CumStageMTTEGDM) != 5 {
			t.Fatalf("%s: shape", c.Name)
		}
		var sm, st float64
		diff := make([]float64, len(c.MTTEGDM))
		for i := range c.MTTEGDM {
			sm += c.MTTEGDM[i]
			st += c.Traditional[i]
			diff[i] = c.MTTEGDM[i] - c.Traditional[i]
		}
		if !near(sm/8, c.MeanMTTEGDM) || !near(st/8, c.MeanTraditional) || !near(c.CumMTTEGDM[7], sm) {
			t.Errorf("%s: means %v %v, runs %v %v", c.Name, c.MeanMTTEGDM, c.MeanTraditional, sm/8, st/8)
		}
		if !near(c.CumStageMTTEGDM[4], c.MeanMTTEGDM) || !near(c.CumStageTraditional[4], c.MeanTraditional) {
			t.Errorf("%s: stages sum to %v %v, means %v %v", c.Name, c.CumStageMTTEGDM[4], c.CumStageTraditional[4], c.MeanMTTEGDM, c.MeanTraditional)
		}
		if c.Wins+c.Ties+c.Losses != 8 {
			t.Errorf("%s: %d/%d/%d", c.Name, c.Wins, c.Ties, c.Losses)
		}
		if d := c.Difference; !near(d.Mean, c.MeanMTTEGDM-c.MeanTraditional) || !(d.Low <= d.Mean && d.Mean <= d.High) ||
			!reflect.DeepEqual(d, MeanInterval(diff)) {
			t.Errorf("%s: interval %+v", c.Name, d)
		}
		if c.Reading.SignalCost == SignalCostNone && c.MeanSignalCost != 0 {
			t.Errorf("%s: free signals cost %v", c.Name, c.MeanSignalCost)
		}
		if c.Reading.SignalCost == SignalCostPrinted && !(c.MeanSignalCost > 0) {
			t.Errorf("%s: signals cost %v", c.Name, c.MeanSignalCost)
		}
	}
}

// The cells share their draws: the traditional model sends no signal, so under common scoring
// its runs are the same under every reading of the signal costs; MTTEGDM's are the same
// under every evaluation that neither discounts nor changes its scoring; discounting by
// ϑ^(k−1) ≤ 1 can only shrink positive benefits; the traditional model's β changes its
// figures, not MTTEGDM's.
func TestMonteCarloPairedDraws(t *testing.T) {
	m := loadPaper(t)
	rep, err := MonteCarlo(m, 10, 5, allCells(t))
	if err != nil {
		t.Fatal(err)
	}
	byCell := map[Cell]CellResult{}
	for _, c := range rep.Cells {
		byCell[c.Cell] = c
	}
	for _, c := range rep.Cells {
		other := c.Cell
		other.Reading = EngineReading
		if c.Evaluation.Scoring == ScoringCommon && !reflect.DeepEqual(c.Traditional, byCell[other].Traditional) {
			t.Errorf("%s: traditional runs depend on the reading", c.Name)
		}
		e := c.Cell
		e.Evaluation.TraditionalBeta = TraditionalBetaZero
		e.Evaluation.Scoring = ScoringCommon
		if !reflect.DeepEqual(c.MTTEGDM, byCell[e].MTTEGDM) {
			t.Errorf("%s: MTTEGDM's runs depend on the traditional model's β or scoring", c.Name)
		}
		if c.Evaluation.Discount == DiscountPath {
			u := c.Cell
			u.Evaluation.Discount = DiscountNone
			// Stage 1 is never discounted (ϑ^0), later stages are.
			if c.StageMTTEGDM[0] != byCell[u].StageMTTEGDM[0] {
				t.Errorf("%s: stage 1 discounted", c.Name)
			}
			for k := 1; k < 5; k++ {
				if w := math.Pow(m.Markov.Discount, float64(k)); math.Abs(c.StageMTTEGDM[k]-w*byCell[u].StageMTTEGDM[k]) > 1e-9*math.Abs(byCell[u].StageMTTEGDM[k]) {
					t.Errorf("%s: stage %d %v, want ϑ^%d × %v", c.Name, k+1, c.StageMTTEGDM[k], k, byCell[u].StageMTTEGDM[k])
				}
			}
		}
	}
}

// The readings the issue names, figures pinned on 50 runs of seed 1 (docs/model.md's table
// shows every cell): each line is a claim the documentation makes.
func TestMonteCarloReadingsPinned(t *testing.T) {
	m := loadPaper(t)
	rep, err := MonteCarlo(m, 50, 1, allCells(t))
	if err != nil {
		t.Fatal(err)
	}
	get := func(sc, dc, scoring, disc, tb string) CellResult {
		want := Cell{Reading{sc, dc}, Evaluation{scoring, disc, tb}}
		for _, c := range rep.Cells {
			if c.Cell == want {
				return c
			}
		}
		t.Fatalf("no cell %v", want)
		return CellResult{}
	}
	// The engine's cell: MTTEGDM loses in every run, by about its signal cost.
	e := get(SignalCostPrinted, DeceptionDefenseCost, ScoringCommon, DiscountNone, TraditionalBetaTable8)
	if e.Wins != 0 || !(e.Difference.High < 0) || math.Abs(e.Difference.Mean+e.MeanSignalCost) > 10 {
		t.Errorf("engine cell: %d wins, difference %+v, signal cost %v", e.Wins, e.Difference, e.MeanSignalCost)
	}
	// As shipped before the readings (traditional β zero): MTTEGDM behind, 10 of 50.
	if c := get(SignalCostPrinted, DeceptionDefenseCost, ScoringCommon, DiscountNone, TraditionalBetaZero); c.Wins != 10 || !(c.Difference.High < 0) {
		t.Errorf("as shipped: %d wins, %+v", c.Wins, c.Difference)
	}
	// Free signals with a traditional model that ignores reconfiguration: Figure 7's gap.
	if c := get(SignalCostNone, DeceptionDefenseCost, ScoringCommon, DiscountNone, TraditionalBetaZero); !(c.Difference.Low > 0) || c.Ties == 0 {
		t.Errorf("free signals: %+v, ties %d", c.Difference, c.Ties)
	}
	// Free signals against the traditional model given Table 8's β: no difference to speak of.
	if c := get(SignalCostNone, DeceptionDefenseCost, ScoringCommon, DiscountNone, TraditionalBetaTable8); !(c.Difference.Low < 0 && c.Difference.High > 0) {
		t.Errorf("free signals, Table 8 β: %+v", c.Difference)
	}
	// Each model by its own payoff: the traditional model's own figures are far lower.
	if c := get(SignalCostPrinted, DeceptionDefenseCost, ScoringOwn, DiscountNone, TraditionalBetaZero); c.Wins < 45 || !(c.Difference.Low > 0) {
		t.Errorf("own scoring: %d wins, %+v", c.Wins, c.Difference)
	}
}
