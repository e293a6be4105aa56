package mimic

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/bus"
)

// An executor that refuses the connection never got the request, so it goes to another one,
// on every method (a POST too), and the refusing executor is reported unavailable.
func TestRefusedConnectionIsRetriedElsewhere(t *testing.T) {
	for _, tr := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h1", nil}, {"transport", NewTransport(8)}} {
		t.Run(tr.name, func(t *testing.T) {
			good, hits := countingBackends(t, 3, hello2)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			dead := Backend{ID: "dead", Variant: "dead", Addr: "http://" + ln.Addr().String()}
			ln.Close() // nothing listens there now: connections are refused
			b := bus.New()
			evs, cancel := b.Subscribe(64, bus.KindPrefix(EventDissent))
			defer cancel()
			g, err := New(Options{Backends: append(Static{dead}, good...), Bus: b, Transport: tr.rt, Scheduler: "round-robin", EjectAfter: -1,
				Routes: []Route{{Prefix: "/", Methods: []string{"POST"}, Policy: PolicySingle}}})
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + startGateway(t, g, ServerOptions{})
			total := func() (n int64) {
				g.Wait()
				for _, h := range hits {
					n += h.Swap(0)
				}
				return n
			}
			for i := range 8 {
				resp, err := http.Post(url+"/", "text/plain", strings.NewReader("x"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("POST %d: %d", i, resp.StatusCode)
				}
				if n := total(); n != 1 {
					t.Fatalf("POST %d reached %d executors, want 1", i, n)
				}
				if code, _ := get(t, &http.Client{}, url+"/"); code != 200 {
					t.Fatalf("GET %d: %d", i, code)
				}
				if n := total(); n != 3 {
					t.Fatalf("GET %d reached %d executors, want 3", i, n)
				}
			}
			refused := 0
			for len(evs) > 0 {
				e := <-evs
				if e.Subject != "dead" || e.Attrs["kind"] != DissentAvailability {
					t.Errorf("dissent %s %v", e.Subject, e.Attrs)
				}
				refused++
			}
			if refused == 0 {
				t.Error("the refusing executor was never reported")
			}
		})
	}
}
