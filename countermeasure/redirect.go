package countermeasure

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// RedirectID is the registry ID of the redirect actuator.
const RedirectID = "countermeasure.redirect"

func init() {
	Register(RedirectID, func(Env) (Actuator, error) { return NewRedirects(), nil })
}

// Redirects is the set of client addresses the gateway serves from a decoy executor instead of
// the vote (KindRedirect actions, one address each), with the decision that sent each there
// (an action's Reason, "decision ID"). Redirected is lock-free: it reads an immutable map swapped in by
// Apply and Revert.
type Redirects struct {
	mu   sync.Mutex
	byID map[string]Action
	cur  atomic.Pointer[map[netip.Addr]string]
}

var _ Actuator = (*Redirects)(nil)

// NewRedirects returns an empty set.
func NewRedirects() *Redirects {
	r := &Redirects{byID: map[string]Action{}}
	r.cur.Store(&map[netip.Addr]string{})
	return r
}

// ID implements Actuator.
func (r *Redirects) ID() string { return RedirectID }

// Apply redirects a.Target, which must be one address.
func (r *Redirects) Apply(_ context.Context, a Action) error {
	if a.Kind != KindRedirect || !a.Target.IsPrefix() || !a.Target.Prefix.IsSingleIP() {
		return fmt.Errorf("countermeasure/redirect: %s (%s): %w: one address, kind redirect", a.Target, a.Kind, ErrUnsupportedTarget)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[a.ID] = a
	r.rebuildLocked()
	return nil
}

// Revert ends what a redirected (another action for the same address keeps it redirected).
func (r *Redirects) Revert(_ context.Context, a Action) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[a.ID]; ok {
		delete(r.byID, a.ID)
		r.rebuildLocked()
	}
	return nil
}

func (r *Redirects) rebuildLocked() {
	m := make(map[netip.Addr]string, len(r.byID))
	for _, a := range r.byID {
		addr := a.Target.Prefix.Addr()
		// The latest decision wins when several redirect one address.
		if old, ok := m[addr]; !ok || decisionOf(a) > old {
			m[addr] = decisionOf(a)
		}
	}
	r.cur.Store(&m)
}

// decisionOf is the decision ID an action's Reason names ("decision ID"), or the Reason.
func decisionOf(a Action) string { return strings.TrimPrefix(a.Reason, "decision ") }

// Redirected reports whether addr is redirected, and the decision that redirected it.
func (r *Redirects) Redirected(addr netip.Addr) (string, bool) {
	d, ok := (*r.cur.Load())[addr.Unmap()]
	return d, ok
}
