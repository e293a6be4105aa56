package enclave

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/proteus-defense/proteus/atomicfile"
)

// IdentityFile is the name of the node's libp2p key inside the data directory.
const IdentityFile = "enclave-identity.key"

// LoadIdentity returns the node's Ed25519 libp2p identity from dataDir, creating it (mode
// 0600) on first use. The peer ID derived from it is what `proteus enclave admit` certifies.
func LoadIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("enclave: identity %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
		}
		k, err := crypto.UnmarshalPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("enclave: identity %s: %w", path, err)
		}
		if k.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("enclave: identity %s: want an Ed25519 key, got type %v", path, k.Type())
		}
		return k, nil
	case errors.Is(err, fs.ErrNotExist):
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return nil, fmt.Errorf("enclave: generate identity: %w", err)
		}
		raw, err := crypto.MarshalPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("enclave: %w", err)
		}
		if err := atomicfile.Write(path, raw, 0o600); err != nil {
			return nil, err
		}
		return k, nil
	default:
		return nil, fmt.Errorf("enclave: identity: %w", err)
	}
}

// PeerIDOf returns the peer ID of a private key.
func PeerIDOf(k crypto.PrivKey) (peer.ID, error) {
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("enclave: %w", err)
	}
	return id, nil
}
