package enclave

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/strictjson"
)

// MembersFile holds the newest member revocation list this node has verified.
const MembersFile = "enclave-revoked.json"

// MaxRevokedMembers bounds one member revocation list.
const MaxRevokedMembers = 1000

// ErrRevoked marks a member whose membership the enclave key revoked.
var ErrRevoked = errors.New("enclave: member revoked")

// MemberRevocations is the enclave's member revocation list: the peers whose membership
// ended early, signed by the enclave key. Each list replaces the previous one (it holds
// every revoked peer) and carries a higher Serial; a node keeps the highest it verified,
// persists it and publishes it on the topic, so members that were offline learn it from
// any peer.
type MemberRevocations struct {
	Version   int       `json:"version"`
	Enclave   string    `json:"enclave"`
	Serial    uint64    `json:"serial"`
	Issued    time.Time `json:"issued"`
	Peers     []string  `json:"peers"`
	Signature []byte    `json:"signature"`
}

// RevokeMembers signs a new list: prev's peers (prev may be nil) plus add, Serial one
// higher.
func RevokeMembers(key ed25519.PrivateKey, enclave string, prev *MemberRevocations, add []peer.ID, now time.Time) (*MemberRevocations, error) {
	if enclave == "" {
		return nil, errors.New("enclave: revoke members: empty enclave name")
	}
	l := &MemberRevocations{Version: 1, Enclave: enclave, Serial: 1, Issued: now.UTC().Truncate(time.Second)}
	set := map[string]bool{}
	if prev != nil {
		if prev.Enclave != enclave {
			return nil, fmt.Errorf("enclave: revoke members: list is for enclave %q, not %q", prev.Enclave, enclave)
		}
		l.Serial = prev.Serial + 1
		for _, p := range prev.Peers {
			set[p] = true
		}
	}
	for _, p := range add {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("enclave: revoke members: %w", err)
		}
		set[p.String()] = true
	}
	for p := range set {
		l.Peers = append(l.Peers, p)
	}
	sort.Strings(l.Peers)
	if len(l.Peers) > MaxRevokedMembers {
		return nil, fmt.Errorf("enclave: revoke members: %d peers, limit %d", len(l.Peers), MaxRevokedMembers)
	}
	l.Signature = ed25519.Sign(key, l.signedBytes())
	return l, nil
}

func (l *MemberRevocations) signedBytes() []byte {
	var b bytes.Buffer
	b.WriteString("proteus/enclave/revoked-members/v1\x00")
	b.Write(binary.AppendUvarint(nil, uint64(len(l.Enclave))))
	b.WriteString(l.Enclave)
	b.Write(binary.BigEndian.AppendUint64(nil, l.Serial))
	b.Write(binary.BigEndian.AppendUint64(nil, uint64(l.Issued.Unix())))
	b.Write(binary.AppendUvarint(nil, uint64(len(l.Peers))))
	for _, p := range l.Peers {
		b.Write(binary.AppendUvarint(nil, uint64(len(p))))
		b.WriteString(p)
	}
	b.WriteByte(byte(l.Version))
	return b.Bytes()
}

// Verify checks the list's signature with the enclave key and its enclave name. Errors
// wrap ErrCertificate.
func (l *MemberRevocations) Verify(pub ed25519.PublicKey, enclave string) error {
	switch {
	case l.Version != 1:
		return fmt.Errorf("%w: revocation list version %d", ErrCertificate, l.Version)
	case l.Enclave != enclave:
		return fmt.Errorf("%w: revocation list for enclave %q, not %q", ErrCertificate, l.Enclave, enclave)
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: no enclave key configured", ErrCertificate)
	case !ed25519.Verify(pub, l.signedBytes(), l.Signature):
		return fmt.Errorf("%w: revocation list signature does not verify with the enclave key", ErrCertificate)
	}
	return nil
}

// Marshal encodes the list as JSON (file and wire form).
func (l *MemberRevocations) Marshal() []byte {
	data, _ := json.Marshal(l)
	return data
}

// DecodeMemberRevocations parses a list strictly and checks its peer IDs.
func DecodeMemberRevocations(data []byte) (*MemberRevocations, error) {
	var l MemberRevocations
	if err := strictjson.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%w: revocation list: %v", ErrCertificate, err)
	}
	if len(l.Peers) > MaxRevokedMembers || len(l.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: revocation list: %d peers, %d-byte signature", ErrCertificate, len(l.Peers), len(l.Signature))
	}
	for _, p := range l.Peers {
		if _, err := peer.Decode(p); err != nil {
			return nil, fmt.Errorf("%w: revocation list: peer %q: %v", ErrCertificate, p, err)
		}
	}
	return &l, nil
}

// ReadMemberRevocations reads a list file (as written by `proteus enclave expel`).
func ReadMemberRevocations(path string) (*MemberRevocations, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	l, err := DecodeMemberRevocations(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// isRevoked reports whether the enclave revoked p.
func (n *Node) isRevoked(p peer.ID) bool {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	return n.revoked[p]
}

// loadMembers restores the persisted list (a missing file is none).
func (n *Node) loadMembers() error {
	l, err := ReadMemberRevocations(filepath.Join(n.dataDir, MembersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := l.Verify(n.enclave, n.cfg.Name); err != nil {
		return fmt.Errorf("enclave: %s: %w", MembersFile, err)
	}
	n.applyMemberRevocations(l, false)
	return nil
}

// validateMembers checks a member revocation list arriving on the topic: signed by the
// enclave key and newer than the one held, or it goes no further.
func (n *Node) validateMembers(author peer.ID, env *Envelope, msg *pubsub.Message) pubsub.ValidationResult {
	l, err := DecodeMemberRevocations(env.Bundle)
	if err == nil {
		n.memMu.Lock()
		// Its own list (publishing or re-publishing it) passes; a held serial from a peer
		// goes no further.
		stale := n.members != nil && (l.Serial < n.members.Serial || l.Serial == n.members.Serial && author != n.self)
		n.memMu.Unlock()
		if stale {
			n.stats.ignored.Add(1)
			return pubsub.ValidationIgnore
		}
		err = l.Verify(n.enclave, n.cfg.Name)
	}
	if err != nil {
		n.stats.rejected.Add(1)
		if author != n.self && n.isMember(author) {
			n.trust.Invalid(n.peerName(author))
		}
		n.log.Warn("invalid member revocation list", "author", author, "err", err)
		return pubsub.ValidationReject
	}
	n.stats.accepted.Add(1)
	msg.ValidatorData = l
	return pubsub.ValidationAccept
}

// applyMemberRevocations adopts a verified list newer than the held one: it is persisted,
// and every revoked peer is disconnected and refused from then on.
func (n *Node) applyMemberRevocations(l *MemberRevocations, persist bool) bool {
	n.memMu.Lock()
	if n.members != nil && l.Serial <= n.members.Serial {
		n.memMu.Unlock()
		return false
	}
	n.members = l
	var cut []peer.ID
	for _, s := range l.Peers {
		p, err := peer.Decode(s)
		if err != nil {
			continue
		}
		if !n.revoked[p] {
			cut = append(cut, p)
		}
		n.revoked[p] = true
		delete(n.verified, p)
	}
	clear(n.certCache)
	n.memMu.Unlock()
	if persist {
		if err := atomicfile.Write(filepath.Join(n.dataDir, MembersFile), append(l.Marshal(), '\n'), 0o600); err != nil {
			n.log.Error("persist member revocation list", "err", err)
		}
	}
	n.log.Info("member revocation list", "serial", l.Serial, "revoked", len(l.Peers))
	for _, p := range cut {
		if p != n.self && n.host != nil {
			n.deny(p, fmt.Errorf("%w: serial %d", ErrRevoked, l.Serial), denyFor)
		}
	}
	return true
}

// RevokeMembers adopts l (verified against the enclave key), persists it and publishes it
// on the topic. It reports whether l was newer than the list held.
func (n *Node) RevokeMembers(ctx context.Context, l *MemberRevocations) (bool, error) {
	if err := l.Verify(n.enclave, n.cfg.Name); err != nil {
		return false, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	n.memMu.Lock()
	stale := n.members != nil && l.Serial <= n.members.Serial
	n.memMu.Unlock()
	if stale {
		return false, nil
	}
	if err := n.send(ctx, KindMembers, l.Marshal()); err != nil {
		return false, err
	}
	n.memMu.Lock()
	n.membersSent = n.now()
	n.memMu.Unlock()
	return n.applyMemberRevocations(l, true), nil
}

// MemberRevocationList is the newest verified list this node holds (nil: none).
func (n *Node) MemberRevocationList() *MemberRevocations {
	n.memMu.Lock()
	defer n.memMu.Unlock()
	return n.members
}

// republishEvery is how often a node re-publishes the list it holds, so members that were
// offline when it was issued learn it from any peer.
const republishEvery = time.Minute

func (n *Node) republishMembers() {
	n.memMu.Lock()
	l := n.members
	due := l != nil && n.now().Sub(n.membersSent) >= republishEvery
	if due {
		n.membersSent = n.now()
	}
	n.memMu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	// Never wait for the budget here (the sweep would stall): when own messages use it
	// all, the list goes out on a later sweep.
	if err := n.sendWithin(ctx, KindMembers, l.Marshal(), 0); err != nil {
		n.memMu.Lock()
		n.membersSent = time.Time{}
		n.memMu.Unlock()
		n.log.Debug("republish member revocation list", "err", err)
	}
}
