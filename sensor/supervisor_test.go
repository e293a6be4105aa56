package sensor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// flaky fails its first n runs (one by error, one by panic, ...) and then emits one event
// and waits for the end.
type flaky struct {
	fails int
	runs  atomic.Int32
}

func (f *flaky) Name() string { return "flaky" }

func (f *flaky) Run(ctx context.Context, out chan<- Event) error {
	n := int(f.runs.Add(1))
	switch {
	case n <= f.fails && n%2 == 1:
		return errors.New("boom")
	case n <= f.fails:
		panic("kaboom")
	}
	Send(ctx, out, Event{Sensor: "flaky", Summary: "up"})
	<-ctx.Done()
	return nil
}

// quitter returns nil at once, which a source must not do.
type quitter struct{ runs atomic.Int32 }

func (q *quitter) Name() string { return "quitter" }
func (q *quitter) Run(ctx context.Context, out chan<- Event) error {
	q.runs.Add(1)
	return nil
}

func TestSupervisorRestartsFailingSources(t *testing.T) {
	f := &flaky{fails: 3}
	q := &quitter{}
	s := NewSupervisor([]Source{f, q}, 4, Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond, Reset: time.Hour}, nil)
	var notified atomic.Int32
	s.Notify(func(st State) {
		if st.Name == "flaky" && st.State == StateRestarting && st.LastError != "" {
			notified.Add(1)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	e := <-s.Events()
	if e.Summary != "up" {
		t.Fatalf("event %+v", e)
	}
	if got := f.runs.Load(); got != 4 {
		t.Fatalf("flaky ran %d times, want 4 (3 failures then up)", got)
	}
	for q.runs.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	st := s.States()
	if st[0].Name != "flaky" || st[0].State != StateRunning || st[0].Restarts != 3 || st[0].LastError == "" {
		t.Fatalf("flaky state %+v", st[0])
	}
	if notified.Load() != 3 {
		t.Fatalf("notified of %d flaky failures, want 3", notified.Load())
	}
	if st[1].Restarts < 2 || st[1].LastError != ErrStopped.Error() {
		t.Fatalf("quitter state %+v", st[1])
	}
	cancel()
	<-done
	if _, ok := <-s.Events(); ok {
		t.Fatal("events channel not closed after Run")
	}
	for _, st := range s.States() {
		if st.State != StateStopped {
			t.Fatalf("after stop: %+v", st)
		}
	}
}

func TestExcerptBounded(t *testing.T) {
	long := ""
	for len(long) < 3*MaxExcerpt {
		long += "é"
	}
	got := Excerpt(long)
	if len(got) > MaxExcerpt {
		t.Fatalf("excerpt %d bytes", len(got))
	}
	if Excerpt("short") != "short" {
		t.Fatal("short string changed")
	}
	for i := 0; i < len(got); {
		r := []rune(got[i:])[0]
		if r == '\uFFFD' {
			t.Fatal("excerpt cut inside a rune")
		}
		i += len(string(r))
	}
}
