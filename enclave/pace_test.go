package enclave

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// An honest member with more to say at once than limits.burst is paced, not dropped: every
// one of its sightings reaches every member and none is over its budget there. The same
// burst sent unpaced (what a flooder does) is partly ignored at the receivers, so this is
// what the pacing buys.
func TestOwnMessagesArePacedWithinBudget(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig() // default limits: rate 2/s, burst 2
	nodes := startAll(t, e, 3, cfg)
	const many = 12 // six times the burst
	publishMany := func(from *testNode, net int) []string {
		t.Helper()
		ids := make([]string, many)
		var wg sync.WaitGroup
		for i := range many {
			wg.Add(1)
			go func() { // all at once, as the engine's shares of one scan are
				defer wg.Done()
				s, _, err := from.Publish(context.Background(), PublishRequest{Target: fmt.Sprintf("192.0.%d.%d", net, 10+i), TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = s.ID
			}()
		}
		wg.Wait()
		return ids
	}
	ids := publishMany(nodes[0], 2)
	for _, n := range nodes[1:] {
		for _, id := range ids {
			eventually(t, "every paced sighting delivered", func() bool { _, ok := decisionFor(n, id); return ok })
		}
		if st := n.Stats(); st.Limited != 0 {
			t.Errorf("%s: %d of a paced member's messages were over its budget", n.ID(), st.Limited)
		}
		if got := n.trust.Score(nodes[0].ID().String()); got < cfg.Trust.Neutral {
			t.Errorf("%s: paced member's trust fell to %v", n.ID(), got)
		}
	}

	// Control: the same burst from an unpaced member.
	nodes[2].pace = nil
	publishMany(nodes[2], 3)
	eventually(t, "an unpaced burst over budget somewhere", func() bool {
		return nodes[0].Stats().Limited+nodes[1].Stats().Limited > 0
	})
}

// The pacer lets half the burst out at once, then one message per 1/rate, and refuses a
// message that would wait longer than allowed (taking no token).
func TestPacer(t *testing.T) {
	p := newPacer(2, 4)
	t0 := time.Unix(1000, 0)
	var waits []time.Duration
	for range 5 {
		w, ok := p.reserve(t0, time.Minute)
		if !ok {
			t.Fatal("refused")
		}
		waits = append(waits, w)
	}
	want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second, 1500 * time.Millisecond}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
	if _, ok := p.reserve(t0, time.Second); ok {
		t.Error("a message 2 s out accepted with maxWait 1 s")
	}
	p.refund()
	if w, _ := p.reserve(t0, time.Minute); w != 1500*time.Millisecond {
		t.Errorf("after a refund: wait %v, want 1.5s", w)
	}
	if w, _ := p.reserve(t0.Add(time.Hour), time.Minute); w != 0 {
		t.Errorf("after an hour: wait %v", w)
	}
}
