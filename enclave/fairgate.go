package enclave

import (
	"context"
	"sync"
)

// fairGate lets at most slots topic validations run at once and, when more wait, admits
// them one author at a time in turn (round robin over the authors that have a message
// waiting). A flooding member's backlog therefore delays another member's message by at
// most the validations already running, not by the flooder's queue: each author has its own
// queue, and a message from an author with nothing waiting goes next. What a validation
// admits is then delivered and forwarded in that order, so the fairness carries on past
// the validator. An author may have at most perAuthor messages waiting; more are refused
// (an honest member never has more than half its burst in flight: see pacer).
type fairGate struct {
	mu        sync.Mutex
	free      int
	perAuthor int
	waiting   map[string][]chan struct{}
	ring      []string // authors with a message waiting, in turn order
}

func newFairGate(slots, perAuthor int) *fairGate {
	return &fairGate{free: max(slots, 1), perAuthor: max(perAuthor, 1), waiting: map[string][]chan struct{}{}}
}

// enter waits for a validation slot for a message of author. It returns false, holding
// nothing, when author already has perAuthor messages waiting or ctx ends first.
func (g *fairGate) enter(ctx context.Context, author string) bool {
	g.mu.Lock()
	if g.free > 0 && len(g.ring) == 0 {
		g.free--
		g.mu.Unlock()
		return true
	}
	q := g.waiting[author]
	if len(q) >= g.perAuthor {
		g.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	if len(q) == 0 {
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
			g.dropLocked(author, i)
			g.mu.Unlock()
			return false
		}
	}
	g.mu.Unlock()
	g.leave() // granted meanwhile: pass the slot on
	return false
}

// dropLocked removes the i-th waiter of author.
func (g *fairGate) dropLocked(author string, i int) {
	q := g.waiting[author]
	if len(q) == 1 {
		delete(g.waiting, author)
		for j, a := range g.ring {
			if a == author {
				g.ring = append(g.ring[:j], g.ring[j+1:]...)
				break
			}
		}
		return
	}
	g.waiting[author] = append(q[:i], q[i+1:]...)
}

// leave frees a slot taken by enter: it goes to the next author in turn, if one waits.
func (g *fairGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ring) == 0 {
		g.free++
		return
	}
	a := g.ring[0]
	g.ring = g.ring[1:]
	q := g.waiting[a]
	ch := q[0]
	if len(q) == 1 {
		delete(g.waiting, a)
	} else {
		g.waiting[a] = q[1:]
		g.ring = append(g.ring, a) // its next message waits for the others' turn
	}
	close(ch)
}
