package mimic

import (
	"time"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// The gateway's schedulers and trust are the voter core's (see package voter).
type (
	Scheduler  = voter.Scheduler
	Trust      = voter.Trust
	TrustScore = voter.TrustScore
)

// Scheduler names accepted by NewScheduler.
const (
	SchedRandom       = voter.SchedRandom
	SchedRoundRobin   = voter.SchedRoundRobin
	SchedTrustWeight  = voter.SchedTrustWeight
	SchedMaxDiversity = voter.SchedMaxDiversity
)

// Schedulers lists the scheduler names.
var Schedulers = voter.Schedulers

// NewScheduler returns the scheduler called name (see voter.NewScheduler).
func NewScheduler(name string, trust *Trust) (Scheduler, error) {
	return voter.NewScheduler(name, trust)
}

// NewTrust returns a Trust (see voter.NewTrust).
func NewTrust(window, threshold int, period time.Duration) *Trust {
	return voter.NewTrust(window, threshold, period)
}
