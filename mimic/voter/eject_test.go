package voter

import (
	"testing"
	"time"
)

func TestEjectorSpellsAndProbes(t *testing.T) {
	e := NewEjector(3, time.Second, 4*time.Second)
	all := Static{{ID: "a"}, {ID: "b"}}
	t0 := time.Unix(1000, 0)
	ids := func(bs []Member) (s string) {
		for _, b := range bs {
			s += b.ID
		}
		return s
	}
	for i := range 2 {
		if out, _ := e.Result("a", true, t0); out != 0 {
			t.Fatalf("ejected after %d failures", i+1)
		}
	}
	e.Result("a", false, t0) // an answer resets the count
	for range 2 {
		e.Result("a", true, t0)
	}
	if got := ids(e.Available(all, t0)); got != "ab" {
		t.Fatalf("available after 2 failures following an answer: %s", got)
	}
	if out, _ := e.Result("a", true, t0); out != time.Second {
		t.Fatalf("third consecutive failure: out for %v, want 1s", out)
	}
	if got := ids(e.Available(all, t0.Add(999*time.Millisecond))); got != "b" {
		t.Fatalf("available while a is out: %s", got)
	}
	// A request still in flight when a went out fails: no longer spell.
	if out, _ := e.Result("a", true, t0.Add(500*time.Millisecond)); out != 0 {
		t.Errorf("a failure during the spell lengthened it to %v", out)
	}
	// The spell is over: the next request is a probe; it fails, so the spell doubles, then caps.
	t1 := t0.Add(time.Second)
	if got := ids(e.Available(all, t1)); got != "ab" {
		t.Fatalf("available for the probe: %s", got)
	}
	if out, _ := e.Result("a", true, t1); out != 2*time.Second {
		t.Fatalf("failed probe: out for %v, want 2s", out)
	}
	t2 := t1.Add(2 * time.Second)
	e.Result("a", true, t2)
	t3 := t2.Add(4 * time.Second)
	if out, _ := e.Result("a", true, t3); out != 4*time.Second {
		t.Fatalf("spell past the max: %v, want 4s", out)
	}
	// A probe that answers brings a back at once.
	t4 := t3.Add(4 * time.Second)
	if _, back := e.Result("a", false, t4); !back || e.out.Load() != 0 || ids(e.Available(all, t4)) != "ab" {
		t.Fatalf("answered probe: back %v, out %d", back, e.out.Load())
	}
	// An ejected executor that is no longer among the executors (rotated away) is forgotten.
	for range 3 {
		e.Result("gone", true, t4)
	}
	if e.out.Load() != 1 {
		t.Fatal("gone not ejected")
	}
	if got := ids(e.Available(all, t4)); got != "ab" || e.out.Load() != 0 {
		t.Fatalf("after gone left: %s, out %d", got, e.out.Load())
	}
	if never := NewEjector(-1, time.Second, time.Second); func() bool {
		for range 10 {
			never.Result("a", true, t0)
		}
		return never.out.Load() != 0
	}() {
		t.Error("ejection off, yet ejected")
	}
}

func TestRebuildAskedOncePerWindow(t *testing.T) {
	tr := NewTrust(100, 2, time.Minute)
	t0 := time.Unix(1000, 0)
	asked := 0
	for i := range 20 {
		if tr.Record("a", true, t0.Add(time.Duration(i)*time.Second)) {
			asked++
		}
	}
	if asked != 1 {
		t.Fatalf("%d rebuilds asked for 20 dissents within a minute, want 1", asked)
	}
	if !tr.Record("a", true, t0.Add(62*time.Second)) && !tr.Record("a", true, t0.Add(63*time.Second)) {
		t.Error("no rebuild asked for once the window since the last one passed")
	}
}

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(time.Second)
	t0 := time.Unix(1000, 0)
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("first line held back")
	}
	for i := range 5 {
		if ok, _ := l.allow("a", t0.Add(time.Duration(i)*100*time.Millisecond)); ok {
			t.Fatalf("line %d within the second let through", i)
		}
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Error("another key held back")
	}
	if ok, left := l.allow("a", t0.Add(time.Second)); !ok || left != 5 {
		t.Errorf("after the second: %v, %d left out, want true and 5", ok, left)
	}
}
