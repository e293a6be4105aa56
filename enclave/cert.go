package enclave

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/strictjson"
)

// Errors about membership.
var (
	// ErrCertificate marks a certificate that is malformed, expired, for another enclave or
	// peer, or not signed by the enclave key.
	ErrCertificate = errors.New("enclave: bad membership certificate")
	// ErrNotMember marks a peer that is neither on the allowlist nor holds a valid certificate.
	ErrNotMember = errors.New("enclave: not a member")
)

// MaxCertificateSize bounds an encoded certificate.
const MaxCertificateSize = 2048

// Certificate says that Peer is a member of Enclave until Expires, signed by the enclave key.
type Certificate struct {
	Version   int       `json:"version"`
	Enclave   string    `json:"enclave"`
	Peer      string    `json:"peer"`
	Issued    time.Time `json:"issued"`
	Expires   time.Time `json:"expires"`
	Signature []byte    `json:"signature"`
}

// GenerateEnclaveKey makes a new enclave signing key.
func GenerateEnclaveKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("enclave: generate key: %w", err)
	}
	return priv, nil
}

// MarshalEnclaveKey encodes an enclave private key as PKCS#8 PEM.
func MarshalEnclaveKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteEnclaveKey writes k to path with mode 0600; it refuses to overwrite an existing file.
func WriteEnclaveKey(path string, k ed25519.PrivateKey) error {
	data, err := MarshalEnclaveKey(k)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("enclave: write %s: %w", path, err)
	}
	return f.Close()
}

// ReadEnclaveKey reads a PKCS#8 PEM Ed25519 private key.
func ReadEnclaveKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("enclave: %s: no PRIVATE KEY PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("enclave: %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("enclave: %s: not an Ed25519 key", path)
	}
	return ek, nil
}

// PublicKeyString is the config form of an enclave public key, "ed25519:BASE64".
func PublicKeyString(pub ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey parses "ed25519:BASE64".
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(s, "ed25519:")
	if !ok {
		return nil, fmt.Errorf("enclave: public key must start with ed25519:, got %q", s)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("enclave: public key is not base64 of %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// Admit signs a certificate for member, valid from now for validity.
func Admit(key ed25519.PrivateKey, enclave string, member peer.ID, now time.Time, validity time.Duration) (*Certificate, error) {
	if enclave == "" {
		return nil, fmt.Errorf("enclave: admit: empty enclave name")
	}
	if err := member.Validate(); err != nil {
		return nil, fmt.Errorf("enclave: admit: %w", err)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("enclave: admit: validity must be > 0, got %v", validity)
	}
	c := &Certificate{Version: 1, Enclave: enclave, Peer: member.String(),
		Issued: now.UTC().Truncate(time.Second), Expires: now.Add(validity).UTC().Truncate(time.Second)}
	c.Signature = ed25519.Sign(key, c.signedBytes())
	return c, nil
}

// signedBytes is the canonical byte string the enclave key signs: a domain-separation tag
// and each field length-prefixed, so no two certificates share it.
func (c *Certificate) signedBytes() []byte {
	var b bytes.Buffer
	b.WriteString("proteus/enclave/cert/v1\x00")
	for _, s := range []string{c.Enclave, c.Peer} {
		b.Write(binary.AppendUvarint(nil, uint64(len(s))))
		b.WriteString(s)
	}
	b.Write(binary.BigEndian.AppendUint64(nil, uint64(c.Issued.Unix())))
	b.Write(binary.BigEndian.AppendUint64(nil, uint64(c.Expires.Unix())))
	b.WriteByte(byte(c.Version))
	return b.Bytes()
}

// Verify checks c against the enclave key, the enclave name, the peer it must name and the
// current time (with skew of tolerance on both ends). Errors wrap ErrCertificate.
func (c *Certificate) Verify(pub ed25519.PublicKey, enclave string, p peer.ID, now time.Time, skew time.Duration) error {
	switch {
	case c.Version != 1:
		return fmt.Errorf("%w: version %d", ErrCertificate, c.Version)
	case c.Enclave != enclave:
		return fmt.Errorf("%w: for enclave %q, not %q", ErrCertificate, c.Enclave, enclave)
	case c.Peer != p.String():
		return fmt.Errorf("%w: names peer %s, presented by %s", ErrCertificate, c.Peer, p)
	case now.Add(skew).Before(c.Issued):
		return fmt.Errorf("%w: not valid before %s", ErrCertificate, c.Issued.Format(time.RFC3339))
	case !now.Add(-skew).Before(c.Expires):
		return fmt.Errorf("%w: expired at %s", ErrCertificate, c.Expires.Format(time.RFC3339))
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: no enclave key configured", ErrCertificate)
	case !ed25519.Verify(pub, c.signedBytes(), c.Signature):
		return fmt.Errorf("%w: signature does not verify with the enclave key", ErrCertificate)
	}
	return nil
}

// Marshal encodes c as JSON (the file and wire form).
func (c *Certificate) Marshal() []byte {
	data, _ := json.Marshal(c) // cannot fail: plain fields only
	return data
}

// DecodeCertificate parses the JSON form strictly: bounded size, no unknown fields, one value.
func DecodeCertificate(data []byte) (*Certificate, error) {
	if len(data) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrCertificate, len(data), MaxCertificateSize)
	}
	var c Certificate
	if err := strictjson.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes", ErrCertificate, len(c.Signature))
	}
	return &c, nil
}

// ReadCertificate reads and decodes a certificate file.
func ReadCertificate(path string) (*Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	c, err := DecodeCertificate(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
