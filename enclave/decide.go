package enclave

import "math"

// Decision is the outcome of the three-way decision on a target.
type Decision string

// Decisions. Act applies the countermeasure for the report's TTL; Defer raises vigilance;
// Ignore does nothing; Irrelevant means the report does not concern this agent's exposure
// and is only stored.
const (
	Act        Decision = "act"
	Defer      Decision = "defer"
	Ignore     Decision = "ignore"
	Irrelevant Decision = "irrelevant"
)

// Evidence is one reporter's support for a target: its trust and the report's confidence,
// both in [0,1].
type Evidence struct {
	Reporter   string
	Trust      float64
	Confidence float64
}

// Combine merges the evidence of distinct reporters as independent noisy witnesses:
// 1 − Π(1 − trust·confidence). Only the strongest report of each reporter counts, so a
// peer cannot raise the evidence by repeating itself. The result is in [0,1].
func Combine(ev []Evidence) float64 {
	best := map[string]float64{}
	for _, e := range ev {
		w := clamp01(e.Trust) * clamp01(e.Confidence)
		if w > best[e.Reporter] {
			best[e.Reporter] = w
		}
	}
	miss := 1.0
	for _, w := range best {
		miss *= 1 - w
	}
	return 1 - miss
}

// Decide is the three-way decision: act at or above alpha, ignore at or below beta, defer
// in between (beta < alpha).
func Decide(evidence, alpha, beta float64) Decision {
	switch {
	case evidence >= alpha:
		return Act
	case evidence <= beta:
		return Ignore
	default:
		return Defer
	}
}

func clamp01(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return math.Min(1, math.Max(0, v))
}
