package engine

import (
	"fmt"
	"math"
	"sync"

	"github.com/proteus-defense/proteus/game"
)

// Live are the parameters the engine solves the stage game with, measured when it decides.
type Live struct {
	CStar int `json:"cstar"` // the pool's cap on concurrent reconfigurations c*
	// Rate is the pool's measured reconfiguration rate a in the model's time unit
	// (engine.rate_unit; rebuilds per minute by default), rounded to 0.01.
	Rate float64 `json:"rate"`
	// Intensity is the attack intensity π from the source's event rate, rounded to 0.05.
	Intensity float64 `json:"intensity"`
}

func (l Live) rounded() Live {
	if l.CStar == 0 {
		return Live{}
	}
	l.Rate = math.Round(l.Rate*100) / 100
	l.Intensity = math.Max(minIntensity, math.Round(l.Intensity*20)/20)
	return l
}

// solver solves the model with live parameters, caching one solution per rounded parameter
// set (Algorithm 1 takes milliseconds; a stage change must not wait longer than that).
type solver struct {
	base *game.Model
	mu   sync.Mutex
	memo map[Live]*game.Solution
}

const maxMemo = 256

func newSolver(m *game.Model) *solver { return &solver{base: m, memo: map[Live]*game.Solution{}} }

// liveModel is the model with the live parameters in: c* replaces
// reconfiguration.max_concurrent, and the success β of every defense that reconfigures
// (its rate class has a positive rate in the model) against every attack becomes the MTD
// defense success β = tanh(c*·a/(2π)) of game.DefenseSuccess with the measured rate a and
// intensity π; a defense that does not reconfigure keeps the model's (Table 8) β.
//
// Zero parameters (no pool) leave the model as it is: the solution is then the one
// `proteus game solve` prints.
func liveModel(base *game.Model, l Live) *game.Model {
	if l.CStar == 0 {
		return base
	}
	m := *base
	m.Reconfiguration.MaxConcurrent = float64(l.CStar)
	reconf := map[string]bool{}
	for _, d := range base.Defenses {
		reconf[d.ID] = base.Reconfiguration.Rates[d.Rate] > 0
	}
	beta := game.DefenseSuccess(float64(l.CStar), l.Rate, l.Intensity)
	m.Stages = make([]game.Stage, len(base.Stages))
	for k, st := range base.Stages {
		ns := st
		ns.Success = make(map[string][][]float64, len(st.Success))
		for t, rows := range st.Success {
			nr := make([][]float64, len(rows))
			for x, row := range rows {
				nr[x] = append([]float64(nil), row...)
				for y := range nr[x] {
					if y < len(st.Defenses) && reconf[st.Defenses[y]] {
						nr[x][y] = beta
					}
				}
			}
			ns.Success[t] = nr
		}
		m.Stages[k] = ns
	}
	return &m
}

// solve returns the solution for l (rounded) and the rounded parameters it used.
func (s *solver) solve(l Live) (*game.Solution, Live, error) {
	l = l.rounded()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sol, ok := s.memo[l]; ok {
		return sol, l, nil
	}
	sol, err := game.Solve(liveModel(s.base, l))
	if err != nil {
		return nil, l, fmt.Errorf("engine: solve: %w", err)
	}
	if len(s.memo) >= maxMemo {
		clear(s.memo)
	}
	s.memo[l] = sol
	return sol, l, nil
}

// Choice is what the engine deploys for a stage: the defender type's best option, or the
// solver's overall choice when no type is configured.
type Choice struct {
	DefenderType string  `json:"defender_type"`
	Defense      string  `json:"defense"`
	Signal       string  `json:"signal"`
	Attack       string  `json:"predicted_attack"`
	AttackGain   float64 `json:"attack_gain"`
	DefenseGain  float64 `json:"defense_gain"`
}

func choose(r *game.StageResult, defenderType string) Choice {
	c := Choice{DefenderType: r.DefenderType, Defense: r.Defense, Signal: r.Signal, Attack: r.Attack, AttackGain: r.AttackGain, DefenseGain: r.DefenseGain}
	if defenderType == "" || defenderType == r.DefenderType {
		return c
	}
	best := -1
	for i, o := range r.Options {
		if o.DefenderType != defenderType {
			continue
		}
		if o.Best {
			best = i
			break
		}
		if best < 0 || o.DefenseGain > r.Options[best].DefenseGain {
			best = i
		}
	}
	if best >= 0 {
		o := r.Options[best]
		c = Choice{DefenderType: o.DefenderType, Defense: o.Defense, Signal: o.Signal, Attack: o.Attack, AttackGain: o.AttackGain, DefenseGain: o.DefenseGain}
	}
	return c
}
