package mimic

import (
	"hash/maphash"
	"net/http"
	"strings"
)

// isVolatile reports whether k (canonical) is a volatile header: one that differs between
// equivalent servers, or is about the connection rather than the content, so it never takes
// part in the vote. A switch, not a map: it is asked for every header of every response.
func isVolatile(k string) bool {
	switch k {
	case "Date", "Server", "Etag", "Last-Modified", "Content-Length", "Transfer-Encoding",
		"Connection", "Keep-Alive", "Accept-Ranges", "Proxy-Connection", "Proxy-Authenticate",
		"Te", "Trailer", "Upgrade", "Age", "Via", "X-Powered-By", "Expires":
		return true
	}
	return false
}

// isHopByHop reports whether k (canonical) is a hop-by-hop request or response header, which
// is never forwarded.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

type bodyKind uint8

const (
	kindOther bodyKind = iota
	kindJSON
	kindHTML
)

// noiseSet is the immutable set of fields left out of the comparison besides the volatile
// headers: configured headers and JSON pointers, and whatever the learner found. A new set replaces the
// old one atomically.
type noiseSet struct {
	headers  map[string]bool // canonical header keys
	pointers map[string]bool // JSON pointers
}

// ignoresHeader reports whether header k (canonical) is left out of the vote.
func (s *noiseSet) ignoresHeader(k string) bool { return isVolatile(k) || s.headers[k] }

func newNoiseSet(headers, pointers []string) *noiseSet {
	s := &noiseSet{headers: map[string]bool{}, pointers: map[string]bool{}}
	for _, h := range headers {
		s.headers[http.CanonicalHeaderKey(h)] = true
	}
	for _, p := range pointers {
		s.pointers[p] = true
	}
	return s
}

// with returns a copy of s with one more header or pointer.
func (s *noiseSet) with(header, pointer string) *noiseSet {
	n := &noiseSet{headers: make(map[string]bool, len(s.headers)+1), pointers: make(map[string]bool, len(s.pointers)+1)}
	for k := range s.headers {
		n.headers[k] = true
	}
	for k := range s.pointers {
		n.pointers[k] = true
	}
	if header != "" {
		n.headers[header] = true
	}
	if pointer != "" {
		n.pointers[pointer] = true
	}
	return n
}

// ignoredPointer reports whether ptr or one of its ancestors is ignored.
func (s *noiseSet) ignoredPointer(ptr string) bool {
	for {
		if s.pointers[ptr] {
			return true
		}
		i := strings.LastIndexByte(ptr, '/')
		if i <= 0 {
			return false
		}
		ptr = ptr[:i]
	}
}

// mediaType returns the lower-cased media type of a Content-Type value, without parameters,
// which says how a body is normalized (the vote compares the whole value).
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	for i := 0; i < len(ct); i++ {
		if 'A' <= ct[i] && ct[i] <= 'Z' {
			return strings.ToLower(ct)
		}
	}
	return ct
}

func kindOf(h http.Header) bodyKind {
	var ct string
	if vs := h["Content-Type"]; len(vs) > 0 { // keys are canonical: no Get
		ct = vs[0]
	}
	mt := mediaType(ct)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return kindJSON
	case mt == "text/html" || mt == "application/xhtml+xml":
		return kindHTML
	}
	return kindOther
}

// headerSum hashes the compared headers of h independently of their order: each header
// contributes the hash of its name and values, and the contributions are added.
func headerSum(seed maphash.Seed, h http.Header, noise *noiseSet) uint64 {
	var sum uint64
	var mh maphash.Hash
	mh.SetSeed(seed)
	for k, vs := range h {
		if noise.ignoresHeader(k) {
			continue
		}
		mh.Reset()
		mh.WriteString(k)
		for _, v := range vs {
			mh.WriteByte(0)
			mh.WriteString(v)
		}
		sum += mh.Sum64()
	}
	return sum
}

// comparedHeader returns the value of header k as it takes part in the vote: all of it
// (Content-Type with its parameters: a changed charset changes how a browser reads the body).
func comparedHeader(h http.Header, k string) string {
	return strings.Join(h[k], "\x00")
}

// normalizeBody appends the normalized form of body to dst. ok is false when nothing
// changes it (so the raw hash stands).
func normalizeBody(dst []byte, kind bodyKind, body []byte, noise *noiseSet, fold bool) ([]byte, bool) {
	switch {
	case kind == kindJSON:
		out, err := canonicalJSON(dst, body, noise.pointers)
		if err != nil {
			return dst, false
		}
		return out, true
	case kind == kindHTML && fold:
		return foldHTML(dst, body), true
	}
	return dst, false
}
