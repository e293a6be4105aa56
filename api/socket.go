package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// SocketFile is the API's unix socket in the data directory (api.socket: true), mode 0600.
const SocketFile = "api.sock"

// maxSocketPath is the longest path a unix socket address holds (sun_path, with its NUL).
const maxSocketPath = 107

// ListenUnix listens on DATA-DIR/api.sock with mode 0600, replacing a socket a dead agent
// left (the caller holds the data dir's lock); anything else at that path is an error, not
// removed.
func ListenUnix(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, SocketFile)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("api: socket path %s is %d bytes, a unix socket's limit is %d (use a shorter data dir)", path, len(path), maxSocketPath)
	}
	switch fi, err := os.Lstat(path); {
	case err == nil && fi.Mode()&fs.ModeSocket != 0:
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api: socket: %w", err)
		}
	case err == nil:
		return nil, fmt.Errorf("api: socket: %s exists and is not a socket", path)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("api: socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	// The data dir is 0700, so no other user reaches the socket between Listen and Chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: socket: %w", err)
	}
	return ln, nil
}

// RemoveStaleSocket removes DATA-DIR/api.sock when it is a socket (one an agent killed with
// SIGKILL left, which clients would otherwise try first); the caller holds the data dir's lock.
func RemoveStaleSocket(dataDir string) {
	path := filepath.Join(dataDir, SocketFile)
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		_ = os.Remove(path)
	}
}

type peerKey struct{}

// ConnContext is the API server's http.Server.ConnContext: for a connection over the unix
// socket it records the peer's uid (SO_PEERCRED), which an early revert's record names.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, "uid "+strconv.FormatUint(uint64(cred.Uid), 10))
}

// peerOf is the unix socket peer ConnContext recorded, or "".
func peerOf(ctx context.Context) string {
	p, _ := ctx.Value(peerKey{}).(string)
	return p
}
