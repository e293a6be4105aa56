package bus

import (
	"sync"
	"testing"
)

func TestPublishReachesFilteredSubscribers(t *testing.T) {
	b := New()
	all, cancelAll := b.Subscribe(8, nil)
	defer cancelAll()
	exec, cancelExec := b.Subscribe(8, KindPrefix("executor."))
	defer cancelExec()

	b.Publish(Event{Kind: "executor.started", Subject: "e1"})
	b.Publish(Event{Kind: "gateway.dissent", Subject: "e2"})

	if got := (<-all).Subject; got != "e1" {
		t.Fatalf("all: first event %q, want e1", got)
	}
	if got := (<-all).Subject; got != "e2" {
		t.Fatalf("all: second event %q, want e2", got)
	}
	e := <-exec
	if e.Subject != "e1" || e.Time.IsZero() {
		t.Fatalf("exec: got %+v", e)
	}
	select {
	case e := <-exec:
		t.Fatalf("filter let through %+v", e)
	default:
	}
}

func TestSlowSubscriberDropsInsteadOfBlocking(t *testing.T) {
	b := New()
	_, cancel := b.Subscribe(2, nil)
	defer cancel()
	for i := 0; i < 10; i++ {
		b.Publish(Event{Kind: "k"})
	}
	if got := b.Dropped(); got != 8 {
		t.Fatalf("dropped %d, want 8", got)
	}
}

func TestCancelClosesAndIsIdempotent(t *testing.T) {
	b := New()
	ch, cancel := b.Subscribe(1, nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); cancel() }()
	}
	wg.Wait()
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed")
	}
	b.Publish(Event{Kind: "after-cancel"}) // must not panic on a closed channel
}
