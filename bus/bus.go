// Package bus is Proteus's in-process event bus: components publish events (an executor was
// rotated, a gateway saw dissent, a peer reported a sighting) and any number of subscribers
// receive them. Publishing never blocks: a subscriber that falls behind loses events, and the
// loss is counted, so a slow dashboard can never stall the gateway.
//
// It imports only the standard library; every other package may import it.
package bus

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event is one thing that happened. Kind names the type ("executor.started",
// "gateway.dissent", ...); the publishing package defines its kinds as constants.
type Event struct {
	Time    time.Time      `json:"time"`
	Kind    string         `json:"kind"`
	Source  string         `json:"source"`            // component that published it, e.g. "pool"
	Subject string         `json:"subject,omitempty"` // what it is about, e.g. an executor ID
	Attrs   map[string]any `json:"attrs,omitempty"`
}

// Bus fans events out to subscribers.
type Bus struct {
	mu      sync.RWMutex
	subs    map[*subscription]struct{}
	dropped atomic.Uint64
	now     func() time.Time
}

type subscription struct {
	ch     chan Event
	filter func(Event) bool
}

// New returns an empty bus.
func New() *Bus { return &Bus{subs: map[*subscription]struct{}{}, now: time.Now} }

// Publish delivers e to every subscriber whose filter accepts it, without blocking.
// A zero e.Time is set to the current time.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if s.filter != nil && !s.filter(e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			b.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of events with room for buf pending events, and a cancel
// function that unsubscribes and closes the channel. filter may be nil (all events).
func (b *Bus) Subscribe(buf int, filter func(Event) bool) (<-chan Event, func()) {
	if buf < 1 {
		buf = 1
	}
	s := &subscription{ch: make(chan Event, buf), filter: filter}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
			close(s.ch)
		})
	}
}

// Dropped is the number of events lost to full subscriber buffers since the bus was created.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// KindPrefix returns a filter that accepts events whose kind starts with prefix.
func KindPrefix(prefix string) func(Event) bool {
	return func(e Event) bool { return len(e.Kind) >= len(prefix) && e.Kind[:len(prefix)] == prefix }
}
