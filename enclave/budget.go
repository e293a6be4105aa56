package enclave

import (
	"sync"
	"time"
)

// budget is a token bucket per message author (limits.rate, limits.burst): a member that
// sends more is ignored, and penalized at most once per penalizeEvery, so a flood costs
// this node a map lookup per message until GossipSub graylists the flooder.
type budget struct {
	mu    sync.Mutex
	rate  float64
	burst float64
	peers map[string]*bucket
}

type bucket struct {
	tokens    float64
	at        time.Time
	penalized time.Time
	strikes   int // penalties in a row, each within strikeGap of the last
	over      int // messages over budget since the last penalty
	// refused is set when allow refused a message and cleared when it admits one: only an
	// author that has gone over its budget is spent (see spent).
	refused bool
}

// strikeGap is how long an author must stay within budget for its strikes to reset;
// maxStrikes penalties in a row get a directly connected flooder disconnected.
const (
	strikeGap  = 5 * time.Second
	maxStrikes = 3
	// floodFactor bursts over budget within one penalty interval is a flood, not a burst.
	floodFactor = 5
)

// maxBudgetPeers bounds the table; authors are verified members, so it only fills in a
// very large enclave, and then full (idle) buckets are dropped first.
const maxBudgetPeers = 8192

const penalizeEvery = time.Second

func newBudget(rate float64, burst int) *budget {
	return &budget{rate: rate, burst: float64(burst), peers: map[string]*bucket{}}
}

// allow takes one token from p's bucket.
func (b *budget) allow(p string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.peers[p]
	if !ok {
		if len(b.peers) >= maxBudgetPeers {
			b.pruneLocked(now)
		}
		k = &bucket{tokens: b.burst, at: now}
		b.peers[p] = k
	}
	if dt := now.Sub(k.at).Seconds(); dt > 0 {
		k.tokens = min(b.burst, k.tokens+dt*b.rate)
		k.at = now
	}
	if k.tokens < 1 {
		k.over++
		k.refused = true
		return false
	}
	k.tokens--
	k.refused = false
	return true
}

// spent reports whether p has gone over its budget (allow refused its last message) and
// still holds less than a token now; it takes none. A bucket merely low is not spent: an
// author paced at the rate leaves its bucket just under a token after each message, and
// the copies of that message still arriving from other peers (duplicates, which GossipSub
// drops after inspect) would otherwise be counted over budget, and the author's own copy,
// when a relayed one came first, penalized.
func (b *budget) spent(p string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.peers[p]
	if !ok || !k.refused {
		return false
	}
	return k.tokens+now.Sub(k.at).Seconds()*b.rate < 1
}

// overrun counts a message of p over budget that allow did not see (see Node.inspect).
func (b *budget) overrun(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.peers[p]; ok {
		k.over++
	}
}

// allowKnown is allow for a key whose bucket exists, or, when it does not, that known()
// admits to the table (a verified member); other keys pass without taking a token or
// adding state, so made-up keys cannot fill the table.
func (b *budget) allowKnown(p string, now time.Time, known func() bool) bool {
	b.mu.Lock()
	_, ok := b.peers[p]
	b.mu.Unlock()
	if !ok && !known() {
		return true
	}
	return b.allow(p, now)
}

// penalize reports whether p's overrun should cost it trust now (once per penalizeEvery),
// and whether p has overrun so long (maxStrikes penalties in a row) or so much (floodFactor
// bursts over budget before the next penalty is due) that it is cut off.
func (b *budget) penalize(p string, now time.Time) (penalty, cut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.peers[p]
	if !ok {
		return false, false
	}
	if now.Sub(k.penalized) < penalizeEvery {
		return false, k.over >= floodFactor*int(b.burst)
	}
	if now.Sub(k.penalized) > strikeGap {
		k.strikes = 0
	}
	k.penalized, k.over = now, 0
	k.strikes++
	return true, k.strikes >= maxStrikes
}

func (b *budget) pruneLocked(now time.Time) {
	for p, k := range b.peers {
		if k.tokens+now.Sub(k.at).Seconds()*b.rate >= b.burst {
			delete(b.peers, p)
		}
	}
	if len(b.peers) >= maxBudgetPeers {
		clear(b.peers)
	}
}

// struck are the authors penalized within the last strikeGap.
func (b *budget) struck(now time.Time) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for p, k := range b.peers {
		if k.strikes > 0 && now.Sub(k.penalized) <= strikeGap {
			out = append(out, p)
		}
	}
	return out
}

// pacer spaces this node's own messages so that they stay within what its peers allow it
// (limits.rate and limits.burst, charged at every receiver): at most half the burst at once,
// then limits.rate a second. The other half of the burst is the slack for delivery jitter:
// a receiver's bucket starts full at the first arrival, so messages that reach it bunched
// together by up to (burst − ⌈burst/2⌉)/rate seconds still fit. Without pacing, an honest
// burst larger than a receiver allows would be ignored there, and lost: GossipSub marks a
// message seen before the topic validator runs.
type pacer struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	at     time.Time
}

// maxPaceWait bounds the queue of own messages: one that would wait longer is refused.
const maxPaceWait = time.Minute

func newPacer(rate float64, burst int) *pacer {
	b := float64((burst + 1) / 2)
	return &pacer{rate: rate, burst: b, tokens: b}
}

// reserve takes a token (going into debt) and returns how long to wait before sending, or
// ok false, taking nothing, when that would be longer than maxWait.
func (p *pacer) reserve(now time.Time, maxWait time.Duration) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at.IsZero() {
		p.at = now
	}
	if dt := now.Sub(p.at).Seconds(); dt > 0 {
		p.tokens = min(p.burst, p.tokens+dt*p.rate)
		p.at = now
	}
	var wait time.Duration
	if p.tokens < 1 {
		wait = time.Duration((1 - p.tokens) / p.rate * float64(time.Second))
	}
	if wait > maxWait {
		return 0, false
	}
	p.tokens--
	return wait, true
}

// refund gives back a token reserved for a message that was not sent.
func (p *pacer) refund() {
	p.mu.Lock()
	p.tokens = min(p.burst, p.tokens+1)
	p.mu.Unlock()
}
