package mimic

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

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
		bes = append(bes, Backend{ID: "b3", Variant: "v3", Addr: "http://" + dead})
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
	two = append(two, Backend{ID: "d1", Addr: "http://127.0.0.1:1"}, Backend{ID: "d2", Addr: "http://127.0.0.1:2"})
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
