package enclave

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// CertProtocol is the stream protocol on which two connected peers exchange membership
// certificates. The dialer opens it right after connecting, writes its certificate
// (uvarint length + JSON; length 0 for an allowlisted node without one) and reads the
// listener's in the same form. A peer that is neither allowlisted nor proves membership
// within cert_timeout is disconnected and refused by the gater for denyFor.
const CertProtocol = "/proteus/enclave/cert/1.0.0"

// How long a peer that failed admission is refused: long for a certificate that does not
// verify, short when it merely did not complete the exchange (it may have been a transient
// network failure; an outsider that never speaks the protocol keeps being refused).
const (
	denyFor      = 10 * time.Minute
	denyNoAnswer = time.Minute
)

// isMember reports whether p is allowlisted or presented a valid, unexpired certificate,
// and the enclave has not revoked it.
func (n *Node) isMember(p peer.ID) bool {
	if p == n.self {
		return true
	}
	n.memMu.Lock()
	defer n.memMu.Unlock()
	if n.revoked[p] {
		return false
	}
	if n.allow[p] {
		return true
	}
	exp, ok := n.verified[p]
	return ok && n.now().Before(exp)
}

// enclaveSize is N for the quorum: this node plus the members it knows (verified, unexpired
// certificates and the allowlist), or decision.members if larger. A liar cannot shrink it.
func (n *Node) enclaveSize() int {
	now := n.now()
	n.memMu.Lock()
	defer n.memMu.Unlock()
	// Counted without building a set (this runs for every decision): self once, each
	// verified member once, and each allowlisted one not already counted as verified.
	valid := func(p peer.ID) bool {
		exp, ok := n.verified[p]
		return ok && now.Before(exp)
	}
	size := 1
	for p := range n.verified {
		if p != n.self && valid(p) && !n.revoked[p] {
			size++
		}
	}
	for p := range n.allow {
		if p != n.self && !valid(p) && !n.revoked[p] {
			size++
		}
	}
	return max(size, n.cfg.Decision.Members)
}

// wakeMembers wakes every waitMember (memMu held).
func (n *Node) wakeMembersLocked() {
	close(n.memberCh)
	n.memberCh = make(chan struct{})
}

// waitMember blocks until p has proven membership (nil), is refused, or the certificate
// exchange has had its time.
func (n *Node) waitMember(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.CertTimeout+time.Second)
	defer cancel()
	for {
		n.memMu.Lock()
		ch := n.memberCh
		n.memMu.Unlock()
		if n.isMember(p) {
			return nil
		}
		if n.isDenied(p) || n.isRevoked(p) {
			return fmt.Errorf("%w: %s was refused", ErrNotMember, p)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %s has not proven membership", ErrNotMember, p)
		}
	}
}

// memberHost is the host GossipSub is given: a stream to or from a peer waits until the
// peer has proven membership on CertProtocol, so an unverified peer is neither sent
// anything (not even the subscription hello) nor heard (its subscriptions, GRAFTs and
// messages stay unread), and so it is never grafted or flood-published to.
type memberHost struct {
	host.Host
	n *Node
}

func (h memberHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.n.waitMember(ctx, p); err != nil {
		return nil, err
	}
	return h.Host.NewStream(ctx, p, pids...)
}

func (h memberHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, h.n.gated(handler))
}

func (h memberHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, h.n.gated(handler))
}

func (n *Node) gated(handler network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		if err := n.waitMember(n.ctx, s.Conn().RemotePeer()); err != nil {
			_ = s.Reset()
			return
		}
		handler(s)
	}
}

// dropExpiredMembers disconnects members whose certificate expired while connected.
func (n *Node) dropExpiredMembers() {
	now := n.now()
	var gone []peer.ID
	n.memMu.Lock()
	for p, exp := range n.verified {
		if !now.Before(exp) {
			delete(n.verified, p)
			gone = append(gone, p)
		}
	}
	n.memMu.Unlock()
	for _, p := range gone {
		if n.host != nil && n.host.Network().Connectedness(p) == network.Connected {
			n.deny(p, fmt.Errorf("%w: certificate expired", ErrNotMember), denyNoAnswer)
		}
	}
}

func (n *Node) isDenied(p peer.ID) bool {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	until, ok := n.denied[p]
	if ok && n.now().After(until) {
		delete(n.denied, p)
		return false
	}
	return ok
}

// admitCert verifies cert bytes presented by (or on behalf of) p and records p as a member.
func (n *Node) admitCert(p peer.ID, raw []byte) error {
	if n.isRevoked(p) {
		return fmt.Errorf("%w: %s", ErrRevoked, p)
	}
	if n.allow[p] {
		return nil
	}
	if len(raw) == 0 {
		return fmt.Errorf("%w: %s presented no certificate and is not allowlisted", ErrNotMember, p)
	}
	// Every message carries its author's certificate; verify each distinct one once. A
	// certificate names its member, so the bytes are the key (looked up without a copy)
	// and a hit counts only for the peer it was verified for.
	n.memMu.Lock()
	c, seen := n.certCache[string(raw)]
	n.memMu.Unlock()
	if seen && c.member == p && n.now().Before(c.expires) {
		return nil
	}
	cert, err := DecodeCertificate(raw)
	if err != nil {
		return err
	}
	if err := cert.Verify(n.enclave, n.cfg.Name, p, n.now(), n.cfg.MaxClockSkew); err != nil {
		return err
	}
	exp := cert.Expires.Add(n.cfg.MaxClockSkew)
	n.memMu.Lock()
	n.verified[p] = exp
	if len(n.certCache) > 4096 {
		clear(n.certCache)
	}
	n.certCache[string(raw)] = verifiedCert{member: p, expires: exp}
	n.wakeMembersLocked()
	n.memMu.Unlock()
	return nil
}

// verifiedCert is a certificate that verified: for whom, and until when it counts.
type verifiedCert struct {
	member  peer.ID
	expires time.Time
}

// deny disconnects p and refuses it for d.
func (n *Node) deny(p peer.ID, why error, d time.Duration) {
	n.memMu.Lock()
	_, already := n.denied[p]
	n.denied[p] = n.now().Add(d)
	n.wakeMembersLocked()
	n.memMu.Unlock()
	if !already {
		n.stats.denied.Add(1)
		n.log.Warn("refusing peer", "peer", p, "err", why)
		n.publishEvent(EventRejected, p.String(), map[string]any{"reason": why.Error()})
	}
	if n.host != nil {
		_ = n.host.Network().ClosePeer(p)
	}
}

// connected runs for every new connection: the dialer starts the certificate exchange and
// either side drops the peer if it is not a member when cert_timeout has passed.
func (n *Node) connected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	go func() {
		if c.Stat().Direction == network.DirOutbound {
			if err := n.exchange(p); err != nil {
				d := denyNoAnswer
				if errors.Is(err, ErrCertificate) {
					d = denyFor
				}
				n.deny(p, err, d)
				return
			}
		}
		t := time.NewTimer(n.cfg.CertTimeout)
		defer t.Stop()
		select {
		case <-n.ctx.Done():
		case <-t.C:
			if !n.isMember(p) && n.host.Network().Connectedness(p) == network.Connected {
				n.deny(p, fmt.Errorf("%w: no certificate within %v", ErrNotMember, n.cfg.CertTimeout), denyNoAnswer)
			}
		}
	}()
}

// exchange is the dialer's side of CertProtocol.
func (n *Node) exchange(p peer.ID) error {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.CertTimeout)
	defer cancel()
	s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "cert"), p, CertProtocol)
	if err != nil {
		return fmt.Errorf("%w: certificate exchange with %s: %v", ErrNotMember, p, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(n.cfg.CertTimeout))
	if err := writeCert(s, n.certBytes); err != nil {
		s.Reset()
		return fmt.Errorf("enclave: send certificate to %s: %w", p, err)
	}
	raw, err := readCert(bufio.NewReader(s))
	if err != nil {
		s.Reset()
		return fmt.Errorf("%w: read certificate from %s: %v", ErrNotMember, p, err)
	}
	return n.admitCert(p, raw)
}

// handleCert is the listener's side of CertProtocol.
func (n *Node) handleCert(s network.Stream) {
	p := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(n.cfg.CertTimeout))
	raw, err := readCert(bufio.NewReader(s))
	if err == nil {
		err = n.admitCert(p, raw)
	}
	if err != nil {
		s.Reset()
		d := denyNoAnswer
		if errors.Is(err, ErrCertificate) {
			d = denyFor
		}
		n.deny(p, err, d)
		return
	}
	if err := writeCert(s, n.certBytes); err != nil {
		s.Reset()
		return
	}
	_ = s.Close()
}

func writeCert(w io.Writer, raw []byte) error {
	b := binary.AppendUvarint(nil, uint64(len(raw)))
	_, err := w.Write(append(b, raw...))
	return err
}

func readCert(r *bufio.Reader) ([]byte, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if l > MaxCertificateSize {
		return nil, fmt.Errorf("certificate of %d bytes exceeds %d", l, MaxCertificateSize)
	}
	raw := make([]byte, l)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// gater refuses denied peers at every stage. In an allowlist-only enclave (no enclave key)
// it refuses every peer not on the allowlist right after the security handshake; with
// certificates, an unknown peer gets through the handshake only to prove membership on
// CertProtocol (see connected), and its pubsub messages are rejected until it has.
type gater struct{ n *Node }

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.n.admissible(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.n.admissible(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	if g.n.enclave == nil {
		// Allowlist-only enclave: the peer ID is all there is to check.
		return g.n.allow[p] && !g.n.isRevoked(p)
	}
	return g.n.admissible(p)
}

func (n *Node) admissible(p peer.ID) bool                                        { return !n.isDenied(p) && !n.isRevoked(p) }
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
