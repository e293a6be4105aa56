package game

import "math"

// DefenseSuccess is the MTD defense success probability β_y of Section 3.2.1 (3):
//
//	β = (1 − e^(−c*·a/π)) / (1 + e^(−c*·a/π)) = tanh(c*·a / (2π))
//
// where c* is the cap on concurrent reconfigurations, a the reconfiguration rate and π the
// attack intensity. It rises with c* and a, falls with π and stays in [0,1). Non-positive or
// non-finite c*·a gives 0 (no reconfiguration, no MTD success); π ≤ 0 (no attack pressure)
// gives 1 when c*·a > 0.
func DefenseSuccess(cmax, rate, intensity float64) float64 {
	x := cmax * rate
	if math.IsNaN(x) || math.IsNaN(intensity) || x <= 0 {
		return 0
	}
	if intensity <= 0 {
		return 1
	}
	return math.Tanh(x / (2 * intensity))
}

// AttackSuccess is θ_xy = 1 − λ_x·β_y: the attack succeeds unless it is both detected
// (probability λ_x) and defeated (probability β_y). Inputs are clamped to [0,1].
func AttackSuccess(detection, defense float64) float64 {
	return 1 - clamp01(detection)*clamp01(defense)
}

func clamp01(v float64) float64 {
	switch {
	case v < 0 || math.IsNaN(v):
		return 0
	case v > 1:
		return 1
	}
	return v
}
