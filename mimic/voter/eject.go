package voter

import (
	"sync"
	"sync/atomic"
	"time"
)

// Ejector is passive health checking: an executor whose requests fail for availability
// (refused, reset, timed out) after consecutive tries is left out of the picks for a while,
// so one server that is down costs neither a failed dial per request nor a dissent event
// per request. The first request after that while is a probe: if it fails again the executor
// stays out twice as long (up to max), if it answers it is back at once. An answer that
// dissents in content does not count here (trust and the rebuild policy deal with that).
// Ejection never leaves fewer executors than a request's quorum needs: the voter then picks
// among all of them as if none were out.
type Ejector struct {
	after     int // consecutive failures that eject; <= 0: never
	base, max time.Duration

	out     atomic.Int32 // executors out now or due for their probe: zero means nothing to filter
	tracked atomic.Int32 // len(m): zero means a success has nothing to reset
	mu      sync.Mutex
	m       map[string]*ejectState // only executors whose last request failed
}

type ejectState struct {
	fails   int
	ejected bool
	until   time.Time // out until then; after it the next request is a probe
	backoff time.Duration
}

// maxEjectEntries bounds the executors whose failures are being counted at once.
const maxEjectEntries = 1024

// NewEjector ejects an executor after after consecutive availability failures for base,
// doubling up to max while its probes fail; after <= 0 never ejects.
func NewEjector(after int, base, max time.Duration) *Ejector {
	return &Ejector{after: after, base: base, max: max, m: map[string]*ejectState{}}
}

// Result records one executor request's outcome. It returns how long id is now out for (0:
// it was not ejected by this failure) and whether a success brought it back.
func (e *Ejector) Result(id string, failed bool, now time.Time) (ejectedFor time.Duration, back bool) {
	if e.after <= 0 || !failed && e.tracked.Load() == 0 {
		return 0, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.m[id]
	if !failed {
		if st != nil {
			e.drop(id)
			if st.ejected {
				e.out.Add(-1)
				return 0, true
			}
		}
		return 0, false
	}
	if st == nil {
		if len(e.m) >= maxEjectEntries {
			for id, o := range e.m { // executors failing now and then, never ejected: forget them
				if !o.ejected {
					e.drop(id)
				}
			}
		}
		st = &ejectState{}
		e.m[id] = st
		e.tracked.Store(int32(len(e.m)))
	}
	st.fails++
	switch {
	case st.ejected && !now.Before(st.until): // the probe failed
		st.backoff = min(2*st.backoff, e.max)
	case !st.ejected && st.fails >= e.after:
		st.ejected, st.backoff = true, e.base
		e.out.Add(1)
	default: // not yet, or a request still in flight when it was ejected
		return 0, false
	}
	st.until = now.Add(st.backoff)
	return st.backoff, false
}

// Available returns the executors of all that are not out at now: all itself when none is.
func (e *Ejector) Available(all []Member, now time.Time) []Member {
	if e.out.Load() == 0 {
		return all
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	in := make([]Member, 0, len(all))
	found := 0
	for _, b := range all {
		if st := e.m[b.ID]; st != nil && st.ejected {
			found++
			if now.Before(st.until) {
				continue
			}
		}
		in = append(in, b)
	}
	if int32(found) < e.out.Load() {
		e.prune(all) // some ejected executor is gone (rotated away)
	}
	return in
}

// prune drops the state of executors no longer among all; called with mu held.
func (e *Ejector) prune(all []Member) {
	present := make(map[string]bool, len(all))
	for _, b := range all {
		present[b.ID] = true
	}
	for id, st := range e.m {
		if !present[id] {
			if st.ejected {
				e.out.Add(-1)
			}
			e.drop(id)
		}
	}
}

// drop forgets id; called with mu held.
func (e *Ejector) drop(id string) {
	delete(e.m, id)
	e.tracked.Store(int32(len(e.m)))
}

// OutUntil returns when id's spell ends, zero when it is not out at now.
func (e *Ejector) OutUntil(id string, now time.Time) time.Time {
	if e.out.Load() == 0 {
		return time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.m[id]; st != nil && st.ejected && now.Before(st.until) {
		return st.until
	}
	return time.Time{}
}
