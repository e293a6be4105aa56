package stix

import (
	"container/heap"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// DefaultReplayCapacity is the ReplayGuard capacity used when NewReplayGuard gets n <= 0.
const DefaultReplayCapacity = 100_000

// Errors of the replay guard beyond ErrReplay and ErrExpired.
var (
	// ErrRebound marks a new version of an object that changes what it is about (its
	// binding, e.g. an indicator's target): objects are immutable in that respect.
	ErrRebound = errors.New("stix: object re-bound")
	// ErrBudget marks a message refused because its owner already holds its share of keys.
	ErrBudget = errors.New("stix: replay budget exhausted")
)

// ReplayGuard refuses a message it has already admitted, keyed by (object id, modified),
// and remembers each key until the message's valid_until. GossipSub's seen-cache only
// covers a couple of minutes; this covers the whole life of a sighting. It also pins what
// each object id is about (its binding) while any version of it is remembered, and counts
// keys per owner (the author), so one owner can hold at most its per-owner share.
//
// Memory is bounded: when full, the entry that expires soonest is forgotten first (Evicted
// counts those). Safe for concurrent use. Entries and Restore carry the state across a
// restart.
type ReplayGuard struct {
	mu       sync.Mutex
	max      int
	perOwner int    // 0: unlimited
	exempt   string // an owner without the limit (this node itself)
	keys     map[replayKey]*replayEntry
	ids      map[string]*binding
	owners   map[string]int
	byExp    expiryHeap
	evicted  uint64
}

type replayKey struct {
	id       string
	modified int64 // UnixNano
}

type binding struct {
	owner, value string
	versions     int
}

type replayEntry struct {
	key    replayKey
	owner  string
	expiry time.Time
	index  int
}

// ReplayEntry is one remembered key, for persistence.
type ReplayEntry struct {
	Owner    string    `json:"owner,omitempty"`
	ID       string    `json:"id"`
	Binding  string    `json:"binding,omitempty"`
	Modified time.Time `json:"modified"`
	Expiry   time.Time `json:"expiry"`
}

// NewReplayGuard returns a guard remembering at most n keys.
func NewReplayGuard(n int) *ReplayGuard {
	if n <= 0 {
		n = DefaultReplayCapacity
	}
	return &ReplayGuard{max: n, keys: map[replayKey]*replayEntry{}, ids: map[string]*binding{}, owners: map[string]int{}}
}

// SetPerOwner limits how many keys one owner other than exempt may hold (0: no limit).
func (g *ReplayGuard) SetPerOwner(n int, exempt string) {
	g.mu.Lock()
	g.perOwner, g.exempt = n, exempt
	g.mu.Unlock()
}

// Admit records m and returns nil the first time it sees m's (ObjectID, Version), and an
// error wrapping ErrReplay afterwards (until m's Expiry has passed at now). A message
// already expired at now is refused with ErrExpired wrapped, without being recorded.
func (g *ReplayGuard) Admit(m Message, now time.Time) error {
	return g.AdmitOwned("", "", m.ObjectID(), m.Version(), m.Expiry(), now)
}

// AdmitKey is Admit for a raw key.
func (g *ReplayGuard) AdmitKey(id string, modified, expiry, now time.Time) error {
	return g.AdmitOwned("", "", id, modified, expiry, now)
}

// AdmitOwned is AdmitKey for a key owned by owner and bound to binding: besides a replay
// it refuses a version of id whose owner or binding differs from the remembered one
// (ErrRebound) and a key beyond owner's share (ErrBudget).
func (g *ReplayGuard) AdmitOwned(owner, bind, id string, modified, expiry, now time.Time) error {
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
	if b, ok := g.ids[id]; ok && (b.owner != owner || b.value != bind) {
		return fmt.Errorf("stix: replay guard: %s: was %q by %q, now %q by %q: %w", id, b.value, b.owner, bind, owner, ErrRebound)
	}
	if g.perOwner > 0 && owner != g.exempt && g.owners[owner] >= g.perOwner {
		return fmt.Errorf("stix: replay guard: %q holds %d keys: %w", owner, g.perOwner, ErrBudget)
	}
	g.addLocked(owner, bind, k, expiry)
	return nil
}

func (g *ReplayGuard) addLocked(owner, bind string, k replayKey, expiry time.Time) {
	for len(g.keys) >= g.max {
		g.dropLocked(heap.Pop(&g.byExp).(*replayEntry))
		g.evicted++
	}
	e := &replayEntry{key: k, owner: owner, expiry: expiry}
	g.keys[k] = e
	heap.Push(&g.byExp, e)
	g.owners[owner]++
	b, ok := g.ids[k.id]
	if !ok {
		b = &binding{owner: owner, value: bind}
		g.ids[k.id] = b
	}
	b.versions++
}

func (g *ReplayGuard) dropLocked(e *replayEntry) {
	delete(g.keys, e.key)
	if g.owners[e.owner]--; g.owners[e.owner] <= 0 {
		delete(g.owners, e.owner)
	}
	if b := g.ids[e.key.id]; b != nil {
		if b.versions--; b.versions <= 0 {
			delete(g.ids, e.key.id)
		}
	}
}

// Len is the number of keys remembered.
func (g *ReplayGuard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.keys)
}

// Owned is the number of keys owner holds.
func (g *ReplayGuard) Owned(owner string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.owners[owner]
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
		g.dropLocked(heap.Pop(&g.byExp).(*replayEntry))
	}
}

// Entries returns every remembered key, soonest expiry first.
func (g *ReplayGuard) Entries() []ReplayEntry {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]ReplayEntry, 0, len(g.keys))
	for _, e := range g.keys {
		var bind string
		if b := g.ids[e.key.id]; b != nil {
			bind = b.value
		}
		out = append(out, ReplayEntry{Owner: e.owner, ID: e.key.id, Binding: bind,
			Modified: time.Unix(0, e.key.modified).UTC(), Expiry: e.expiry})
	}
	sortEntries(out)
	return out
}

// Restore adds entries (from Entries before a restart) not yet expired at now; a key
// already present, or conflicting with a remembered binding, is skipped.
func (g *ReplayGuard) Restore(entries []ReplayEntry, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range entries {
		if !e.Expiry.After(now) || e.ID == "" {
			continue
		}
		k := replayKey{id: e.ID, modified: e.Modified.UnixNano()}
		if _, ok := g.keys[k]; ok {
			continue
		}
		if b, ok := g.ids[e.ID]; ok && (b.owner != e.Owner || b.value != e.Binding) {
			continue
		}
		g.addLocked(e.Owner, e.Binding, k, e.Expiry)
	}
}

func sortEntries(es []ReplayEntry) {
	sort.Slice(es, func(i, j int) bool {
		if !es[i].Expiry.Equal(es[j].Expiry) {
			return es[i].Expiry.Before(es[j].Expiry)
		}
		return es[i].ID < es[j].ID
	})
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
