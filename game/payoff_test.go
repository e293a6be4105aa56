package game

import (
	"math"
	"testing"
)

// One cell of the stage-1 game recomputed by hand from the formulas in docs/model.md, with the
// paper's numbers: device ndd (C, I, A) = (300, 250, 280), C_r = 3, ξ_1 = 0.05; attack a1
// (AC 140, λ 0.8, π 0.9 ≥ α, so weighting a_P); defense d1 (high cost 85, low cost 205, μ 0.1,
// random rate 1.5); high type β(a1, d1) = 0.56; signal mH.
func TestPayoffCellByHand(t *testing.T) {
	m := loadPaper(t)
	c, err := compile(m)
	if err != nil {
		t.Fatal(err)
	}
	s := &c.stages[0]
	const high, mH, a1, d1 = 0, 0, 0, 0
	belief := []float64{0.7, 0.3}

	theta := 1 - 0.8*0.56
	sumWR := (300.0*300 + 250*250 + 280*280) / 830 // a_P: W = (300, 250, 280)/830
	sal := 1.05 * 3 * theta * sumWR
	g := 20 * theta
	sdc := 0.3 * math.Abs(205-85) // belief in low × |C_low(d1) − C_claimed(d1)|
	wantA := sal - 140 - sdc - g
	if got := c.attackerPayoff(s, high, mH, a1, d1, belief); math.Abs(got-wantA) > 1e-9 {
		t.Errorf("U_a = %v, want %v", got, wantA)
	}

	sap := 0.95 * 3 * (0.1*theta + (1 - theta)) * (830 - sumWR)
	nc := 40 * (1 - 1/(1+math.Exp(1.5-1)))
	dc := 85 + nc + 50 + 60 // ASSC + NC + AIC(high) + SCC(mH)
	if s.best[high][1] != 1 {
		t.Fatalf("d*(a2) for the high type = d%d, the hand computation assumes d2", s.best[high][1]+1)
	}
	dsr := 0.1 * math.Abs(155-85) // p(a2|a1) × |C_high(d*(a2)) − C_high(d1)|
	r := 0.5 * 40
	wantD := sap - dc - dsr + r
	if got := c.defenderPayoff(s, high, mH, a1, d1); math.Abs(got-wantD) > 1e-9 {
		t.Errorf("U_d = %v, want %v", got, wantD)
	}

	// Without a signal there is no camouflage cost and no deception cost.
	if got := c.defenderPayoff(s, high, NoSignal, a1, d1); math.Abs(got-(wantD+60)) > 1e-9 {
		t.Errorf("U_d without signal = %v, want %v", got, wantD+60)
	}
	if got := c.attackerPayoff(s, high, NoSignal, a1, d1, belief); math.Abs(got-(wantA+sdc)) > 1e-9 {
		t.Errorf("U_a without signal = %v, want %v", got, wantA+sdc)
	}
}

// The attacker's matrix of a stage game is its payoff averaged over its belief about the type;
// the defender's is its own.
func TestStageGameUsesBelief(t *testing.T) {
	m := loadPaper(t)
	c, err := compile(m)
	if err != nil {
		t.Fatal(err)
	}
	s := &c.stages[0]
	belief := []float64{0.25, 0.75}
	g := c.stageGame(s, 1, 1, belief)
	for x := range g.A {
		for y := range g.A[x] {
			want := 0.25*c.attackerPayoff(s, 0, 1, x, y, belief) + 0.75*c.attackerPayoff(s, 1, 1, x, y, belief)
			if math.Abs(g.A[x][y]-want) > 1e-9 {
				t.Errorf("A[%d][%d] = %v, want %v", x, y, g.A[x][y], want)
			}
			if g.D[x][y] != c.defenderPayoff(s, 1, 1, x, y) {
				t.Errorf("D[%d][%d] is not the low type's payoff", x, y)
			}
		}
	}
}
