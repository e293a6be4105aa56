package game

import (
	"fmt"
	"sort"
)

// Weighting is one of the three weighting strategies of the three-way decision (Section 3.2.1):
// a_P puts the largest weight on the most valuable security attribute, a_B on the second and
// a_N on the least valuable one.
type Weighting int

// The three weighting strategies; their names follow the three-way regions POS, BND, NEG.
const (
	WeightPOS Weighting = iota // a_P: W(1) ≥ W(2) ≥ W(3)
	WeightBND                  // a_B: W(2) ≥ W(3) ≥ W(1)
	WeightNEG                  // a_N: W(3) ≥ W(2) ≥ W(1)
)

func (w Weighting) String() string {
	switch w {
	case WeightPOS:
		return "aP"
	case WeightBND:
		return "aB"
	case WeightNEG:
		return "aN"
	}
	return fmt.Sprintf("Weighting(%d)", int(w))
}

// Losses is the loss table of the three-way decision (Tables 1 and 2): the loss of taking
// action P (accept), B (defer) or N (reject) when an attack is present (Y) or absent (N).
type Losses struct {
	PY, BY, NY float64
	PN, BN, NN float64
}

// Ranked returns the three attribute values R(1) ≥ R(2) ≥ R(3) and, for each rank, the index
// (0 confidentiality, 1 integrity, 2 availability) of the attribute holding it. Ties keep
// the C, I, A order.
func Ranked(values [3]float64) (r [3]float64, idx [3]int) {
	idx = [3]int{0, 1, 2}
	sort.SliceStable(idx[:], func(a, b int) bool { return values[idx[a]] > values[idx[b]] })
	for k, i := range idx {
		r[k] = values[i]
	}
	return r, idx
}

// ThreeWayLosses builds Table 2 from a device's security-attribute values. Accepting (a_P)
// costs 0 under attack and 1 without; rejecting (a_N) costs 1 under attack and 0 without; the
// boundary action costs the products of the neighbouring-level evolution rates:
//
//	λ_BY = R1/(R1+R2) · R2/(R2+R3) · R3/(R3+R1)
//	λ_BN = R3/(R2+R3) · R2/(R2+R3)
//
// with R1 ≥ R2 ≥ R3 the ranked values (reading chosen in docs/model.md).
func ThreeWayLosses(values [3]float64) Losses {
	r, _ := Ranked(values)
	ratio := func(a, b float64) float64 {
		if a+b == 0 {
			return 0.5
		}
		return a / (a + b)
	}
	return Losses{
		PY: 0, PN: 1,
		BY: ratio(r[0], r[1]) * ratio(r[1], r[2]) * ratio(r[2], r[0]),
		BN: ratio(r[2], r[1]) * ratio(r[1], r[2]),
		NY: 1, NN: 0,
	}
}

// Thresholds returns the three-way thresholds of Section 2.1:
//
//	α = (λ_PN − λ_BN) / ((λ_PN − λ_BN) + (λ_BY − λ_PY))
//	β = (λ_BN − λ_NN) / ((λ_BN − λ_NN) + (λ_NY − λ_BY))
//
// For a loss table that satisfies the orderings of Section 2.1 both are in [0,1] and β < α.
func (l Losses) Thresholds() (alpha, beta float64) {
	num := l.PN - l.BN
	alpha = num / (num + (l.BY - l.PY))
	nb := l.BN - l.NN
	beta = nb / (nb + (l.NY - l.BY))
	return alpha, beta
}

// Classify places the evidence probability pr (here the attack intensity π, the stand-in for
// Pr(attack | evidence)) in a region: pr ≥ α → a_P, pr ≤ β → a_N, otherwise a_B.
func Classify(pr, alpha, beta float64) Weighting {
	switch {
	case pr >= alpha:
		return WeightPOS
	case pr <= beta:
		return WeightNEG
	default:
		return WeightBND
	}
}

// Weights returns the damage weights W(C_c), W(C_i), W(C_a) of one weighting strategy. The
// magnitudes are the device's ranked values normalised to sum 1 (w1 ≥ w2 ≥ w3); the strategy
// decides which attribute receives which magnitude:
//
//	a_P: rank 1 → w1, rank 2 → w2, rank 3 → w3
//	a_B: rank 2 → w1, rank 3 → w2, rank 1 → w3
//	a_N: rank 3 → w1, rank 2 → w2, rank 1 → w3
func Weights(values [3]float64, w Weighting) [3]float64 {
	r, idx := Ranked(values)
	total := r[0] + r[1] + r[2]
	mag := [3]float64{1.0 / 3, 1.0 / 3, 1.0 / 3}
	if total > 0 {
		mag = [3]float64{r[0] / total, r[1] / total, r[2] / total}
	}
	var order [3]int // order[k] = rank (0-based) that receives magnitude k
	switch w {
	case WeightBND:
		order = [3]int{1, 2, 0}
	case WeightNEG:
		order = [3]int{2, 1, 0}
	default:
		order = [3]int{0, 1, 2}
	}
	var out [3]float64
	for k, rank := range order {
		out[idx[rank]] = mag[k]
	}
	return out
}
