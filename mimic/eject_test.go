package mimic

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

func TestEjectorSpellsAndProbes(t *testing.T) {
	e := newEjector(3, time.Second, 4*time.Second)
	all := Static{{ID: "a"}, {ID: "b"}}
	t0 := time.Unix(1000, 0)
	ids := func(bs []Backend) (s string) {
		for _, b := range bs {
			s += b.ID
		}
		return s
	}
	for i := range 2 {
		if out, _ := e.result("a", true, t0); out != 0 {
			t.Fatalf("ejected after %d failures", i+1)
		}
	}
	e.result("a", false, t0) // an answer resets the count
	for range 2 {
		e.result("a", true, t0)
	}
	if got := ids(e.available(all, t0)); got != "ab" {
		t.Fatalf("available after 2 failures following an answer: %s", got)
	}
	if out, _ := e.result("a", true, t0); out != time.Second {
		t.Fatalf("third consecutive failure: out for %v, want 1s", out)
	}
	if got := ids(e.available(all, t0.Add(999*time.Millisecond))); got != "b" {
		t.Fatalf("available while a is out: %s", got)
	}
	// A request still in flight when a went out fails: no longer spell.
	if out, _ := e.result("a", true, t0.Add(500*time.Millisecond)); out != 0 {
		t.Errorf("a failure during the spell lengthened it to %v", out)
	}
	// The spell is over: the next request is a probe; it fails, so the spell doubles, then caps.
	t1 := t0.Add(time.Second)
	if got := ids(e.available(all, t1)); got != "ab" {
		t.Fatalf("available for the probe: %s", got)
	}
	if out, _ := e.result("a", true, t1); out != 2*time.Second {
		t.Fatalf("failed probe: out for %v, want 2s", out)
	}
	t2 := t1.Add(2 * time.Second)
	e.result("a", true, t2)
	t3 := t2.Add(4 * time.Second)
	if out, _ := e.result("a", true, t3); out != 4*time.Second {
		t.Fatalf("spell past the max: %v, want 4s", out)
	}
	// A probe that answers brings a back at once.
	t4 := t3.Add(4 * time.Second)
	if _, back := e.result("a", false, t4); !back || e.out.Load() != 0 || ids(e.available(all, t4)) != "ab" {
		t.Fatalf("answered probe: back %v, out %d", back, e.out.Load())
	}
	// An ejected executor that is no longer among the executors (rotated away) is forgotten.
	for range 3 {
		e.result("gone", true, t4)
	}
	if e.out.Load() != 1 {
		t.Fatal("gone not ejected")
	}
	if got := ids(e.available(all, t4)); got != "ab" || e.out.Load() != 0 {
		t.Fatalf("after gone left: %s, out %d", got, e.out.Load())
	}
	if never := newEjector(-1, time.Second, time.Second); func() bool {
		for range 10 {
			never.result("a", true, t0)
		}
		return never.out.Load() != 0
	}() {
		t.Error("ejection off, yet ejected")
	}
}

// One executor that is down costs a few dissent events, not one per request, and comes
// back after it answers a probe; ejection never leaves a request without its quorum.
func TestGatewayEjectsAnUnreachableExecutor(t *testing.T) {
	deadAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	start := func(dead string, spell time.Duration) (string, *Gateway, func() map[string]int) {
		bes, _ := countingBackends(t, 2, hello2)
		bes = append(bes, Backend{ID: "b3", Variant: "v3", URL: "http://" + dead})
		b := bus.New()
		evs, cancel := b.Subscribe(1024, nil)
		t.Cleanup(cancel)
		g, err := New(Options{Backends: bes, Bus: b, EjectFor: spell, EjectMax: spell})
		if err != nil {
			t.Fatal(err)
		}
		kinds := func() map[string]int {
			g.Wait()
			n := map[string]int{}
			for len(evs) > 0 {
				if e := <-evs; e.Subject == "b3" {
					n[e.Kind]++
				}
			}
			return n
		}
		return startGateway(t, g, ServerOptions{}), g, kinds
	}

	// A spell longer than the test: three consecutive failures eject it. A request or two may
	// start before the last of them is accounted for (that happens after the answer), so a
	// dissent or two more; not 50.
	addr, _, kinds := start(deadAddr(), time.Hour)
	for i := range 50 {
		if code, _ := get(t, http.DefaultClient, "http://"+addr+"/"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if n := kinds(); n[EventDissent] < 3 || n[EventDissent] > 5 || n[EventEjected] != 1 {
		t.Fatalf("events for the dead executor over 50 requests: %v, want 3-5 dissents and 1 ejection", n)
	}

	// A short spell: ejected, then it comes up again and the probe after the spell finds it.
	dead := deadAddr()
	addr, _, kinds = start(dead, 50*time.Millisecond)
	for range 5 {
		get(t, http.DefaultClient, "http://"+addr+"/")
	}
	if n := kinds(); n[EventEjected] < 1 {
		t.Fatalf("not ejected: %v", n)
	}
	ln, err := net.Listen("tcp", dead)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", dead, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	go srv.Serve(ln)
	defer srv.Close()
	time.Sleep(100 * time.Millisecond) // past the spell
	for range 5 {
		get(t, http.DefaultClient, "http://"+addr+"/")
	}
	if n := kinds(); n[EventBack] != 1 {
		t.Fatalf("events once it answers again: %v, want it back", n)
	}

	// Two of three down: ejecting both would leave one, below the quorum of two, so all three
	// are still asked and the request fails closed as without ejection.
	two, _ := countingBackends(t, 1, hello2)
	two = append(two, Backend{ID: "d1", URL: "http://127.0.0.1:1"}, Backend{ID: "d2", URL: "http://127.0.0.1:2"})
	g2, err := New(Options{Backends: two})
	if err != nil {
		t.Fatal(err)
	}
	addr2 := startGateway(t, g2, ServerOptions{})
	for i := range 10 {
		if code, _ := get(t, http.DefaultClient, "http://"+addr2+"/"); code != http.StatusBadGateway {
			t.Fatalf("request %d with two of three down: %d, want 502 (no quorum), not 503", i, code)
		}
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
