package enclave

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/stix"
)

type report struct {
	reporter     string
	group        string // independence group (see groupOf)
	local        bool   // this agent's own evidence
	s            *stix.Sighting
	received     time.Time
	deadline     time.Time // when local evidence must have confirmed it
	relevant     bool
	why          string
	settled      bool // trust already adjusted (or judged unknowable)
	confirmed    bool // this agent's own evidence confirmed it
	contradicted bool // this agent's sensors watched and saw nothing: no longer counts
	revoked      bool
}

func targetKey(t stix.Target) string { return t.String() }

// reportKey indexes reports by reporter and indicator id, so a member reusing another's
// indicator id can neither overwrite that report nor block its revocation.
func reportKey(reporter, indicator string) string { return reporter + "\x00" + indicator }

// onSighting records a report (local: this agent's own evidence) and re-decides its target.
// A new version of a known indicator updates it in place; one that names another target is
// refused (the validator already rejects it as invalid; this covers local callers).
func (n *Node) onSighting(reporter, group string, local bool, s *stix.Sighting) DecisionRecord {
	now := n.now()
	rel, why := true, "own evidence"
	if !local {
		rel, why = s.Exposure.Match(s.Target, n.exposure)
	}
	key := targetKey(s.Target)
	n.mu.Lock()
	defer n.mu.Unlock()
	rk := reportKey(reporter, s.ID)
	r, ok := n.byID[rk]
	switch {
	case ok && targetKey(r.s.Target) != key:
		rec := DecisionRecord{Time: now, Event: "refused", Indicator: s.ID, Reporter: reporter, Target: key,
			Decision: Ignore, Why: "indicator " + s.ID + " already names " + targetKey(r.s.Target)}
		n.logDecisionLocked(rec)
		return rec
	case ok:
		r.s, r.revoked = s, false // a newer version of the same indicator
		r.relevant, r.why = rel, why
		if local {
			r.received = now // a renewed local flag confirms what came before it
		}
	default:
		if !local && n.perReporter[reporter] >= n.cfg.Limits.Reports {
			rec := DecisionRecord{Time: now, Event: "refused", Indicator: s.ID, Reporter: reporter, Target: key,
				Decision: Ignore, Why: fmt.Sprintf("reporter holds limits.reports (%d) live reports", n.cfg.Limits.Reports)}
			n.logDecisionLocked(rec)
			return rec
		}
		r = &report{reporter: reporter, group: group, local: local, s: s, received: now,
			deadline: now.Add(n.cfg.Trust.Window), relevant: rel, why: why, settled: local}
		n.byID[rk] = r
		n.targets[key] = append(n.targets[key], r)
		n.perReporter[reporter]++
	}
	event := "sighting"
	if local {
		event = "local"
		n.confirmLocked(key, r)
	}
	n.dirtyReportLocked(r)
	return n.decideLocked(key, r, event)
}

// onRevocation drops the revoked report and re-decides its target; a revocation from
// anyone but the original reporter is ignored.
func (n *Node) onRevocation(reporter string, v *stix.Revocation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.byID[reportKey(reporter, v.ID)]
	if !ok || r.revoked {
		return
	}
	r.revoked = true
	n.dirtyReportLocked(r)
	n.decideLocked(targetKey(r.s.Target), r, "revocation")
}

// settleDue judges the reports whose window has passed without local evidence and prunes
// expired ones. A relevant peer report is contradicted when this agent's sensors watch
// (sensing): its reporter's trust falls and it stops counting. Otherwise it stays as it was:
// silence of an agent that does not watch proves nothing.
func (n *Node) settleDue() {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, rs := range n.targets {
		var last *report
		keep := rs[:0]
		for _, r := range rs {
			if !r.settled && !r.revoked && !now.Before(r.deadline) {
				r.settled = true
				n.dirtyReportLocked(r)
				if r.relevant && !r.local && now.Before(r.s.ValidUntil) && n.sensing(r.s.Target) {
					r.contradicted = true
					score := n.trust.Contradicted(r.reporter)
					n.log.Info("report contradicted: own sensors saw nothing", "reporter", r.reporter, "target", key, "trust", score)
					last = r
				}
			}
			if (r.settled || r.revoked) && !now.Before(r.s.ValidUntil) {
				delete(n.byID, reportKey(r.reporter, r.s.ID))
				if n.perReporter[r.reporter]--; n.perReporter[r.reporter] <= 0 {
					delete(n.perReporter, r.reporter)
				}
				delete(n.dirtyReports, r) // expired: a restart drops it anyway
				continue
			}
			keep = append(keep, r)
		}
		n.targets[key] = keep
		if last != nil {
			n.decideLocked(key, last, "contradicted")
		}
		if len(keep) == 0 {
			delete(n.targets, key)
			if n.state[key] == Defer {
				delete(n.deferred, key)
			}
			delete(n.state, key)
			delete(n.until, key)
			delete(n.dirtyTargets, key) // a restart drops a target without reports
		}
	}
	if len(n.deferred) > 0 {
		if _, err := n.vigilanceLocked(); err != nil {
			n.log.Error("vigilance", "err", err)
		}
	}
}

// quorum is how many independent established reporters a block on peer reports alone
// needs: floor(max_colluding·N)+1, at least 2, so the largest coalition of liars the
// configuration assumes can never reach it by itself.
func (n *Node) quorum() int {
	return Quorum(n.enclaveSize(), n.cfg.Decision.MaxColluding)
}

// Quorum is floor(f·size)+1, at least 2.
func Quorum(size int, f float64) int {
	return max(2, int(math.Floor(f*float64(size)+1e-9))+1)
}

// decideLocked weighs the live relevant reports on key and moves the countermeasure to the
// decided state (trigger is the report that caused the decision):
//
//   - own evidence live on key: act (block) at once;
//   - peer reports only: the three-way decision on the combined evidence, but act needs
//     Quorum independent reporters of established trust, and a port target needs
//     decision.peer_ports; short of that, defer (vigilance), which costs the target nothing;
//   - a target this node must never block (see guard) is at most deferred.
func (n *Node) decideLocked(key string, trigger *report, event string) DecisionRecord {
	now := n.now()
	var ev []Evidence
	var until time.Time
	var target stix.Target
	anyRelevant, anyLive, own, allWatch := false, false, false, true
	groups := map[string]bool{}
	for _, r := range n.targets[key] {
		if r.revoked || r.contradicted || !now.Before(r.s.ValidUntil) {
			continue
		}
		anyLive = true
		if !r.relevant {
			continue
		}
		anyRelevant = true
		target = r.s.Target
		if r.s.ValidUntil.After(until) {
			until = r.s.ValidUntil
		}
		if r.s.Action != stix.ActionWatch {
			allWatch = false
		}
		if r.local {
			own = true
			ev = append(ev, Evidence{Reporter: r.reporter, Trust: 1, Confidence: float64(r.s.Confidence) / 100})
			continue
		}
		ev = append(ev, Evidence{Reporter: r.reporter, Trust: n.trust.Score(r.reporter), Confidence: float64(r.s.Confidence) / 100})
		if r.s.Action != stix.ActionWatch && n.trust.Established(r.reporter, n.cfg.Trust.Established) {
			groups[r.group] = true
		}
	}
	evidence := Combine(ev)
	why := trigger.why
	var d Decision
	switch {
	case anyLive && !anyRelevant:
		d = Irrelevant // stored, never acted on
	case !anyLive:
		d = Ignore
	case own:
		d = Act
	default:
		d = Decide(evidence, n.cfg.Decision.Act, n.cfg.Decision.Defer)
		if q := n.quorum(); d == Act && len(groups) < q {
			d, why = Defer, fmt.Sprintf("peer reports only: %d of %d independent established reporters", len(groups), q)
		}
		if d == Act && target.IsPort() && !n.cfg.Decision.PeerPorts {
			d, why = Defer, "a port is blocked on local evidence only (decision.peer_ports)"
		}
	}
	if d == Act && allWatch {
		d = Defer // the reporters only asked for vigilance
	}
	if d == Act && n.guard != nil {
		if p := n.guard.protected(target); p != "" {
			d, why = Defer, p
		}
	}
	if max := now.Add(n.cfg.MaxTTL); until.After(max) {
		until = max
	}
	rec := DecisionRecord{Time: now, Event: event, Indicator: trigger.s.ID, Reporter: trigger.reporter,
		Target: key, Confidence: float64(trigger.s.Confidence) / 100, Evidence: round4(evidence),
		Reporters: distinct(ev), Established: len(groups), Decision: d, Relevant: trigger.relevant, Why: why}
	rec.Trust = 1
	if !trigger.local {
		rec.Trust = round4(n.trust.Score(trigger.reporter))
	}
	applied, err := n.enforceLocked(key, target, d, until, trigger)
	rec.Applied = applied
	if applied {
		rec.AppliedAt = n.now()
	}
	if err != nil {
		rec.Error = err.Error()
		n.log.Error("countermeasure", "target", key, "decision", d, "err", err)
	}
	n.logDecisionLocked(rec)
	// Every delivery ends here: its log line and event are built only when someone takes them.
	if n.log.Enabled(context.Background(), slog.LevelInfo) {
		n.log.Info("decision", "event", event, "target", key, "reporter", trigger.reporter, "evidence", rec.Evidence,
			"reporters", rec.Reporters, "established", rec.Established, "decision", d, "why", why, "applied", applied)
	}
	if n.bus != nil {
		n.publishEvent(EventDecision, key, map[string]any{"decision": string(d), "evidence": rec.Evidence,
			"reporter": trigger.reporter, "indicator": trigger.s.ID, "event": event})
	}
	return rec
}

func (n *Node) logDecisionLocked(rec DecisionRecord) {
	n.decisions = append(n.decisions, rec)
	if len(n.decisions) > maxDecisionLog {
		n.decisions = append(n.decisions[:0:0], n.decisions[len(n.decisions)-maxDecisionLog/2:]...)
	}
}

// Source is the countermeasure source of the actions the enclave takes on a target.
func Source(targetKey string) string { return "enclave:" + targetKey }

// VigilanceSource is the source of the one vigilance action that every deferred target
// shares: defer decisions are coalesced, not one action per report.
const VigilanceSource = "enclave:vigilance"

// enforceLocked moves the countermeasure for key to decision d: a block per target for act,
// a share in the coalesced vigilance action for defer.
func (n *Node) enforceLocked(key string, target stix.Target, d Decision, until time.Time, trigger *report) (bool, error) {
	prev := n.state[key]
	if prev == d && d == Act && !until.After(n.until[key]) {
		return false, nil // already in force at least that long: no journal write
	}
	n.dirtyTargetLocked(key)
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if prev == Act && d != Act && n.manager != nil {
		if _, err := n.manager.Retract(ctx, Source(key)); err != nil {
			return false, err
		}
	}
	n.state[key] = d
	if d == Act || d == Defer {
		n.until[key] = until
	} else {
		delete(n.until, key)
	}
	if d == Defer {
		n.deferred[key] = until
	} else {
		delete(n.deferred, key)
	}
	switch d {
	case Act:
		if n.manager == nil {
			return true, nil
		}
		a := countermeasure.Action{Actuator: n.blockAct, Kind: countermeasure.KindBlock, Target: cmTarget(target),
			Source: Source(key), Expires: until,
			Reason: fmt.Sprintf("enclave %s: %s reported by %s", n.cfg.Name, trigger.s.ID, trigger.reporter)}
		if _, err := n.manager.Apply(ctx, a); err != nil {
			n.state[key] = prev
			delete(n.until, key)
			return false, err
		}
		_, err := n.vigilanceLocked()
		return true, err
	default:
		return n.vigilanceLocked()
	}
}

// vigilanceSlack is how much later than the applied vigilance a deferred target must run
// before the action is extended (one journal write per slack, not one per report).
const vigilanceSlack = time.Minute

// vigilanceLocked keeps the one coalesced vigilance action in force until the latest
// deferred target's end, and retracts it when nothing is deferred.
func (n *Node) vigilanceLocked() (bool, error) {
	now := n.now()
	var latest time.Time
	for k, u := range n.deferred {
		if !u.After(now) {
			delete(n.deferred, k)
			continue
		}
		if u.After(latest) {
			latest = u
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if latest.IsZero() {
		if n.vigUntil.IsZero() {
			return false, nil
		}
		n.vigUntil = time.Time{}
		if n.manager != nil {
			if _, err := n.manager.Retract(ctx, VigilanceSource); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	if n.vigUntil.After(now) && !latest.After(n.vigUntil.Add(vigilanceSlack)) {
		return false, nil
	}
	n.vigUntil = latest
	n.vigApplied++
	if n.manager == nil || n.vigAct == "" {
		return true, nil
	}
	a := countermeasure.Action{Actuator: n.vigAct, Kind: countermeasure.KindVigilance, Level: 1,
		Source: VigilanceSource, Expires: latest, Reason: fmt.Sprintf("enclave %s: %d deferred targets", n.cfg.Name, len(n.deferred))}
	if _, err := n.manager.Apply(ctx, a); err != nil {
		n.vigUntil = time.Time{}
		return false, err
	}
	return true, nil
}

func cmTarget(t stix.Target) countermeasure.Target {
	if t.IsPort() {
		return countermeasure.PortTarget(t.Port)
	}
	return countermeasure.PrefixTarget(t.Prefix)
}

func distinct(ev []Evidence) int {
	seen := map[string]bool{}
	for _, e := range ev {
		seen[e.Reporter] = true
	}
	return len(seen)
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// Decisions returns the decision log, optionally only the entries for one indicator.
func (n *Node) Decisions(indicator string) []DecisionRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []DecisionRecord
	for _, d := range n.decisions {
		if indicator == "" || d.Indicator == indicator {
			out = append(out, d)
		}
	}
	return out
}
