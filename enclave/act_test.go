package enclave

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/stix"
)

// vigilant reports whether n has the enclave's coalesced vigilance countermeasure applied.
func vigilant(n *testNode) bool {
	for _, a := range n.manager.Active() {
		if a.Kind == countermeasure.KindVigilance && a.Source == VigilanceSource {
			return true
		}
	}
	return false
}

// The must-show "an honest attack seen by one member's own sensors and reported still leads
// every relevant member to act", in the reading docs/model.md settles ("What act means for
// one member's report"): act is a countermeasure applied, and from one member's word alone
// that is vigilance (the defer region), never a block. With the default thresholds:
//
//   - the member whose sensors saw it blocks at once;
//   - every other relevant member applies vigilance and blocks nothing; an irrelevant one
//     applies nothing;
//   - a member whose own sensors then see it blocks at once, and the reporter gains trust;
//   - the guarantee's edge: a report at confidence 100·β/neutral = 60 % or less from an
//     unknown member is ignored (here 50 %; config refuses a β that would put the default
//     90 % there);
//   - and two members reporting the same clean address still block nowhere.
func TestOneMembersReportLeadsEveryRelevantMemberToAct(t *testing.T) {
	e := newTestEnclave(t, "lab")
	cfg := e.baseConfig() // decision.act 0.7, decision.defer 0.3, trust.neutral 0.5
	other := cfg
	other.Exposure = config.EnclaveExposure{OS: "windows", Services: []config.EnclaveService{{Port: 3389, Protocol: "tcp"}}}
	var nodes []*testNode
	for i := range 5 {
		c := cfg
		if i == 4 {
			c = other
		}
		nodes = append(nodes, e.start(t.TempDir(), nil, c))
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close(t)
		}
	})
	connectAll(t, nodes)
	reporter, relevant, irrelevant := nodes[0], nodes[1:4], nodes[4]

	const attack = "203.0.113.50"
	if _, err := reporter.Witness(stix.AddrTarget(mustAddr(attack)), "test-sensor", time.Hour); err != nil {
		t.Fatal(err)
	}
	s := publish(t, reporter, attack, 0) // the default confidence
	if !reporter.blocklist.Blocked(mustAddr(attack)) {
		t.Fatal("the member whose sensors saw it does not block")
	}
	for i, n := range relevant {
		eventually(t, fmt.Sprintf("relevant member %d applies vigilance", i+1), func() bool { return vigilant(n) })
		d, _ := decisionFor(n, s.ID)
		if d.Decision != Defer || !d.Applied && !vigilant(n) || n.blocklist.Blocked(mustAddr(attack)) {
			t.Errorf("relevant member %d: %+v, blocked %v", i+1, d, n.blocklist.Blocked(mustAddr(attack)))
		}
	}
	eventually(t, "irrelevant member records it", func() bool { _, ok := decisionFor(irrelevant, s.ID); return ok })
	if d, _ := decisionFor(irrelevant, s.ID); d.Decision != Irrelevant || vigilant(irrelevant) || irrelevant.blocklist.Blocked(mustAddr(attack)) {
		t.Errorf("irrelevant member acted: %+v", d)
	}

	// Member 1's own sensors see the attack too: it blocks at once, and the report that came
	// first is confirmed there.
	if rec, err := relevant[0].Witness(stix.AddrTarget(mustAddr(attack)), "test-sensor", time.Hour); err != nil || rec.Decision != Act {
		t.Fatalf("own evidence after the report: %+v %v", rec, err)
	}
	if !relevant[0].blocklist.Blocked(mustAddr(attack)) {
		t.Error("member 1 does not block what its own sensors saw")
	}
	if got := relevant[0].trust.Score(reporter.ID().String()); got <= cfg.Trust.Neutral {
		t.Errorf("confirmed reporter's trust %v, want above neutral", got)
	}

	// Below the guarantee's edge: at 50 % from an unknown member the evidence is 0.25 < β.
	weak := publish(t, relevant[1], "203.0.113.51", 50)
	for _, n := range []*testNode{relevant[0], relevant[2]} {
		eventually(t, "weak report arrives", func() bool { _, ok := decisionFor(n, weak.ID); return ok })
		if d, _ := decisionFor(n, weak.ID); d.Decision != Ignore {
			t.Errorf("a 50 %% report from a neutral member: %+v", d)
		}
	}

	// Two members on one clean address: vigilance at the others, a block nowhere.
	const clean = "203.0.113.99"
	var lies []*stix.Sighting
	for _, liar := range relevant[1:3] {
		l, _, err := liar.Publish(context.Background(), PublishRequest{Target: clean, Confidence: 100, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		lies = append(lies, l)
	}
	for _, n := range []*testNode{reporter, relevant[0]} {
		for _, l := range lies {
			eventually(t, "lies arrive", func() bool { _, ok := decisionFor(n, l.ID); return ok })
		}
		if n.blocklist.Blocked(mustAddr(clean)) {
			t.Errorf("%s blocks a clean address two members reported", n.ID())
		}
		var last DecisionRecord
		for _, d := range n.Decisions("") {
			if d.Target == clean {
				last = d
			}
		}
		if last.Decision != Defer || last.Reporters != 2 || last.Evidence < cfg.Decision.Act {
			t.Errorf("two neutral reporters at 100 %%: %+v, want defer on evidence above act", last)
		}
	}
}
