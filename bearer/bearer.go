// Package bearer owns the bearer tokens of Proteus's local control APIs (the agent's API in
// api and the enclave node's control API in enclave): making a token, checking the
// Authorization header of a request in constant time, and setting it on a client request.
// Where a token is kept (which file in the data dir) is each API's business.
//
// It imports the standard library only; it must not import any Proteus package.
package bearer

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// NewToken returns a fresh random 256-bit token, hex-encoded.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Valid reports whether r carries "Authorization: Bearer TOKEN" with exactly token,
// comparing in constant time.
func Valid(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// Set adds "Authorization: Bearer TOKEN" to req.
func Set(req *http.Request, token string) { req.Header.Set("Authorization", "Bearer "+token) }
