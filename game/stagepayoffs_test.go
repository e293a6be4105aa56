package game

import (
	"math"
	"testing"
)

// The exported payoffs are the ones the solution rests on: at every stage, the expected
// payoffs of the chosen option's mixes over Payoffs' matrices are its attack and defense gains.
func TestPayoffsMatchSolution(t *testing.T) {
	m := loadPaper(t)
	sol, err := Solve(m)
	if err != nil {
		t.Fatal(err)
	}
	for k, st := range sol.Stages {
		p, err := Payoffs(m, k+1, st.DefenderType, st.Signal)
		if err != nil {
			t.Fatal(err)
		}
		if p.Stage != st.ID || len(p.Attacker) != len(st.X) || len(p.Defender[0]) != len(st.Y) {
			t.Fatalf("stage %d: shape %+v", k+1, p)
		}
		ua, ud := expected(p.Attacker, st.X, st.Y), expected(p.Defender, st.X, st.Y)
		if math.Abs(ua-st.AttackGain) > 1e-9 || math.Abs(ud-st.DefenseGain) > 1e-9 {
			t.Errorf("stage %s: payoffs give %v/%v, the solution %v/%v", st.ID, ua, ud, st.AttackGain, st.DefenseGain)
		}
		if _, _, ok := p.Payoff(st.Attack, st.Defense); !ok {
			t.Errorf("stage %s: no payoff for %s/%s", st.ID, st.Attack, st.Defense)
		}
	}
	if _, err := Payoffs(m, 0, "high", "mH"); err == nil {
		t.Error("stage 0 accepted")
	}
	if _, err := Payoffs(m, 1, "nobody", "mH"); err == nil {
		t.Error("unknown type accepted")
	}
}
