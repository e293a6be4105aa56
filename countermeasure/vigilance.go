package countermeasure

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/proteus-defense/proteus/bus"
)

// VigilanceID is the registry ID of the vigilance actuator.
const VigilanceID = "countermeasure.vigilance"

func init() {
	Register(VigilanceID, func(env Env) (Actuator, error) { return NewVigilance(env.Bus), nil })
}

// Vigilance is the agent's in-process alert level: 0 is normal; each active vigilance
// action holds it at no less than its Level (1 when unset), and the level is the highest
// of them. It is raised, for example, by the enclave's "defer" decision on an uncertain
// sighting; the rotation scheduler and the decoys read Level or subscribe to
// EventVigilance (attrs "level", "previous") to shorten intervals or enable decoys.
type Vigilance struct {
	mu    sync.Mutex
	held  map[string]int // action ID -> level
	level atomic.Int64
	bus   *bus.Bus
}

var _ Actuator = (*Vigilance)(nil)

// NewVigilance returns a vigilance state at level 0 publishing changes on b (may be nil).
func NewVigilance(b *bus.Bus) *Vigilance { return &Vigilance{held: map[string]int{}, bus: b} }

// ID implements Actuator.
func (v *Vigilance) ID() string { return VigilanceID }

// Level is the current level (0 = normal).
func (v *Vigilance) Level() int { return int(v.level.Load()) }

// Apply holds the level at a.Level (min 1) until the action is reverted.
func (v *Vigilance) Apply(_ context.Context, a Action) error {
	l := a.Level
	if l < 1 {
		l = 1
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.held[a.ID] = l
	v.updateLocked(a.ID)
	return nil
}

// Revert releases what a held.
func (v *Vigilance) Revert(_ context.Context, a Action) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.held[a.ID]; !ok {
		return nil
	}
	delete(v.held, a.ID)
	v.updateLocked(a.ID)
	return nil
}

func (v *Vigilance) updateLocked(cause string) {
	top := 0
	for _, l := range v.held {
		top = max(top, l)
	}
	prev := int(v.level.Swap(int64(top)))
	if prev != top {
		v.bus.Publish(bus.Event{Kind: EventVigilance, Source: "countermeasure", Subject: cause,
			Attrs: map[string]any{"level": top, "previous": prev}})
	}
}
