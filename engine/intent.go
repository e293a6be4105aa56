package engine

import (
	"math"
	"time"
)

// intent is the evidence against one (source address, asset) pair.
//
// Pr(attack) combines evidence by a fading noisy-OR: each matched event of strength w is an
// independent reason to believe in an attack, and what was believed before fades with the
// half-life H, so on an event at time t
//
//	P(t) = 1 − (1 − P(t⁻)·2^(−Δt/H)) · (1 − w)
//
// The rate estimate counts events per minute with an exponential window of one minute,
// r(t) = r(t⁻)·e^(−Δt/1min) + 1; the live attack intensity is π = min(1, r / R) with R the
// configured engine.intensity_rate (docs/architecture.md, "Engine").
type intent struct {
	p float64
	// local is the same fading noisy-OR over this agent's own evidence only (every sensor but
	// the enclave); peerAct is whether the enclave's latest decision on a peer sighting for
	// this pair was act (its quorum of independent established reporters was met).
	local   float64
	peerAct bool
	rate    float64 // events per minute, exponentially windowed
	last    time.Time
	events  int
	pending []evidence // evidence since the last stored decision, newest last, bounded
	// the last decision taken for this pair
	decided   bool
	verdict   string
	stage     int
	strategy  string
	decidedAt time.Time
}

// maxPending bounds the evidence an intent keeps for its next decision.
const maxPending = 16

func (in *intent) add(now time.Time, w float64, halfLife time.Duration, local bool) {
	if !in.last.IsZero() && now.After(in.last) {
		dt := now.Sub(in.last)
		f := math.Exp2(-dt.Seconds() / halfLife.Seconds())
		in.p *= f
		in.local *= f
		in.rate *= math.Exp(-dt.Minutes())
	}
	in.p = 1 - (1-in.p)*(1-w)
	if local {
		in.local = 1 - (1-in.local)*(1-w)
	}
	in.rate++
	in.last = now
	in.events++
}

// probability is P faded to now.
func (in *intent) probability(now time.Time, halfLife time.Duration) float64 {
	if in.last.IsZero() || !now.After(in.last) {
		return in.p
	}
	return in.p * math.Exp2(-now.Sub(in.last).Seconds()/halfLife.Seconds())
}

// localProbability is the own-evidence part of P faded to now.
func (in *intent) localProbability(now time.Time, halfLife time.Duration) float64 {
	if in.last.IsZero() || !now.After(in.last) {
		return in.local
	}
	return in.local * math.Exp2(-now.Sub(in.last).Seconds()/halfLife.Seconds())
}

// intensity is π = min(1, r/R), at least minIntensity.
func (in *intent) intensity(perMinute float64) float64 {
	return math.Max(minIntensity, math.Min(1, in.rate/perMinute))
}

const minIntensity = 0.05
