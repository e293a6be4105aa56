package mimic

import (
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
)

// parseHead is the fast path for reading an executor's response head: it parses a complete
// header section that is already buffered (head, ending with the blank line) when it is in
// the plain form executors send nearly always (HTTP/1.1, a final status, one valid
// Content-Length or none on a body-less status, no Transfer-Encoding, no obsolete line
// folding, only token names and visible values). Anything else returns ok false, and the
// caller hands the unread bytes to http.ReadResponse, which applies every rule of RFC 9112.
// The header names and values are substrings of one string copied from head (one
// allocation for the whole section; only non-canonical names are copied again).
//
// h must be empty; vals is scratch space for the value slices (h[k] are one-element slices
// of it), returned grown for reuse by the next response.
func parseHead(head []byte, forHead bool, h http.Header, vals []string) (status int, length int64, closeAfter, ok bool, _ []string) {
	line, rest, found := bytes.Cut(head, crlf)
	if !found || len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, false, false, vals
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false, false, vals
		}
		status = status*10 + int(c-'0')
	}
	for _, c := range line[12:] {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return 0, 0, false, false, vals
		}
	}
	if status < 200 || status > 599 {
		return 0, 0, false, false, vals // interim responses and odd codes: the slow path
	}
	all := string(rest) // values alias this copy
	length = -1
	for off := 0; ; {
		end := indexCRLF(all, off)
		if end < 0 {
			return 0, 0, false, false, vals
		}
		if end == off {
			break // blank line
		}
		ln := all[off:end]
		off = end + 2
		name, v, ok := splitHeaderField(ln)
		if !ok {
			return 0, 0, false, false, vals // includes space before the colon and line folding
		}
		k := canonicalName(name)
		switch k {
		case "Transfer-Encoding":
			return 0, 0, false, false, vals
		case "Content-Length":
			if length >= 0 {
				return 0, 0, false, false, vals // repeated: let net/http judge
			}
			if length = parseLength(v); length < 0 {
				return 0, 0, false, false, vals
			}
		case "Connection":
			if httpTokenContains(v, "close") {
				closeAfter = true
			}
		}
		if prior, dup := h[k]; dup {
			h[k] = append(prior[:len(prior):len(prior)], v)
		} else {
			vals = append(vals, v)
			h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	if closeAfter {
		delete(h, "Connection") // as net/http does
	}
	noBody := forHead || status == http.StatusNoContent || status == http.StatusNotModified
	if noBody {
		length = 0
	} else if length < 0 {
		return 0, 0, false, false, vals // read until close: the slow path
	}
	return status, length, closeAfter, true, vals
}

var crlf = []byte("\r\n")

// indexCRLF returns the index of the CRLF that ends the line starting at from, or -1 when the
// line has no end or ends in a bare LF. A bare CR inside the line is left to the callers, which
// refuse control characters in every part of a line.
func indexCRLF(s string, from int) int {
	i := strings.IndexByte(s[from:], '\n')
	if i <= 0 || s[from+i-1] != '\r' {
		return -1
	}
	return from + i - 1
}

func parseLength(v string) int64 {
	if v == "" || len(v) > 15 {
		return -1
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return -1
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n
}

// httpTokenContains reports whether the comma-separated list v names tok (ASCII case-insensitive).
func httpTokenContains(v, tok string) bool {
	for v != "" {
		var f string
		if i := strings.IndexByte(v, ','); i >= 0 {
			f, v = v[:i], v[i+1:]
		} else {
			f, v = v, ""
		}
		for len(f) > 0 && (f[0] == ' ' || f[0] == '\t') {
			f = f[1:]
		}
		for len(f) > 0 && (f[len(f)-1] == ' ' || f[len(f)-1] == '\t') {
			f = f[:len(f)-1]
		}
		if len(f) == len(tok) && asciiEqualFold(f, tok) {
			return true
		}
	}
	return false
}

func asciiEqualFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool { return tokenTable[c] }

// tokenTable marks the bytes of an RFC 9110 token; fieldValueTable the bytes allowed in a
// field value (visible characters, space, tab and obs-text, no other control character).
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

var fieldValueTable = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 0x20 && c != 0x7f || c == '\t'
	}
	return t
}()

// canonicalName is textproto.CanonicalMIMEHeaderKey, with the names executors send on
// nearly every response answered without a second pass over their bytes.
func canonicalName(b string) string {
	switch b {
	case "Content-Type", "Content-Length", "Date", "Server", "Last-Modified", "Connection",
		"Accept-Ranges", "Cache-Control", "Keep-Alive", "Vary", "Expires", "Host", "Accept",
		"User-Agent", "Accept-Encoding", "Accept-Language", "Etag":
		return b
	case "ETag":
		return "Etag"
	}
	return textproto.CanonicalMIMEHeaderKey(b)
}

// splitHeaderField splits one header line "Name: value" into its name and its value without
// surrounding blanks. ok is false for anything the lean parsers leave to net/http: no name, a
// byte outside the token set before the colon (space before the colon, line folding), or a
// control character in the value.
func splitHeaderField(ln string) (name, value string, ok bool) {
	colon := -1
	for i := 0; i < len(ln); i++ {
		c := ln[i]
		if c == ':' {
			colon = i
			break
		}
		if !isTokenByte(c) {
			return "", "", false
		}
	}
	if colon <= 0 {
		return "", "", false
	}
	v := ln[colon+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		if !fieldValueTable[v[i]] {
			return "", "", false
		}
	}
	return ln[:colon], v, true
}
