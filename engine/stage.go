package engine

import "github.com/proteus-defense/proteus/game"

// chain is the model's Markov chain over stages: η(to | from), rows normalised as the model
// asks (markov.normalize_rows), used to decide whether evidence of a later stage may move an
// asset there.
type chain struct {
	n  int
	p  [][]float64 // p[from][to]
	id []string
}

func newChain(m *game.Model) *chain {
	c := &chain{n: len(m.Stages), p: make([][]float64, len(m.Stages))}
	idx := map[string]int{}
	for i, s := range m.Stages {
		idx[s.ID] = i
		c.id = append(c.id, s.ID)
		c.p[i] = make([]float64, len(m.Stages))
	}
	for _, t := range m.Markov.Transitions {
		c.p[idx[t.From]][idx[t.To]] += t.P
	}
	if m.Markov.NormalizeRows {
		for i := range c.p {
			var s float64
			for _, v := range c.p[i] {
				s += v
			}
			if s > 1 {
				for j := range c.p[i] {
					c.p[i][j] /= s
				}
			}
		}
	}
	return c
}

// path is the probability of the likeliest path from stage a to stage b (1 when a == b, 0
// when b cannot be reached). Stages are few, so a plain relaxation is enough.
func (c *chain) path(a, b int) float64 {
	best := make([]float64, c.n)
	best[a] = 1
	for range c.n {
		for i := range c.n {
			for j := range c.n {
				if v := best[i] * c.p[i][j]; v > best[j] {
					best[j] = v
				}
			}
		}
	}
	return best[b]
}

// move returns the stage an asset at stage cur (−1: none yet) goes to on evidence of stage
// to, and the path probability that justified it. Evidence of the current or an earlier
// stage does not move it (an attacker does not give up ground it holds); a later stage is
// entered when the likeliest η-path to it has probability ≥ min.
func (c *chain) move(cur, to int, min float64) (int, float64) {
	switch {
	case cur < 0:
		return to, 1
	case to == cur:
		return cur, 1
	}
	p := c.path(cur, to)
	if p >= min && p > 0 {
		return to, p
	}
	return cur, p
}
