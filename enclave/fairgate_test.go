package enclave

import (
	"context"
	"runtime"
	"sync"
	"testing"
)

// A flooder's backlog in the validation gate does not delay another author's message: the
// gate serves the waiting authors in turn, whatever the order of arrival, and an author
// holds at most perAuthor waiting places.
func TestFairGateServesAuthorsInTurn(t *testing.T) {
	g := newFairGate(1, 3)
	ctx := context.Background()
	if !g.enter(ctx, "busy") { // the one slot is taken
		t.Fatal("first enter waited")
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	waitFor := func(n int) {
		for {
			g.mu.Lock()
			k := 0
			for _, q := range g.waiting {
				k += len(q)
			}
			g.mu.Unlock()
			if k == n {
				return
			}
			runtime.Gosched()
		}
	}
	arrive := func(author string, n int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !g.enter(ctx, author) {
				t.Errorf("%s refused", author)
				return
			}
			mu.Lock()
			order = append(order, author)
			mu.Unlock()
			g.leave(author)
		}()
		waitFor(n)
	}
	// Three flood messages queue first, then one honest message.
	arrive("flooder", 1)
	arrive("flooder", 2)
	arrive("flooder", 3)
	if g.enter(ctx, "flooder") {
		t.Fatal("a fourth waiting message of one author was let in (perAuthor 3)")
	}
	arrive("honest", 4)
	g.leave("busy")
	wg.Wait()
	want := []string{"flooder", "honest", "flooder", "flooder"}
	if len(order) != len(want) {
		t.Fatalf("order %v", order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("served %v, want %v: the honest message waited behind the flood", order, want)
		}
	}
	// Two slots: two authors pass at once, but one author's second message waits for its
	// first (an author's messages are validated in order).
	g2 := newFairGate(2, 1)
	if !g2.enter(ctx, "a") {
		t.Fatal("first slot")
	}
	second := make(chan bool)
	go func() { ok := g2.enter(ctx, "a"); second <- ok; g2.leave("a") }()
	for {
		g2.mu.Lock()
		k := len(g2.waiting["a"])
		g2.mu.Unlock()
		if k == 1 {
			break
		}
		runtime.Gosched()
	}
	if !g2.enter(ctx, "b") {
		t.Fatal("second slot")
	}
	g2.leave("a")
	if !<-second {
		t.Fatal("a's second message refused")
	}
	for { // a's second has left again
		g2.mu.Lock()
		k := g2.free
		g2.mu.Unlock()
		if k == 1 {
			break
		}
		runtime.Gosched()
	}
	if !g2.enter(ctx, "a") {
		t.Fatal("slot not back")
	}
	// A waiter whose context ends leaves the queue and takes nothing.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan bool)
	go func() { done <- g2.enter(cctx, "c") }()
	for {
		g2.mu.Lock()
		k := len(g2.waiting["c"])
		g2.mu.Unlock()
		if k == 1 {
			break
		}
		runtime.Gosched()
	}
	cancel()
	if <-done {
		t.Fatal("a cancelled waiter entered")
	}
	g2.leave("a")
	g2.leave("b")
	if g2.free != 2 || len(g2.ring) != 0 || len(g2.waiting) != 0 {
		t.Fatalf("gate not empty after all left: free %d ring %v waiting %v", g2.free, g2.ring, g2.waiting)
	}
}
