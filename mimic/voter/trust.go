package voter

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Trust keeps, per executor, the outcomes of its last Window requests (agreed with the
// decision or dissented), so trust = 1 - dissent frequency over a sliding window, and the
// times of its recent dissents for the rebuild policy: Threshold dissents within Period
// trigger one rebuild, and no other follows within Period (an executor that dissents on every
// request is asked for once, not once per Threshold requests).
type Trust struct {
	window    int
	threshold int
	period    time.Duration
	// strict, when positive and below threshold, replaces it (Tighten).
	strict atomic.Int32

	mu sync.Mutex
	m  map[string]*trustEntry
}

type trustEntry struct {
	ring     []bool // true = dissent
	pos, n   int
	errs     int
	recent   []time.Time // dissent times within period, oldest first
	rebuilt  time.Time   // when a rebuild was last asked for
	lastSeen time.Time
}

// NewTrust returns a Trust with a sliding window of window requests per executor that asks
// for a rebuild after threshold dissents within period (threshold 0 never does).
func NewTrust(window, threshold int, period time.Duration) *Trust {
	return &Trust{window: max(window, 1), threshold: threshold, period: period, m: map[string]*trustEntry{}}
}

// Tighten makes an executor due for a rebuild after threshold dissents within the period
// when that is fewer than the configured threshold (the agent's vigilance); 0 returns to the
// configured one. A Trust configured never to rebuild still never does.
func (t *Trust) Tighten(threshold int) { t.strict.Store(int32(max(threshold, 0))) }

// Record adds one outcome for id and reports whether id is now due for a rebuild; its
// dissent history is then cleared so one burst triggers one rebuild.
func (t *Trust) Record(id string, dissent bool, now time.Time) (rebuild bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil {
		e = &trustEntry{ring: make([]bool, t.window)}
		t.m[id] = e
		if len(t.m) > 4*t.window+1024 {
			t.prune(now)
		}
	}
	e.lastSeen = now
	if e.n == len(e.ring) {
		if e.ring[e.pos] {
			e.errs--
		}
	} else {
		e.n++
	}
	e.ring[e.pos] = dissent
	if dissent {
		e.errs++
	}
	e.pos = (e.pos + 1) % len(e.ring)
	threshold := t.threshold
	if st := int(t.strict.Load()); st > 0 && st < threshold {
		threshold = st
	}
	if !dissent || threshold <= 0 || !e.rebuilt.IsZero() && now.Sub(e.rebuilt) < t.period {
		return false
	}
	cut := 0
	for cut < len(e.recent) && now.Sub(e.recent[cut]) > t.period {
		cut++
	}
	e.recent = append(e.recent[cut:], now)
	if len(e.recent) >= threshold {
		e.recent = e.recent[:0]
		e.rebuilt = now
		return true
	}
	return false
}

// prune forgets executors not seen for an hour (rotated away); called with mu held.
func (t *Trust) prune(now time.Time) {
	for id, e := range t.m {
		if now.Sub(e.lastSeen) > time.Hour {
			delete(t.m, id)
		}
	}
}

// Score is 1 minus id's dissent frequency over its window; 1 for an executor never seen.
func (t *Trust) Score(id string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil || e.n == 0 {
		return 1
	}
	return 1 - float64(e.errs)/float64(e.n)
}

// TrustScore is one executor's trust.
type TrustScore struct {
	ID       string  `json:"id"`
	Score    float64 `json:"score"`
	Requests int     `json:"requests"`
	Dissents int     `json:"dissents"`
}

// Snapshot returns every executor's trust, sorted by ID.
func (t *Trust) Snapshot() []TrustScore {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TrustScore, 0, len(t.m))
	for id, e := range t.m {
		s := 1.0
		if e.n > 0 {
			s = 1 - float64(e.errs)/float64(e.n)
		}
		out = append(out, TrustScore{ID: id, Score: s, Requests: e.n, Dissents: e.errs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
