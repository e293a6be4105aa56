package enclave

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/stix"
)

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

// Publish records a local sighting (this agent's own evidence: acted on locally at once, and
// it confirms the peer reports on the same target that came before it) and shares it with
// the enclave. It returns the sighting and its decision here.
func (n *Node) Publish(ctx context.Context, req PublishRequest) (*stix.Sighting, DecisionRecord, error) {
	t, err := ParseTarget(req.Target)
	if err != nil {
		return nil, DecisionRecord{}, err
	}
	if req.Confidence == 0 {
		req.Confidence = config.DefaultReportConfidence
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
	rec := n.onSighting(n.self.String(), "", true, s)
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
	n.dirtyReportLocked(r)
	n.decideLocked(targetKey(r.s.Target), r, "revocation")
	return nil
}

// ErrOwnBudget marks an own message refused because this node's queue of paced messages
// already holds more than maxPaceWait of its budget (limits.rate).
var ErrOwnBudget = errors.New("enclave: own message budget exhausted")

// send publishes one of this node's messages on the topic, paced within the budget its
// peers allow it (see pacer); it waits at most until ctx ends and maxWait.
func (n *Node) send(ctx context.Context, k Kind, bundle []byte) error {
	return n.sendWithin(ctx, k, bundle, maxPaceWait)
}

func (n *Node) sendWithin(ctx context.Context, k Kind, bundle []byte, maxWait time.Duration) error {
	if n.pace != nil {
		wait, ok := n.pace.reserve(n.now(), maxWait)
		if !ok {
			return fmt.Errorf("%w: more than %v of messages queued at limits.rate %v/s", ErrOwnBudget, maxWait, n.cfg.Limits.Rate)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				n.pace.refund()
				return fmt.Errorf("enclave: publish: waiting for this node's own budget: %w", ctx.Err())
			}
		}
	}
	if n.sealer != nil {
		sealed, err := n.sealer.seal([]byte(n.self), k, bundle)
		if err != nil {
			return err
		}
		k, bundle = KindSealed, sealed
	}
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
