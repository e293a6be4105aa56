package game

// StagePayoffs are one stage's payoffs for every (attack, defense) pair, for a defender of one
// type sending one signal, with the attacker's belief of the solved stage (its prior carried
// from the earlier stages, updated by the signal): the matrices the stage's solution is
// computed from. They let a defense chosen some other way (a fixed defense, a replayed
// attack's actual strategy) be scored in the model's own terms.
type StagePayoffs struct {
	Stage        string      `json:"stage"`
	DefenderType string      `json:"defender_type"`
	Signal       string      `json:"signal"`
	Attacks      []string    `json:"attacks"`
	Defenses     []string    `json:"defenses"`
	Belief       []float64   `json:"belief"`   // the attacker's belief over the model's types
	Attacker     [][]float64 `json:"attacker"` // [attack][defense]: U_a = SAL − AC − SDC − G against the true type
	Defender     [][]float64 `json:"defender"` // [attack][defense]: U_d = SAP − DC − DSR + R
}

// Payoff returns U_a and U_d of attack against defense (ids of the stage); ok is false when the
// stage has no such strategy.
func (p *StagePayoffs) Payoff(attack, defense string) (ua, ud float64, ok bool) {
	x, y := -1, -1
	for i, a := range p.Attacks {
		if a == attack {
			x = i
		}
	}
	for j, d := range p.Defenses {
		if d == defense {
			y = j
		}
	}
	if x < 0 || y < 0 {
		return 0, 0, false
	}
	return p.Attacker[x][y], p.Defender[x][y], true
}

// Payoffs returns stage k's (1-based) payoffs for defender type typeID sending signal. It
// solves the model for the attacker's belief, as StageEvolution does.
func Payoffs(m *Model, k int, typeID, signal string) (*StagePayoffs, error) {
	c, s, t, sig, belief, err := solvedStage(m, k, typeID, signal)
	if err != nil {
		return nil, err
	}
	g := c.stageGame(s, t, sig, belief)
	return &StagePayoffs{Stage: s.st.ID, DefenderType: typeID, Signal: signal, Attacks: s.st.Attacks, Defenses: s.st.Defenses,
		Belief: belief, Attacker: c.trueAttackerPayoffs(s, t, sig, belief), Defender: g.D}, nil
}
