package enclave

import (
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/stix"
)

// validate is the topic validator. It runs before a message is delivered or forwarded:
//
//   - from a non-member (author or forwarder)        → reject
//   - a bad envelope, wrong enclave, bad STIX bundle,
//     a report attributed to another peer, a reserved
//     target, a new version of an indicator that
//     names another target                            → reject, and a sharp trust penalty
//     for the (signature-authenticated) author
//   - stale (expired, clock skew) or a replay, or an
//     author holding limits.reports keys              → ignore
//   - an author over its rate budget (limits.rate)   → ignore, and an invalid-message
//     penalty at most once a second, so a flooder is soon graylisted; three seconds of it
//     in a row, or five bursts over within a second, and a directly connected flooder is
//     disconnected and refused for a minute (most of a flood never gets here: see inspect)
//   - otherwise                                       → accept; the decoded message rides
//     along in ValidatorData
func (n *Node) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	author := msg.GetFrom()
	if !n.isMember(from) {
		n.log.Debug("message via non-member", "via", from, "author", author)
		n.stats.nonMember.Add(1)
		return pubsub.ValidationReject
	}
	name := n.peerName(author)
	// Validations run in turn per author (fairGate): another member's backlog delays this
	// message by at most the validations already running. GossipSub has checked the
	// message's signature, so author is who sent it. Own messages are validated where they
	// are published and never wait.
	if author != n.self && n.gate != nil {
		if !n.gate.enter(ctx, name) {
			n.stats.limited.Add(1)
			return pubsub.ValidationIgnore
		}
		defer n.gate.leave(name)
	}
	env, err := DecodeEnvelope(msg.GetData(), n.cfg.MaxMessageBytes)
	if err == nil && env.Enclave != n.cfg.Name {
		err = fmt.Errorf("%w: for enclave %q", ErrEnvelope, env.Enclave)
	}
	if err == nil {
		if ignore := n.unseal(author, env); ignore != nil {
			if n.admitCert(author, env.Cert) != nil {
				n.stats.nonMember.Add(1)
				return pubsub.ValidationReject
			}
			n.stats.unreadable.Add(1)
			n.log.Debug("unreadable message", "author", author, "via", from, "err", ignore)
			return pubsub.ValidationIgnore
		}
		if env.Kind == KindSealed { // opened, but wrong
			err = fmt.Errorf("%w: %s", ErrEnvelope, "sealed payload does not open")
		}
	}
	if err == nil && env.Kind == KindMembers {
		return n.validateMembers(author, env, msg)
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
	// The author is a verified member from here on. One already over its budget is ignored
	// before its bundle is decoded (most of a flood is dropped earlier, in inspect; what
	// passed inspect before the budget ran out would otherwise cost a decode each).
	if author != n.self && n.budget.spent(name, n.now()) {
		n.stats.limited.Add(1)
		n.budget.overrun(name)
		n.overBudget(author, from)
		return pubsub.ValidationIgnore
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
		if s, ok := m.(*stix.Sighting); ok && err == nil && author != n.self {
			err = checkReserved(s.Target)
		}
		if err == nil {
			rerr := n.replay.AdmitOwned(name, targetKey(messageTarget(m)), m.ObjectID(), m.Version(), m.Expiry(), now)
			switch {
			case errors.Is(rerr, stix.ErrRebound):
				err = fmt.Errorf("%w: %v", ErrImmutable, rerr)
			case rerr != nil:
				n.stats.ignored.Add(1)
				return pubsub.ValidationIgnore
			default:
				n.dirtyReplay(stix.ReplayEntry{Owner: name, ID: m.ObjectID(), Binding: targetKey(messageTarget(m)),
					Modified: m.Version(), Expiry: m.Expiry()})
			}
		}
	}
	if err != nil {
		n.stats.rejected.Add(1)
		if author != n.self {
			score := n.trust.Invalid(name)
			n.log.Warn("invalid message", "author", author, "via", from, "err", err, "trust", score)
			n.publishEvent(EventRejected, author.String(), map[string]any{"reason": err.Error(), "trust": score})
		}
		return pubsub.ValidationReject
	}
	// A fresh, valid message: now it costs its author a token (its budget is bounded state,
	// and neither a replay nor a stale copy, which anyone holding one may resend, spends it).
	if author != n.self && !n.budget.allow(name, n.now()) {
		n.stats.limited.Add(1)
		n.overBudget(author, from)
		return pubsub.ValidationIgnore
	}
	msg.ValidatorData = m
	n.stats.accepted.Add(1)
	return pubsub.ValidationAccept
}

// overBudget accounts for a message of author (received from from) over author's budget: a
// trust penalty at most once per second, and a directly connected author that floods is
// disconnected and refused for a while.
func (n *Node) overBudget(author, from peer.ID) {
	name := n.peerName(author)
	penalty, cut := n.budget.penalize(name, n.now())
	if penalty {
		score := n.trust.Invalid(name)
		n.log.Warn("member over its message budget", "author", author, "trust", score)
	}
	if cut && from == author && !n.isDenied(author) {
		go n.deny(author, fmt.Errorf("%w: flooding past its message budget", ErrNotMember), denyNoAnswer)
	}
}

// inspect sees every RPC GossipSub reads from a member before anything in it is queued for
// validation, and drops the messages of an author who is over its budget (limits.rate and
// limits.burst). Without it a flood waits in the validation queue, ahead of every honest
// message, and each flood message costs a signature check before the topic validator can
// ignore it; and since every forwarder accepts (and relays) a different first burst of the
// flooder's messages, every member in the enclave, not only the flooder's neighbours, would
// verify several bursts. With it, a flood costs a map lookup per message past the first burst.
//
// Two budgets are read, and neither can be spent by a forger:
//   - the author's own budget, which only the topic validator charges, for fresh messages
//     with a valid signature (so only the author's real messages spend it); inspect only reads it;
//   - a budget per forwarder (authenticated by the connection) and claimed author, charged
//     here, which bounds what one forwarder can queue before the validator has caught up; a
//     member that forges messages in another's name spends only its own allowance for that
//     author. A message in the name of a peer that is not (yet) a verified member passes to
//     validation, which checks its signature and certificate. An honest forwarder relays each
//     message once, so it never exceeds an honest author's rate.
func (n *Node) inspect(from peer.ID, rpc *pubsub.RPC) error {
	msgs := rpc.GetPublish()
	if len(msgs) == 0 {
		return nil
	}
	now := n.now()
	kept := msgs[:0]
	for _, m := range msgs {
		author := peer.ID(m.GetFrom())
		if author == n.self || (!n.budget.spent(n.peerName(author), now) &&
			n.relayBudget.allowKnown(string(from)+"\x00"+string(author), now, func() bool { return n.isMember(author) })) {
			kept = append(kept, m)
			continue
		}
		n.stats.limited.Add(1)
		if author == from {
			// The connection vouches that the author itself sent this: it counts toward
			// cutting a flooder off (budget.penalize).
			n.budget.overrun(n.peerName(author))
			n.overBudget(author, from)
		}
	}
	clear(msgs[len(kept):])
	rpc.Publish = kept
	return nil
}

// unseal replaces a sealed envelope's kind and bundle by what it holds. It returns a reason
// to ignore the message (no fault of its author: a payload this node cannot read by its
// configuration) or nil; a sealed payload that does not open with a key this node holds is
// left sealed, for the caller to reject (only the author, whose signature the message bears,
// could have sealed it). With seal keys, unsealed payloads are ignored; without, sealed ones.
func (n *Node) unseal(author peer.ID, env *Envelope) error {
	switch {
	case n.sealer == nil && env.Kind == KindSealed:
		return errors.New("sealed, and this node holds no seal key")
	case n.sealer == nil:
		return nil
	case env.Kind != KindSealed:
		return fmt.Errorf("unsealed %v in a sealed enclave", env.Kind)
	}
	k, bundle, err := n.sealer.open([]byte(author), env.Bundle)
	if errors.Is(err, errUnknownEpoch) {
		return err
	}
	if err == nil {
		env.Kind, env.Bundle = k, bundle
	}
	return nil
}

// ErrImmutable marks a new version of an indicator that changes what it is about.
var ErrImmutable = errors.New("enclave: indicator target changed")

func messageTarget(m stix.Message) stix.Target {
	switch v := m.(type) {
	case *stix.Sighting:
		return v.Target
	case *stix.Revocation:
		return v.Target
	}
	return stix.Target{}
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
	if name != n.peerName(author) || id != n.peerReporter(author) {
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
		switch v := msg.ValidatorData.(type) {
		case *stix.Sighting:
			n.onSighting(n.peerName(from), n.groupOf(from), false, v)
		case *stix.Revocation:
			n.onRevocation(n.peerName(from), v)
		case *MemberRevocations:
			n.applyMemberRevocations(v, true)
		}
	}
}

// sweep settles reports whose window has passed, prunes expired ones, drops members whose
// certificate expired while connected, and writes the state journal.
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
			n.dropExpiredMembers()
			n.cutFlooders()
			_ = n.saveState(false)
			n.republishMembers()
		}
	}
}

// cutFlooders disconnects (and refuses for a while) a directly connected member that went
// over its message budget recently and that GossipSub now graylists: its RPCs would be
// dropped unread anyway, but reading them still costs this node.
func (n *Node) cutFlooders() {
	for _, name := range n.budget.struck(n.now()) {
		p, err := peer.Decode(name)
		if err != nil || n.host == nil || n.host.Network().Connectedness(p) != network.Connected {
			continue
		}
		if s, ok := n.Score(p); ok && s < n.cfg.PeerScore.Graylist {
			n.deny(p, fmt.Errorf("%w: graylisted for flooding", ErrNotMember), denyNoAnswer)
		}
	}
}
