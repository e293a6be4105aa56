package enclave

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// Sealing keeps sightings confidential against anyone who can read the topic's messages
// without holding the enclave's current seal key: a member the operator has cut out of the
// key (expelled, or left out of a rotation) that still sits in the mesh, a relay, or a copy
// of the traffic. GossipSub's transport encryption is hop by hop, and every mesh peer reads
// every message; a sealed envelope is readable only by key holders, end to end.
//
// The key of epoch E is HKDF-SHA256 (RFC 5869) of the enclave private key's seed, salt
// sealSalt, info "<enclave name>\x00<E>": whoever holds the enclave key derives any epoch's
// key again (`proteus enclave seal-key`), and nothing has to be stored besides it. Members
// get the key file out of band, as they get their certificate; rotating is giving the
// members that stay the key of epoch E+1. The payload is sealed with AES-256-GCM, a fresh
// random 96-bit nonce per message (a key seals far fewer than the 2^32 messages that random
// nonces allow), and additional data binding it to the enclave, the epoch and the author,
// so a sealed payload cannot be replayed under another author or enclave.

// SealKeySize is the length of a seal key.
const SealKeySize = 32

var sealSalt = []byte("proteus/enclave/seal/1")

// ErrSeal marks a sealed payload that does not open, or a seal key file that is not valid.
var ErrSeal = errors.New("enclave: seal")

// SealKey is one epoch's key; its JSON form is the key file a member configures in
// enclave.seal_keys.
type SealKey struct {
	Enclave string `json:"enclave"`
	Epoch   uint32 `json:"epoch"`
	Key     []byte `json:"key"` // SealKeySize bytes (base64 in JSON)
}

// DeriveSealKey derives the seal key of epoch for enclave from the enclave private key.
func DeriveSealKey(k ed25519.PrivateKey, enclave string, epoch uint32) (*SealKey, error) {
	if len(k) != ed25519.PrivateKeySize || enclave == "" || epoch == 0 {
		return nil, fmt.Errorf("%w: derive: need the enclave key, a name and an epoch >= 1", ErrSeal)
	}
	key, err := hkdf.Key(sha256.New, k.Seed(), sealSalt, enclave+"\x00"+strconv.FormatUint(uint64(epoch), 10), SealKeySize)
	if err != nil {
		return nil, fmt.Errorf("%w: derive: %v", ErrSeal, err)
	}
	return &SealKey{Enclave: enclave, Epoch: epoch, Key: key}, nil
}

// Marshal is the key file's content.
func (k *SealKey) Marshal() []byte {
	b, _ := json.MarshalIndent(k, "", "  ")
	return append(b, '\n')
}

// ReadSealKey reads and checks a key file.
func ReadSealKey(path string) (*SealKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enclave: seal key: %w", err)
	}
	var k SealKey
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%w: key file %s: %v", ErrSeal, path, err)
	}
	if k.Enclave == "" || k.Epoch == 0 || len(k.Key) != SealKeySize {
		return nil, fmt.Errorf("%w: key file %s: want enclave, epoch >= 1 and a %d-byte key", ErrSeal, path, SealKeySize)
	}
	return &k, nil
}

// sealer holds a node's seal keys by epoch; the newest seals, every one opens.
type sealer struct {
	enclave string
	newest  uint32
	aeads   map[uint32]cipher.AEAD
}

func newSealer(enclave string, keys []*SealKey) (*sealer, error) {
	s := &sealer{enclave: enclave, aeads: map[uint32]cipher.AEAD{}}
	for _, k := range keys {
		if k.Enclave != enclave {
			return nil, fmt.Errorf("%w: key of epoch %d is for enclave %q, not %q", ErrSeal, k.Epoch, k.Enclave, enclave)
		}
		if _, dup := s.aeads[k.Epoch]; dup {
			return nil, fmt.Errorf("%w: two keys for epoch %d", ErrSeal, k.Epoch)
		}
		block, err := aes.NewCipher(k.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSeal, err)
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSeal, err)
		}
		s.aeads[k.Epoch] = a
		s.newest = max(s.newest, k.Epoch)
	}
	return s, nil
}

// additional data: what a sealed payload is bound to.
func (s *sealer) ad(epoch uint32, author []byte) []byte {
	b := append([]byte(nil), sealSalt...)
	b = append(b, 0)
	b = append(b, s.enclave...)
	b = binary.BigEndian.AppendUint32(append(b, 0), epoch)
	return append(b, author...)
}

// seal returns the sealed form of an envelope's kind and bundle, by author (its peer ID
// bytes): epoch (4 bytes, big-endian) ‖ nonce (12) ‖ AES-GCM(kind ‖ bundle).
func (s *sealer) seal(author []byte, k Kind, bundle []byte) ([]byte, error) {
	a := s.aeads[s.newest]
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+a.NonceSize()+1+len(bundle)+a.Overhead()), s.newest)
	nonce := out[4 : 4+a.NonceSize()]
	out = out[:4+a.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("%w: nonce: %v", ErrSeal, err)
	}
	plain := append([]byte{byte(k)}, bundle...)
	return a.Seal(out, nonce, plain, s.ad(s.newest, author)), nil
}

// errUnknownEpoch marks a payload sealed with a key this node does not hold (a newer epoch
// it was not given, or an old one it dropped): not the author's fault, so not invalid.
var errUnknownEpoch = fmt.Errorf("%w: sealed with a key of an epoch this node does not hold", ErrSeal)

// open reverses seal; errors wrap ErrSeal.
func (s *sealer) open(author, sealed []byte) (Kind, []byte, error) {
	if len(sealed) < 4 {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrSeal, len(sealed))
	}
	epoch := binary.BigEndian.Uint32(sealed)
	a, ok := s.aeads[epoch]
	if !ok {
		return 0, nil, fmt.Errorf("%w (%d)", errUnknownEpoch, epoch)
	}
	rest := sealed[4:]
	if len(rest) < a.NonceSize()+a.Overhead()+1 {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrSeal, len(sealed))
	}
	plain, err := a.Open(nil, rest[:a.NonceSize()], rest[a.NonceSize():], s.ad(epoch, author))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: does not open with the key of epoch %d", ErrSeal, epoch)
	}
	k := Kind(plain[0])
	if k != KindSighting && k != KindRevocation && k != KindMembers {
		return 0, nil, fmt.Errorf("%w: sealed kind %d", ErrSeal, plain[0])
	}
	if len(plain) == 1 {
		return 0, nil, fmt.Errorf("%w: empty sealed bundle", ErrSeal)
	}
	return k, plain[1:], nil
}
