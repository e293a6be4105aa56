package enclave

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/stix"
)

// decisionNode is a Node with only the decision state (no host, no countermeasure manager:
// enforcement is recorded, not applied), on a fake clock.
func decisionNode(t *testing.T, now *time.Time) *Node {
	t.Helper()
	cfg := config.Enclave{Name: "lab", Allowlist: []string{}}
	cfg.ApplyDefaults()
	cfg.Decision = config.EnclaveDecision{Act: 0.7, Defer: 0.3}
	cfg.Trust.Window = time.Minute
	cfg.MaxTTL = 2 * time.Hour
	clock := func() time.Time { return *now }
	tr, _ := OpenTrust("", TrustParams{Neutral: 0.5, Reward: 0.2, Penalty: 0.3, InvalidPenalty: 0.6, HalfLife: 24 * time.Hour}, clock)
	return &Node{cfg: cfg, self: newPeerID(t), trust: tr, now: clock, log: slog.New(slog.DiscardHandler),
		exposure: stix.Exposure{OS: "linux", Services: []stix.Service{{Port: 22}}}, allow: map[peer.ID]bool{},
		targets: map[string][]*report{}, byID: map[string]*report{}, state: map[string]Decision{},
		until: map[string]time.Time{}}
}

func sighting(target string, conf int, os string, now time.Time, ttl time.Duration) *stix.Sighting {
	return &stix.Sighting{ID: stix.NewID("indicator"), Target: stix.AddrTarget(netip.MustParseAddr(target)),
		Exposure: stix.Exposure{OS: os}, Action: stix.ActionBlock, Confidence: conf, Created: now, ValidUntil: now.Add(ttl)}
}

func TestDecisions(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)

	// One neutral reporter defers, a second independent one makes it act.
	if d := n.onSighting("a", false, sighting("192.0.2.1", 90, "linux", now, time.Hour)); d.Decision != Defer || d.Evidence != 0.45 {
		t.Fatalf("first report: %+v", d)
	}
	d := n.onSighting("b", false, sighting("192.0.2.1", 90, "linux", now, 3*time.Hour))
	if d.Decision != Act || d.Reporters != 2 {
		t.Fatalf("second report: %+v", d)
	}
	// Both corroborated each other.
	if n.trust.Score("a") <= 0.5 || n.trust.Score("b") <= 0.5 {
		t.Errorf("corroboration did not raise trust: a %v b %v", n.trust.Score("a"), n.trust.Score("b"))
	}
	// A repeated report from the same reporter adds nothing.
	if d := n.onSighting("a", false, sighting("192.0.2.1", 90, "linux", now, time.Hour)); d.Reporters != 2 {
		t.Errorf("repeat counted twice: %+v", d)
	}

	// Irrelevant: another OS, stored and never acted on.
	if d := n.onSighting("c", false, sighting("192.0.2.2", 100, "windows", now, time.Hour)); d.Decision != Irrelevant || d.Relevant {
		t.Errorf("irrelevant report: %+v", d)
	}
	// watch caps at defer.
	w := sighting("192.0.2.3", 100, "linux", now, time.Hour)
	w.Action = stix.ActionWatch
	n.onSighting("a", false, w)
	if d := n.onSighting("b", false, func() *stix.Sighting {
		s := sighting("192.0.2.3", 100, "linux", now, time.Hour)
		s.Action = stix.ActionWatch
		return s
	}()); d.Decision != Defer {
		t.Errorf("watch: %+v", d)
	}

	// A lone report that is never corroborated: the reporter loses trust and the target
	// goes back to ignore.
	lie := sighting("198.51.100.9", 100, "linux", now, time.Hour)
	before := n.trust.Score("liar")
	n.onSighting("liar", false, lie)
	now = now.Add(2 * time.Minute)
	n.settleDue()
	if got := n.trust.Score("liar"); got >= before {
		t.Errorf("unconfirmed report did not lower trust: %v -> %v", before, got)
	}
	recs := n.Decisions(lie.ID)
	if last := recs[len(recs)-1]; last.Event != "unconfirmed" || last.Decision != Ignore {
		t.Errorf("after the window: %+v", last)
	}
	if n.state["198.51.100.9"] != Ignore {
		t.Errorf("state %v", n.state["198.51.100.9"])
	}
}

// A member reusing another reporter's indicator id can neither replace that report nor
// revoke it.
func TestIndicatorIDReuse(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	n := decisionNode(t, &now)
	s := sighting("192.0.2.1", 100, "linux", now, time.Hour)
	n.onSighting("a", false, s)
	n.onSighting("b", false, sighting("192.0.2.1", 100, "linux", now, time.Hour))
	if n.state["192.0.2.1"] != Act {
		t.Fatalf("state %v", n.state["192.0.2.1"])
	}
	// "b" revokes "a"'s indicator id: ignored.
	n.onRevocation("b", &stix.Revocation{ID: s.ID})
	if r := n.byID[reportKey("a", s.ID)]; r == nil || r.revoked {
		t.Fatalf("another reporter revoked a's report")
	}
	// "a" revokes its own: the evidence falls to b alone (0.6 after corroboration < 0.7).
	n.onRevocation("a", &stix.Revocation{ID: s.ID})
	if n.state["192.0.2.1"] == Act {
		t.Errorf("still acting after the revocation")
	}
}
