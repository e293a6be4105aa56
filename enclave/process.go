package enclave

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/stix"
)

// validate is the topic validator. It runs before a message is delivered or forwarded:
//
//   - from a non-member (author or forwarder)        → reject
//   - a bad envelope, wrong enclave, bad STIX bundle,
//     a report attributed to another peer             → reject, and a sharp trust penalty
//     for the (signature-authenticated) author
//   - stale (expired, clock skew) or a replay         → ignore
//   - otherwise                                       → accept; the decoded message rides
//     along in ValidatorData
func (n *Node) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	author := msg.GetFrom()
	if !n.isMember(from) {
		n.log.Debug("message via non-member", "via", from, "author", author)
		n.stats.nonMember.Add(1)
		return pubsub.ValidationReject
	}
	env, err := DecodeEnvelope(msg.GetData(), n.cfg.MaxMessageBytes)
	if err == nil && env.Enclave != n.cfg.Name {
		err = fmt.Errorf("%w: for enclave %q", ErrEnvelope, env.Enclave)
	}
	if err == nil {
		if merr := n.admitCert(author, env.Cert); merr != nil {
			n.stats.nonMember.Add(1)
			n.log.Debug("message from non-member", "author", author, "via", from, "err", merr)
			return pubsub.ValidationReject
		}
	} else if !n.isMember(author) {
		n.stats.nonMember.Add(1)
		return pubsub.ValidationReject
	}
	var m stix.Message
	if err == nil {
		now := n.now()
		m, err = stix.Decode(env.Bundle, now, stix.DecodeOptions{MaxSize: n.cfg.MaxMessageBytes,
			MaxSkew: n.cfg.MaxClockSkew, MaxTTL: n.cfg.MaxTTL})
		if errors.Is(err, stix.ErrExpired) || errors.Is(err, stix.ErrClockSkew) {
			n.stats.ignored.Add(1)
			return pubsub.ValidationIgnore
		}
		if err == nil {
			err = n.checkAttribution(env.Kind, author, m)
		}
		if err == nil {
			if rerr := n.replay.Admit(m, now); rerr != nil {
				n.stats.ignored.Add(1)
				return pubsub.ValidationIgnore
			}
		}
	}
	if err != nil {
		n.stats.rejected.Add(1)
		if author != n.self {
			score := n.trust.Invalid(n.peerName(author))
			n.log.Warn("invalid message", "author", author, "via", from, "err", err, "trust", score)
			n.publishEvent(EventRejected, author.String(), map[string]any{"reason": err.Error(), "trust": score})
		}
		return pubsub.ValidationReject
	}
	msg.ValidatorData = m
	n.stats.accepted.Add(1)
	return pubsub.ValidationAccept
}

// checkAttribution makes sure the bundle kind matches the envelope and that a member only
// speaks for itself.
func (n *Node) checkAttribution(k Kind, author peer.ID, m stix.Message) error {
	var name, id string
	switch v := m.(type) {
	case *stix.Sighting:
		if k != KindSighting {
			return fmt.Errorf("%w: envelope says %v, bundle holds a sighting", ErrEnvelope, k)
		}
		name, id = v.ReporterName, v.ReporterID
	case *stix.Revocation:
		if k != KindRevocation {
			return fmt.Errorf("%w: envelope says %v, bundle holds a revocation", ErrEnvelope, k)
		}
		name, id = v.ReporterName, v.ReporterID
	default:
		return fmt.Errorf("%w: unexpected message %T", ErrEnvelope, m)
	}
	if name != n.peerName(author) || id != reporterID(author) {
		return fmt.Errorf("%w: report attributed to %q, signed by %s", ErrEnvelope, name, author)
	}
	return nil
}

// receive delivers validated messages from other members to handle.
func (n *Node) receive() {
	defer n.wg.Done()
	for {
		msg, err := n.sub.Next(n.ctx)
		if err != nil {
			return
		}
		from := msg.GetFrom()
		if from == n.self {
			continue // handled when published
		}
		m, ok := msg.ValidatorData.(stix.Message)
		if !ok {
			continue
		}
		switch v := m.(type) {
		case *stix.Sighting:
			n.onSighting(n.peerName(from), false, v)
		case *stix.Revocation:
			n.onRevocation(n.peerName(from), v)
		}
	}
}

// sweep settles reports whose corroboration window has passed and prunes expired ones.
func (n *Node) sweep() {
	defer n.wg.Done()
	every := n.cfg.Trust.Window / 4
	if every > time.Second {
		every = time.Second
	}
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.settleDue()
		}
	}
}

func targetKey(t stix.Target) string { return t.String() }

// reportKey indexes reports by reporter and indicator id, so a member reusing another's
// indicator id can neither overwrite that report nor block its revocation.
func reportKey(reporter, indicator string) string { return reporter + "\x00" + indicator }

// onSighting records a report and re-decides its target.
func (n *Node) onSighting(reporter string, local bool, s *stix.Sighting) DecisionRecord {
	now := n.now()
	rel, why := true, "own sighting"
	if !local {
		rel, why = s.Exposure.Match(s.Target, n.exposure)
	}
	r := &report{reporter: reporter, local: local, s: s, received: now,
		deadline: now.Add(n.cfg.Trust.Window), relevant: rel, why: why}
	if local {
		r.settled = true
	}
	key := targetKey(s.Target)
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.byID[reportKey(reporter, s.ID)]; ok {
		old.s, old.revoked = s, false // a newer version of the same indicator
		r = old
	} else {
		n.byID[reportKey(reporter, s.ID)] = r
		n.targets[key] = append(n.targets[key], r)
	}
	n.corroborateLocked(key, r)
	event := "sighting"
	if local {
		event = "local"
	}
	return n.decideLocked(key, r, event)
}

// corroborateLocked pairs r with the live reports of other reporters on the same target:
// each side confirms the other when its reporter is trusted at least trust.corroborate
// (own sightings always count).
func (n *Node) corroborateLocked(key string, r *report) {
	now := n.now()
	min := n.cfg.Trust.Corroborate
	for _, q := range n.targets[key] {
		if q == r || q.reporter == r.reporter || q.revoked || q.unconfirmed || now.After(q.s.ValidUntil) {
			continue
		}
		if !q.settled && now.Before(q.deadline) && (r.local || n.trust.Score(r.reporter) >= min) {
			q.settled, q.corroborated = true, true
			score := n.trust.Corroborated(q.reporter)
			n.log.Info("report corroborated", "reporter", q.reporter, "target", key, "by", r.reporter, "trust", score)
		}
		if !r.settled && (q.local || n.trust.Score(q.reporter) >= min) {
			r.settled, r.corroborated = true, true
			score := n.trust.Corroborated(r.reporter)
			n.log.Info("report corroborated", "reporter", r.reporter, "target", key, "by", q.reporter, "trust", score)
		}
	}
}

// onRevocation drops the revoked report and re-decides its target; a revocation from
// anyone but the original reporter is ignored.
func (n *Node) onRevocation(reporter string, v *stix.Revocation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.byID[reportKey(reporter, v.ID)]
	if !ok {
		return
	}
	r.revoked = true
	n.decideLocked(targetKey(r.s.Target), r, "revocation")
}

// settleDue penalizes reports that were not corroborated within the window: they are
// treated as false from then on and their target is re-decided.
func (n *Node) settleDue() {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, rs := range n.targets {
		changed := false
		var last *report
		keep := rs[:0]
		for _, r := range rs {
			if !r.settled && !r.revoked && !now.Before(r.deadline) {
				r.settled, r.unconfirmed = true, true
				score := n.trust.Unconfirmed(r.reporter)
				n.log.Info("report never corroborated", "reporter", r.reporter, "target", key, "trust", score)
				changed, last = true, r
			}
			if r.settled && now.After(r.s.ValidUntil) {
				delete(n.byID, reportKey(r.reporter, r.s.ID))
				continue
			}
			keep = append(keep, r)
		}
		n.targets[key] = keep
		if changed {
			n.decideLocked(key, last, "unconfirmed")
		}
		if len(keep) == 0 {
			delete(n.targets, key)
			delete(n.state, key)
			delete(n.until, key)
		}
	}
}

// decideLocked combines the live relevant reports on key and moves the countermeasure to
// the decided state. trigger is the report that caused the decision.
func (n *Node) decideLocked(key string, trigger *report, event string) DecisionRecord {
	now := n.now()
	var ev []Evidence
	var until time.Time
	var target stix.Target
	anyRelevant, anyLive := false, false
	for _, r := range n.targets[key] {
		if r.revoked || r.unconfirmed || !now.Before(r.s.ValidUntil) {
			continue
		}
		anyLive = true
		if !r.relevant {
			continue
		}
		anyRelevant = true
		trust := 1.0
		if !r.local {
			trust = n.trust.Score(r.reporter)
		}
		ev = append(ev, Evidence{Reporter: r.reporter, Trust: trust, Confidence: float64(r.s.Confidence) / 100})
		if r.s.ValidUntil.After(until) {
			until = r.s.ValidUntil
		}
		target = r.s.Target
	}
	evidence := Combine(ev)
	d := Decide(evidence, n.cfg.Decision.Act, n.cfg.Decision.Defer)
	if anyLive && !anyRelevant {
		d = Irrelevant // stored, never acted on
	}
	if max := now.Add(n.cfg.MaxTTL); until.After(max) {
		until = max
	}
	rec := DecisionRecord{Time: now, Event: event, Indicator: trigger.s.ID, Reporter: trigger.reporter,
		Target: key, Confidence: float64(trigger.s.Confidence) / 100, Evidence: round4(evidence),
		Reporters: distinct(ev), Decision: d, Relevant: trigger.relevant, Why: trigger.why}
	rec.Trust = 1
	if !trigger.local {
		rec.Trust = round4(n.trust.Score(trigger.reporter))
	}
	if d == Act && trigger.s.Action == stix.ActionWatch {
		d, rec.Decision = Defer, Defer // the reporter only asked for vigilance
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
	n.decisions = append(n.decisions, rec)
	if len(n.decisions) > maxDecisionLog {
		n.decisions = append(n.decisions[:0:0], n.decisions[len(n.decisions)-maxDecisionLog/2:]...)
	}
	n.log.Info("decision", "event", event, "target", key, "reporter", trigger.reporter, "evidence", rec.Evidence,
		"reporters", rec.Reporters, "decision", d, "relevant", trigger.relevant, "why", trigger.why, "applied", applied)
	n.publishEvent(EventDecision, key, map[string]any{"decision": string(d), "evidence": rec.Evidence,
		"reporter": trigger.reporter, "indicator": trigger.s.ID, "event": event})
	return rec
}

// Source is the countermeasure source of the actions the enclave takes on a target.
func Source(targetKey string) string { return "enclave:" + targetKey }

// enforceLocked moves the countermeasure for key to decision d.
func (n *Node) enforceLocked(key string, target stix.Target, d Decision, until time.Time, trigger *report) (bool, error) {
	prev := n.state[key]
	n.state[key] = d
	if prev == d && (d == Act || d == Defer) && !until.After(n.until[key]) {
		return false, nil // already in force at least that long: no journal write
	}
	if d == Act || d == Defer {
		n.until[key] = until
	} else {
		delete(n.until, key)
	}
	if n.manager == nil {
		return d == Act || d == Defer, nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if prev != d && (prev == Act || prev == Defer) {
		if _, err := n.manager.Retract(ctx, Source(key)); err != nil {
			return false, err
		}
	}
	var a countermeasure.Action
	switch d {
	case Act:
		a = countermeasure.Action{Actuator: n.blockAct, Kind: countermeasure.KindBlock, Target: cmTarget(target)}
	case Defer:
		if n.vigAct == "" {
			return false, nil
		}
		a = countermeasure.Action{Actuator: n.vigAct, Kind: countermeasure.KindVigilance, Level: 1}
	default:
		return false, nil
	}
	a.Source, a.Expires = Source(key), until
	a.Reason = fmt.Sprintf("enclave %s: %s reported by %s", n.cfg.Name, trigger.s.ID, trigger.reporter)
	if _, err := n.manager.Apply(ctx, a); err != nil {
		n.state[key] = prev
		delete(n.until, key)
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

// ErrInvalidRequest marks a publish or revoke request with bad input.
var ErrInvalidRequest = errors.New("enclave: invalid request")

// PublishRequest is a local sighting to share with the enclave.
type PublishRequest struct {
	Target      string        `json:"target"`     // address, CIDR or port/N
	Confidence  int           `json:"confidence"` // 0..100; 0 means 90
	TTL         time.Duration `json:"ttl"`        // 0 means 10m; capped by max_ttl
	Action      string        `json:"action"`     // block (default) or watch
	Description string        `json:"description,omitempty"`
}

// ParseTarget parses an address, a CIDR or "port/N".
func ParseTarget(s string) (stix.Target, error) {
	var port uint16
	if _, err := fmt.Sscanf(s, "port/%d", &port); err == nil && port > 0 && fmt.Sprintf("port/%d", port) == s {
		return stix.PortTarget(port), nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return stix.PrefixTarget(p), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return stix.AddrTarget(a), nil
	}
	return stix.Target{}, fmt.Errorf("%w: target %q: want an address, a CIDR or port/N", ErrInvalidRequest, s)
}

// Publish records a local sighting (this agent's own sensors saw it: full trust, acted on
// locally) and shares it with the enclave. It returns the sighting and its decision here.
func (n *Node) Publish(ctx context.Context, req PublishRequest) (*stix.Sighting, DecisionRecord, error) {
	t, err := ParseTarget(req.Target)
	if err != nil {
		return nil, DecisionRecord{}, err
	}
	if req.Confidence == 0 {
		req.Confidence = 90
	}
	if req.Confidence < 0 || req.Confidence > 100 {
		return nil, DecisionRecord{}, fmt.Errorf("%w: confidence %d: want 1..100", ErrInvalidRequest, req.Confidence)
	}
	if req.TTL == 0 {
		req.TTL = 10 * time.Minute
	}
	if req.TTL < 0 || req.TTL > n.cfg.MaxTTL {
		return nil, DecisionRecord{}, fmt.Errorf("%w: ttl %v: want (0, %v]", ErrInvalidRequest, req.TTL, n.cfg.MaxTTL)
	}
	action := stix.Action(req.Action)
	if action == "" {
		action = stix.ActionBlock
	}
	if action != stix.ActionBlock && action != stix.ActionWatch {
		return nil, DecisionRecord{}, fmt.Errorf("%w: action %q: want block or watch", ErrInvalidRequest, action)
	}
	now := n.now()
	s := &stix.Sighting{ID: stix.NewID("indicator"), ReporterID: n.reporter, ReporterName: n.self.String(),
		Target: t, Exposure: n.exposure, Action: action, Confidence: req.Confidence, Count: 1,
		Description: req.Description, Created: now, ValidUntil: now.Add(req.TTL)}
	bundle, err := stix.Encode(*s)
	if err != nil {
		return nil, DecisionRecord{}, fmt.Errorf("enclave: %w", err)
	}
	// Read back what peers will see (millisecond timestamps, derived ids).
	m, err := stix.Decode(bundle, now, stix.DecodeOptions{MaxSize: n.cfg.MaxMessageBytes, MaxSkew: n.cfg.MaxClockSkew, MaxTTL: n.cfg.MaxTTL})
	if err != nil {
		return nil, DecisionRecord{}, fmt.Errorf("enclave: own sighting does not decode: %w", err)
	}
	s = m.(*stix.Sighting)
	if err := n.send(ctx, KindSighting, bundle); err != nil {
		return nil, DecisionRecord{}, err
	}
	rec := n.onSighting(n.self.String(), true, s)
	return s, rec, nil
}

// Revoke retracts one of this node's sightings in the enclave and locally.
func (n *Node) Revoke(ctx context.Context, indicator, reason string) error {
	n.mu.Lock()
	r, ok := n.byID[reportKey(n.self.String(), indicator)]
	n.mu.Unlock()
	if !ok || !r.local {
		return fmt.Errorf("%w: no own sighting %q", ErrInvalidRequest, indicator)
	}
	at := n.now()
	if !at.After(r.s.Created) {
		at = r.s.Created.Add(time.Millisecond)
	}
	bundle, err := stix.EncodeRevocation(r.s.Revoke(at, reason))
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	if err := n.send(ctx, KindRevocation, bundle); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r.revoked = true
	n.decideLocked(targetKey(r.s.Target), r, "revocation")
	return nil
}

func (n *Node) send(ctx context.Context, k Kind, bundle []byte) error {
	env := &Envelope{Version: EnvelopeVersion, Enclave: n.cfg.Name, Kind: k, Cert: n.certBytes, Bundle: bundle}
	data := env.Encode()
	if len(data) > n.cfg.MaxMessageBytes {
		return fmt.Errorf("enclave: message of %d bytes exceeds max_message_bytes %d", len(data), n.cfg.MaxMessageBytes)
	}
	if err := n.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("enclave: publish: %w", err)
	}
	return nil
}
