package stix

import (
	"container/heap"
	"fmt"
	"sync"
	"time"
)

// DefaultReplayCapacity is the ReplayGuard capacity used when NewReplayGuard gets n <= 0.
const DefaultReplayCapacity = 100_000

// ReplayGuard refuses a message it has already admitted, keyed by (object id, modified),
// and remembers each key until the message's valid_until. GossipSub's seen-cache only
// covers a couple of minutes; this covers the whole life of a sighting. Memory is bounded:
// when full, the entry that expires soonest is forgotten first (Evicted counts those).
// Safe for concurrent use.
type ReplayGuard struct {
	mu      sync.Mutex
	max     int
	keys    map[replayKey]*replayEntry
	byExp   expiryHeap
	evicted uint64
}

type replayKey struct {
	id       string
	modified int64 // UnixNano
}

type replayEntry struct {
	key    replayKey
	expiry time.Time
	index  int
}

// NewReplayGuard returns a guard remembering at most n keys.
func NewReplayGuard(n int) *ReplayGuard {
	if n <= 0 {
		n = DefaultReplayCapacity
	}
	return &ReplayGuard{max: n, keys: map[replayKey]*replayEntry{}}
}

// Admit records m and returns nil the first time it sees m's (ObjectID, Version), and an
// error wrapping ErrReplay afterwards (until m's Expiry has passed at now). A message
// already expired at now is refused with ErrExpired wrapped, without being recorded.
func (g *ReplayGuard) Admit(m Message, now time.Time) error {
	return g.AdmitKey(m.ObjectID(), m.Version(), m.Expiry(), now)
}

// AdmitKey is Admit for a raw key.
func (g *ReplayGuard) AdmitKey(id string, modified, expiry, now time.Time) error {
	if !expiry.After(now) {
		return fmt.Errorf("stix: replay guard: %s modified %s: %w", id, modified.UTC().Format(time.RFC3339Nano), ErrExpired)
	}
	k := replayKey{id: id, modified: modified.UnixNano()}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked(now)
	if _, ok := g.keys[k]; ok {
		return fmt.Errorf("stix: replay guard: %s modified %s: %w", id, modified.UTC().Format(time.RFC3339Nano), ErrReplay)
	}
	for len(g.keys) >= g.max {
		e := heap.Pop(&g.byExp).(*replayEntry)
		delete(g.keys, e.key)
		g.evicted++
	}
	e := &replayEntry{key: k, expiry: expiry}
	g.keys[k] = e
	heap.Push(&g.byExp, e)
	return nil
}

// Len is the number of keys remembered.
func (g *ReplayGuard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.keys)
}

// Evicted is how many unexpired keys were forgotten because the guard was full.
func (g *ReplayGuard) Evicted() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.evicted
}

// Expire forgets every key whose expiry is not after now.
func (g *ReplayGuard) Expire(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked(now)
}

func (g *ReplayGuard) expireLocked(now time.Time) {
	for len(g.byExp) > 0 && !g.byExp[0].expiry.After(now) {
		e := heap.Pop(&g.byExp).(*replayEntry)
		delete(g.keys, e.key)
	}
}

type expiryHeap []*replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*replayEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
