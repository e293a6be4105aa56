package enclave

import (
	"context"
	"sync"
)

// fairGate lets at most slots topic validations run at once, at most one per author, and,
// when more wait, admits them one author at a time in turn (round robin over the authors
// that have a message waiting). A flooding member's backlog therefore delays another
// member's message by at most the validations already running, not by the flooder's queue:
// each author has its own queue, and a message from an author with nothing waiting goes
// next. What a validation admits is then delivered and forwarded in that order, so the
// fairness carries on past the validator. One author's messages are validated in the order
// they arrived (a new version after the one it follows). An author may have at most
// perAuthor messages waiting; more are refused (an honest member never has more than half
// its burst in flight: see pacer).
type fairGate struct {
	mu        sync.Mutex
	free      int
	perAuthor int
	waiting   map[string][]chan struct{}
	active    map[string]bool // authors with a validation running
	ring      []string        // authors with a message waiting and none running, in turn order
}

func newFairGate(slots, perAuthor int) *fairGate {
	return &fairGate{free: max(slots, 1), perAuthor: max(perAuthor, 1), waiting: map[string][]chan struct{}{},
		active: map[string]bool{}}
}

// enter waits for a validation slot for a message of author; leave(author) gives it back.
// It returns false, holding nothing, when author already has perAuthor messages waiting or
// ctx ends first.
func (g *fairGate) enter(ctx context.Context, author string) bool {
	g.mu.Lock()
	if g.free > 0 && len(g.ring) == 0 && !g.active[author] {
		g.free--
		g.active[author] = true
		g.mu.Unlock()
		return true
	}
	q := g.waiting[author]
	if len(q) >= g.perAuthor {
		g.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	if len(q) == 0 && !g.active[author] {
		g.ring = append(g.ring, author)
	}
	g.waiting[author] = append(q, ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
	}
	g.mu.Lock()
	q = g.waiting[author]
	for i, c := range q {
		if c == ch { // still waiting: leave the queue
			if len(q) == 1 {
				delete(g.waiting, author)
				g.ring = without(g.ring, author)
			} else {
				g.waiting[author] = append(q[:i], q[i+1:]...)
			}
			g.mu.Unlock()
			return false
		}
	}
	g.mu.Unlock()
	g.leave(author) // granted meanwhile: pass the slot on
	return false
}

// leave ends author's validation: its slot goes to the next author in turn, and author, if
// it has more waiting, takes its place at the end of the turn.
func (g *fairGate) leave(author string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.active, author)
	if len(g.waiting[author]) > 0 {
		g.ring = append(g.ring, author)
	}
	g.free++
	for g.free > 0 && len(g.ring) > 0 {
		a := g.ring[0]
		g.ring = g.ring[1:]
		q := g.waiting[a]
		ch := q[0]
		if len(q) == 1 {
			delete(g.waiting, a)
		} else {
			g.waiting[a] = q[1:]
		}
		g.active[a] = true
		g.free--
		close(ch)
	}
}

func without(xs []string, x string) []string {
	for i, y := range xs {
		if y == x {
			return append(xs[:i], xs[i+1:]...)
		}
	}
	return xs
}
