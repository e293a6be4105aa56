package mimic

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Every request's path is put in one canonical form before anything looks at it: routes
// match it and executors receive it, so no executor resolves a path differently from the
// route that sent the request there (`/downloads/../secret.txt` is `/secret.txt`, and voted).
// The form: percent-encoding of unreserved characters decoded and of the others in upper
// case, runs of slashes merged, "." and ".." segments removed (RFC 3986 §5.2.4; ".." never
// climbs above the root). An encoded slash, backslash or NUL, a raw backslash or control
// character, or a malformed percent-encoding is refused: servers disagree on what they mean.

// Errors of canonicalPath; each is a 400 to the client.
var (
	errPathEncoding = errors.New("malformed percent-encoding in path")
	errPathSlash    = errors.New("encoded slash or backslash in path")
	errPathNUL      = errors.New("NUL in path")
	errPathByte     = errors.New("backslash or control character in path")
	errPathRelative = errors.New("path does not start with /")
)

// canonicalPath returns the canonical form of an escaped path (the part of a request target
// before "?"). A path already canonical is returned as it is, without allocating.
func canonicalPath(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", errPathRelative
	}
	if pathIsCanonical(p) {
		return p, nil
	}
	// Decode what must be decoded, refuse what must be refused.
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return "", errPathEncoding
			}
			v := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			i += 2
			switch {
			case v == '/' || v == '\\':
				return "", errPathSlash
			case v == 0:
				return "", errPathNUL
			case unreserved(v):
				b = append(b, v)
			default:
				b = append(b, '%', upperHex[v>>4], upperHex[v&15])
			}
		case c == '\\' || c < 0x20 || c == 0x7f:
			return "", errPathByte
		case c >= 0x80 || c == ' ' || c == '"' || c == '<' || c == '>' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}':
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		default:
			b = append(b, c)
		}
	}
	return removeDots(string(b)), nil
}

// pathIsCanonical is the fast check: nothing to decode, merge or remove. One table lookup
// per byte; only a slash looks further.
func pathIsCanonical(p string) bool {
	for i := 0; i < len(p); i++ {
		if !pathSpecial[p[i]] {
			continue
		}
		if p[i] != '/' {
			return false
		}
		rest := p[i+1:]
		switch {
		case rest == "":
		case rest[0] == '/':
			return false
		case rest[0] == '.':
			if len(rest) == 1 || rest[1] == '/' || rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
				return false
			}
		}
	}
	return true
}

// pathSpecial marks the bytes pathIsCanonical looks at: the slash, and every byte
// canonicalPath would decode, encode or refuse.
var pathSpecial = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c < 0x21 || c >= 0x7f
	}
	for _, c := range "/%\\\"<>^`{|}" {
		t[c] = true
	}
	return t
}()

// removeDots merges slashes and removes dot segments from a decoded, absolute path.
func removeDots(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		res += "/"
	}
	return res
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// canonicalizeRequest puts r's path in canonical form in place: r.URL.Path and RawPath for
// routing and for executors reached through an http.RoundTripper, r.RequestURI (origin form)
// for the gateway's own client. The asterisk form of OPTIONS is left alone.
func canonicalizeRequest(r *http.Request) error {
	uri := r.RequestURI
	if uri == "*" && r.Method == http.MethodOptions {
		return nil
	}
	var raw, query string
	if strings.HasPrefix(uri, "/") {
		raw, query, _ = strings.Cut(uri, "?")
	} else {
		raw, query = r.URL.EscapedPath(), r.URL.RawQuery // absolute form
		if raw == "" {
			raw = "/"
		}
	}
	p, err := canonicalPath(raw)
	if err != nil {
		return err
	}
	if p == raw && strings.HasPrefix(uri, "/") {
		return nil
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		return errPathEncoding
	}
	r.URL.Path, r.URL.RawPath = dec, p
	if query != "" || strings.HasSuffix(uri, "?") {
		p += "?" + query
	}
	r.RequestURI = p
	return nil
}
