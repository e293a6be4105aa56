package enclave

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrEnvelope marks a pubsub payload that is not a well-formed envelope.
var ErrEnvelope = errors.New("enclave: bad envelope")

// Kind says what an envelope's bundle holds.
type Kind uint8

// Envelope kinds.
const (
	KindSighting   Kind = 1
	KindRevocation Kind = 2
	KindMembers    Kind = 3 // a member revocation list signed by the enclave key
	// KindSealed holds another kind and its bundle, sealed with the enclave's seal key
	// (see seal.go); only enclaves with enclave.seal_keys send and read it.
	KindSealed Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindSighting:
		return "sighting"
	case KindRevocation:
		return "revocation"
	case KindMembers:
		return "members"
	case KindSealed:
		return "sealed"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// EnvelopeVersion is the only envelope version this build reads and writes.
const EnvelopeVersion = 1

// envelopeMagic starts every envelope, so a stray payload is rejected at the first bytes.
var envelopeMagic = [2]byte{'P', 'E'}

// Envelope is the pubsub payload: which enclave it is for, what kind of STIX bundle it
// carries, the author's membership certificate (empty for allowlisted members; it lets
// members that are not directly connected to the author verify it), and the bundle.
//
// Wire form: 'P' 'E' version kind, then enclave name, certificate and bundle, each as an
// unsigned varint length (minimal encoding) followed by that many bytes; nothing after.
type Envelope struct {
	Version uint8
	Enclave string
	Kind    Kind
	Cert    []byte
	Bundle  []byte
}

const maxEnclaveName = 63

// Encode returns the wire form of e.
func (e *Envelope) Encode() []byte {
	b := make([]byte, 0, 4+3*binary.MaxVarintLen64+len(e.Enclave)+len(e.Cert)+len(e.Bundle))
	b = append(b, envelopeMagic[0], envelopeMagic[1], e.Version, byte(e.Kind))
	for _, f := range [][]byte{[]byte(e.Enclave), e.Cert, e.Bundle} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// DecodeEnvelope parses data strictly: at most maxSize bytes, the right magic and version,
// a known kind, bounded fields, minimal varints, a non-empty bundle and no trailing bytes.
// Errors wrap ErrEnvelope. Cert and Bundle alias data (the validator's message bytes,
// which GossipSub never changes): data must not be modified while they are in use.
func DecodeEnvelope(data []byte, maxSize int) (*Envelope, error) {
	if len(data) > maxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrEnvelope, len(data), maxSize)
	}
	if len(data) < 4 || data[0] != envelopeMagic[0] || data[1] != envelopeMagic[1] {
		return nil, fmt.Errorf("%w: missing magic", ErrEnvelope)
	}
	e := &Envelope{Version: data[2], Kind: Kind(data[3])}
	if e.Version != EnvelopeVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrEnvelope, e.Version, EnvelopeVersion)
	}
	if e.Kind != KindSighting && e.Kind != KindRevocation && e.Kind != KindMembers && e.Kind != KindSealed {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrEnvelope, uint8(e.Kind))
	}
	rest := data[4:]
	limits := []struct {
		name string
		max  int
		dst  *[]byte
	}{
		{"enclave", maxEnclaveName, nil},
		{"certificate", MaxCertificateSize, &e.Cert},
		{"bundle", maxSize, &e.Bundle},
	}
	for _, l := range limits {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return nil, fmt.Errorf("%w: bad %s length", ErrEnvelope, l.name)
		}
		if k != len(binary.AppendUvarint(nil, n)) {
			return nil, fmt.Errorf("%w: non-minimal %s length", ErrEnvelope, l.name)
		}
		rest = rest[k:]
		if n > uint64(l.max) || n > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: %s length %d exceeds limit or input", ErrEnvelope, l.name, n)
		}
		field := rest[:n:n]
		rest = rest[n:]
		if l.dst == nil {
			e.Enclave = string(field)
		} else if n > 0 {
			*l.dst = field // aliases data (capacity cut to the field: an append copies)
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrEnvelope, len(rest))
	}
	if e.Enclave == "" {
		return nil, fmt.Errorf("%w: empty enclave name", ErrEnvelope)
	}
	if len(e.Bundle) == 0 {
		return nil, fmt.Errorf("%w: empty bundle", ErrEnvelope)
	}
	return e, nil
}
