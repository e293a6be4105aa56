package mimic

import (
	"net/http"
	"testing"
	"time"
)

// Tighten raises the executors asked per voted request (and the quorum with them, as a
// majority of those asked) and lowers the dissents that rebuild an executor; Tighten(0, 0)
// returns to the configured vote.
func TestTightenRaisesKAndLowersRebuildThreshold(t *testing.T) {
	bes, hits := countingBackends(t, 5, func(i int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if i == 4 && r.URL.Path == "/lie" {
			w.Write([]byte("other"))
			return
		}
		w.Write([]byte("same"))
	})
	rebuilt := make(chan string, 16)
	g, err := New(Options{Backends: bes, K: 2, RebuildThreshold: 4, RebuildWindow: time.Hour, Scheduler: "round-robin",
		Rebuild: func(id string) { rebuilt <- id }})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + startGateway(t, g, ServerOptions{})
	c := &http.Client{}
	total := func() int64 {
		var n int64
		for _, h := range hits {
			n += h.Load()
		}
		return n
	}
	send := func(path string, n int) int64 {
		before := total()
		for range n {
			if code, body := get(t, c, base+path); code != 200 || body != "same" {
				t.Fatalf("%s: %d %q", path, code, body)
			}
		}
		g.Wait()
		return total() - before
	}
	if got := send("/", 10); got != 20 {
		t.Fatalf("k=2: %d executor requests for 10 client requests, want 20", got)
	}
	if k, q := g.Voters(5); k != 2 || q != 2 {
		t.Fatalf("configured voters %d/%d", k, q)
	}
	g.Tighten(4, 1)
	if k, q := g.Voters(5); k != 4 || q != 3 {
		t.Fatalf("tightened voters %d/%d, want 4/3", k, q)
	}
	if k, q := g.Voters(3); k != 4 || q != 2 { // three in service: a majority of three
		t.Fatalf("tightened voters with 3 in service %d/%d, want 4/2", k, q)
	}
	if got := send("/", 10); got != 40 {
		t.Fatalf("k=4: %d executor requests for 10 client requests, want 40", got)
	}
	// One dissent rebuilds now (threshold 1 < 4): the liar is asked within two requests
	// (two requests of four round-robin picks over five reach it at least once, at most twice,
	// short of the configured four) and rebuilt on its first dissent.
	send("/lie", 2)
	select {
	case id := <-rebuilt:
		if id != "b5" {
			t.Fatalf("rebuilt %s, want b5", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no rebuild after the liar's dissent with threshold 1")
	}
	g.Tighten(0, 0)
	if k, q := g.Voters(5); k != 2 || q != 2 {
		t.Fatalf("relaxed voters %d/%d", k, q)
	}
	if got := send("/", 10); got != 20 {
		t.Fatalf("relaxed: %d executor requests, want 20", got)
	}
}
