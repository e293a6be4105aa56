package mimic

import (
	"testing"
	"time"
)

func TestLazyDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const d = 5 * time.Second // slack min(d/16, 100ms) = 100ms
	steps := []struct {
		name   string
		want   time.Time
		move   bool
		expect time.Time // the deadline in force afterwards
	}{
		{"first sets want plus slack", t0.Add(d), true, t0.Add(d + 100*time.Millisecond)},
		{"a little later is kept", t0.Add(d + 40*time.Millisecond), false, t0.Add(d + 100*time.Millisecond)},
		{"exactly the one in force is kept", t0.Add(d + 100*time.Millisecond), false, t0.Add(d + 100*time.Millisecond)},
		{"past the one in force moves it", t0.Add(d + 101*time.Millisecond), true, t0.Add(d + 201*time.Millisecond)},
		{"much earlier moves it back", t0.Add(time.Second), true, t0.Add(time.Second + 100*time.Millisecond)},
	}
	var l lazyDeadline
	for _, s := range steps {
		at, move := l.next(s.want, d)
		if move != s.move || l.at != s.expect || (move && at != s.expect) {
			t.Fatalf("%s: next(%v) = %v, %v; in force %v, want move=%v in force %v", s.name, s.want.Sub(t0), at.Sub(t0), move, l.at.Sub(t0), s.move, s.expect.Sub(t0))
		}
	}
	l.forget()
	if _, move := l.next(t0.Add(time.Second), d); !move {
		t.Fatal("after forget the deadline must be set again")
	}
	// Short timeouts get a proportionally short slack: d/16.
	var s lazyDeadline
	at, _ := s.next(t0.Add(160*time.Millisecond), 160*time.Millisecond)
	if got := at.Sub(t0); got != 170*time.Millisecond {
		t.Fatalf("slack for 160ms: deadline at %v, want 170ms", got)
	}
}
