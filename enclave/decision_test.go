package enclave

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/stix"
)

// decisionNode is a Node with only the decision state (no host, no countermeasure manager:
// enforcement is recorded, not applied), on a fake clock.
func decisionNode(t *testing.T, now *time.Time) *Node {
	t.Helper()
	cfg := config.Enclave{Name: "lab", Allowlist: []string{}}
	cfg.ApplyDefaults()
	cfg.Decision.Act, cfg.Decision.Defer = 0.7, 0.3
	cfg.Trust.Window = time.Minute
	cfg.MaxTTL = 2 * time.Hour
	clock := func() time.Time { return *now }
	tr, _ := OpenTrust("", TrustParams{Neutral: 0.5, InvalidWeight: 3, HalfLife: 24 * time.Hour}, clock)
	n := &Node{cfg: cfg, self: newPeerID(t), trust: tr, now: clock, log: slog.New(slog.DiscardHandler),
		exposure: stix.Exposure{OS: "linux", Services: []stix.Service{{Port: 22}}}, ctx: context.Background()}
	n.initState()
	n.guard, _ = newGuard(nil, nil, clock)
	return n
}

func sighting(target string, conf int, os string, now time.Time, ttl time.Duration) *stix.Sighting {
	return &stix.Sighting{ID: stix.NewID("indicator"), Target: stix.AddrTarget(netip.MustParseAddr(target)),
		Exposure: stix.Exposure{OS: os}, Action: stix.ActionBlock, Confidence: conf, Created: now, ValidUntil: now.Add(ttl)}
}

// peer is a report arriving from reporter in its own independence group.
func (n *Node) peer(reporter string, s *stix.Sighting) DecisionRecord {
	return n.onSighting(reporter, "net-"+reporter, false, s)
}

func TestDecisions(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)

	// Two colluders agree on a clean address: the evidence is high but nobody is
	// established, so the verdict is defer, and agreeing earns neither of them trust.
	if d := n.peer("a", sighting("192.0.2.1", 100, "linux", now, time.Hour)); d.Decision != Defer || d.Evidence != 0.5 {
		t.Fatalf("first report: %+v", d)
	}
	d := n.peer("b", sighting("192.0.2.1", 100, "linux", now, 3*time.Hour))
	if d.Decision != Defer || d.Reporters != 2 || d.Evidence < 0.7 || d.Established != 0 {
		t.Fatalf("second report: %+v", d)
	}
	if n.trust.Score("a") != 0.5 || n.trust.Score("b") != 0.5 {
		t.Errorf("agreement between peers moved trust: a %v b %v", n.trust.Score("a"), n.trust.Score("b"))
	}
	// A repeated report from the same reporter adds nothing.
	if d := n.peer("a", sighting("192.0.2.1", 90, "linux", now, time.Hour)); d.Reporters != 2 {
		t.Errorf("repeat counted twice: %+v", d)
	}

	// Irrelevant: another OS, stored and never acted on.
	if d := n.peer("c", sighting("192.0.2.2", 100, "windows", now, time.Hour)); d.Decision != Irrelevant || d.Relevant {
		t.Errorf("irrelevant report: %+v", d)
	}

	// Own evidence acts at once, alone, and confirms the peer reports that came before it.
	h := sighting("198.51.100.5", 90, "linux", now, time.Hour)
	n.peer("honest", h)
	now = now.Add(time.Second)
	w, err := n.Witness(stix.AddrTarget(mustAddr("198.51.100.5")), "test.sensor", time.Hour)
	if err != nil || w.Decision != Act {
		t.Fatalf("witness: %+v %v", w, err)
	}
	if got := n.trust.Score("honest"); got <= 0.5 {
		t.Errorf("confirmed reporter's trust %v, want above neutral", got)
	}
	// A report arriving after this agent's own flag is not credited (it taught nothing).
	n.peer("late", sighting("198.51.100.5", 90, "linux", now, time.Hour))
	if got := n.trust.Score("late"); got != 0.5 {
		t.Errorf("late reporter credited: %v", got)
	}

	// Without sensing, silence proves nothing: the window passes, trust stays, defer stays.
	lie := sighting("198.51.100.9", 100, "linux", now, 2*time.Hour)
	n.peer("liar", lie)
	now = now.Add(2 * time.Minute)
	n.settleDue()
	if got := n.trust.Score("liar"); got != 0.5 || n.state["198.51.100.9"] != Defer {
		t.Errorf("no sensing: trust %v state %v", got, n.state["198.51.100.9"])
	}
	// With sensing, a relevant report this agent's sensors never saw is contradicted.
	n.cfg.Sensing = true
	lie2 := sighting("198.51.100.10", 100, "linux", now, 2*time.Hour)
	n.peer("liar", lie2)
	now = now.Add(2 * time.Minute)
	n.settleDue()
	if got := n.trust.Score("liar"); got >= 0.5 {
		t.Errorf("contradicted report did not lower trust: %v", got)
	}
	recs := n.Decisions(lie2.ID)
	if last := recs[len(recs)-1]; last.Event != "contradicted" || last.Decision != Ignore {
		t.Errorf("after the window: %+v", last)
	}
}

// An echoing liar gains nothing by repeating honest reports, and whatever trust it earns,
// it alone (or any coalition below the quorum) never makes this node block.
func TestEchoAndQuorum(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)
	n.cfg.Decision.Members = 6 // quorum = floor(6/3)+1 = 3
	if q := n.quorum(); q != 3 {
		t.Fatalf("quorum %d", q)
	}
	// The liar echoes four honest reports before this agent's sensors confirm them: it is
	// confirmed with them (ground truth agreed) and becomes established...
	for i := 0; i < 4; i++ {
		a := fmt.Sprintf("203.0.113.%d", i+1)
		n.peer("honest1", sighting(a, 90, "linux", now, time.Hour))
		n.peer("liar", sighting(a, 90, "linux", now, time.Hour))
		now = now.Add(time.Second)
		n.Witness(stix.AddrTarget(mustAddr(a)), "test.sensor", time.Hour)
	}
	if !n.trust.Established("liar", n.cfg.Trust.Established) {
		t.Fatalf("liar not established after echoing: %v", n.trust.Score("liar"))
	}
	// ...but its lie alone is only deferred, and so is a lie of two established liars.
	if d := n.peer("liar", sighting("192.0.2.50", 100, "linux", now, time.Hour)); d.Decision != Defer || d.Established != 1 {
		t.Errorf("lone established liar: %+v", d)
	}
	if d := n.peer("honest1", sighting("192.0.2.50", 100, "linux", now, time.Hour)); d.Decision != Defer || d.Established != 2 {
		t.Errorf("two established reporters: %+v", d)
	}
	// Three established reporters in one network are one independent reporter.
	for i := 0; i < 3; i++ {
		r := fmt.Sprintf("sybil%d", i)
		for j := 0; j < 3; j++ {
			n.trust.Confirmed(r)
		}
		if d := n.onSighting(r, "net-sybils", false, sighting("192.0.2.60", 100, "linux", now, time.Hour)); d.Decision == Act {
			t.Errorf("colocated reporters blocked: %+v", d)
		}
	}
	// Three independent established reporters make the quorum.
	for j := 0; j < 3; j++ {
		n.trust.Confirmed("honest2")
	}
	if d := n.peer("honest2", sighting("192.0.2.50", 100, "linux", now, time.Hour)); d.Decision != Act || d.Established != 3 {
		t.Errorf("quorum: %+v", d)
	}
	// A port is not blocked on peer reports alone, quorum or not.
	for _, r := range []string{"liar", "honest1", "honest2"} {
		s := sighting("192.0.2.1", 100, "linux", now, time.Hour)
		s.Target = stix.PortTarget(443)
		if d := n.peer(r, s); d.Decision == Act {
			t.Errorf("port blocked on peer reports: %+v", d)
		}
	}
	// A protected address is not blocked on peer reports, quorum or not.
	n.guard, _ = newGuard([]string{"198.18.0.0/15"}, func() []netip.Addr { return []netip.Addr{mustAddr("100.64.1.1")} }, n.now)
	for _, target := range []string{"198.18.3.4", "100.64.1.1", "127.0.0.1"} {
		var d DecisionRecord
		for _, r := range []string{"liar", "honest1", "honest2"} {
			d = n.peer(r, sighting(target, 100, "linux", now, time.Hour))
		}
		if d.Decision == Act || !strings.HasPrefix(d.Why, "protected") {
			t.Errorf("%s: %+v", target, d)
		}
	}
}

// Deferred targets share one vigilance action: a flood of uncertain reports is one
// countermeasure, extended only when a later end is needed.
func TestVigilanceCoalesced(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)
	n.vigAct = "v"
	for i := 0; i < 200; i++ {
		if d := n.peer(fmt.Sprintf("p%d", i%7), sighting(fmt.Sprintf("198.51.100.%d", i%250), 90, "linux", now, time.Hour)); d.Decision != Defer {
			t.Fatalf("report %d: %+v", i, d)
		}
	}
	if n.vigApplied != 1 || len(n.deferred) != 200 {
		t.Errorf("vigilance applied %d times for %d deferred targets", n.vigApplied, len(n.deferred))
	}
	n.peer("p0", sighting("198.51.100.251", 90, "linux", now, 3*time.Hour))
	if n.vigApplied != 2 {
		t.Errorf("a later end did not extend: %d", n.vigApplied)
	}
}

// A new version of an indicator that names another target is refused.
func TestIndicatorTargetImmutable(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)
	s := sighting("192.0.2.1", 100, "linux", now, time.Hour)
	n.peer("a", s)
	moved := *s
	moved.Target = stix.AddrTarget(mustAddr("192.0.2.99"))
	moved.Modified = now.Add(time.Second)
	if d := n.peer("a", &moved); d.Event != "refused" {
		t.Errorf("re-targeted version: %+v", d)
	}
	if _, ok := n.state["192.0.2.99"]; ok {
		t.Errorf("new target decided")
	}
	if r := n.byID[reportKey("a", s.ID)]; r.s.Target.String() != "192.0.2.1" {
		t.Errorf("report now names %s", r.s.Target)
	}
}

// A member reusing another reporter's indicator id can neither replace that report nor
// revoke it.
func TestIndicatorIDReuse(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)
	s := sighting("192.0.2.1", 100, "linux", now, time.Hour)
	n.peer("a", s)
	n.peer("b", sighting("192.0.2.1", 100, "linux", now, time.Hour))
	if n.state["192.0.2.1"] != Defer {
		t.Fatalf("state %v", n.state["192.0.2.1"])
	}
	// "b" revokes "a"'s indicator id: ignored.
	n.onRevocation("b", &stix.Revocation{ID: s.ID})
	if r := n.byID[reportKey("a", s.ID)]; r == nil || r.revoked {
		t.Fatalf("another reporter revoked a's report")
	}
	// "a" revokes its own: the evidence falls to b alone.
	n.onRevocation("a", &stix.Revocation{ID: s.ID})
	if d := n.Decisions(s.ID); d[len(d)-1].Event != "revocation" || d[len(d)-1].Reporters != 1 {
		t.Errorf("after the revocation: %+v", d[len(d)-1])
	}
}

// A block the operator (or the engine, with a "local:" source) applied is this agent's own
// evidence; a block the enclave itself applied on peer reports is not.
func TestLocalBlocksAreEvidence(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)
	n.peer("r1", sighting("198.51.100.1", 90, "linux", now, time.Hour))
	n.peer("r2", sighting("198.51.100.2", 90, "linux", now, time.Hour))
	now = now.Add(time.Second)
	ev := make(chan bus.Event, 3)
	block := func(target, source string) bus.Event {
		return bus.Event{Kind: countermeasure.EventApplied, Attrs: map[string]any{"kind": "block", "how": "new",
			"target": target, "source": source, "expires": now.Add(time.Hour)}}
	}
	ev <- block("198.51.100.1", OperatorSource)
	ev <- block("198.51.100.2", Source("198.51.100.2"))
	ev <- block("198.51.100.3", "local:eve")
	close(ev)
	n.wg.Add(1)
	n.watchLocalBlocks(ev)
	if n.trust.Score("r1") <= 0.5 || n.state["198.51.100.1"] != Act {
		t.Errorf("operator block not taken as evidence: trust %v state %v", n.trust.Score("r1"), n.state["198.51.100.1"])
	}
	if n.trust.Score("r2") != 0.5 || n.state["198.51.100.2"] != Defer {
		t.Errorf("the enclave's own block laundered into evidence: trust %v state %v", n.trust.Score("r2"), n.state["198.51.100.2"])
	}
	if n.state["198.51.100.3"] != Act {
		t.Errorf("local: block not taken as evidence: %v", n.state["198.51.100.3"])
	}
}
