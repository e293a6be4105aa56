package mimic

import (
	"bytes"
	"hash/maphash"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// response is one executor's answer to one request (or its failure).
type response struct {
	backend Backend
	status  int
	header  http.Header
	body    []byte      // aliases bb while in memory; nil once spooled
	bb      *bodyBuffer // pooled; returned by release unless shared
	shared  bool        // bb is another response's with the same body (see ballot.add)
	err     error       // transport failure, timeout, oversized body: an availability dissent
	hmap    http.Header // reused header map, filled by the h1 client's fast path
	vals    []string    // reused header value slices

	kind       bodyKind
	statusOnly bool   // a boilerplate response (redirect, error page) compared by status and location only
	location   string // a boilerplate response's Location, made relative (see relativeLocation)
	hdrSum     uint64
	rawSum     uint64
	bodyKey    uint64 // rawSum, or the hash of the normalized body once raw bodies disagree
	normDone   bool
}

// voteKey is what two equivalent responses share.
type voteKey struct {
	status int
	hdr    uint64
	body   uint64
}

func (r *response) key() voteKey { return voteKey{r.status, r.hdrSum, r.bodyKey} }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer { b := bufPool.Get().(*bytes.Buffer); b.Reset(); return b }

func putBuf(b *bytes.Buffer) {
	if b == nil || b.Cap() > 1<<20 { // let big buffers go so the pool does not pin memory
		return
	}
	bufPool.Put(b)
}

// respPool recycles responses with their header maps and value scratch space: once the
// call is finished nothing refers to them (dissent events and the learner copy what they keep).
var respPool = sync.Pool{New: func() any { return new(response) }}

func (r *response) release() {
	if !r.shared {
		r.bb.release()
	}
	hmap, vals := r.hmap, r.vals
	big := len(hmap) > 64 || cap(vals) > 256
	clear(hmap)
	clear(vals[:cap(vals)])
	if big {
		hmap, vals = nil, nil // an unusual response: do not pin its size
	}
	*r = response{hmap: hmap, vals: vals[:0]}
	respPool.Put(r)
}

// ballot collects the responses to one request and finds the largest group of equivalent ones.
// Raw bodies are hashed as they arrive; bodies are normalized (canonical JSON, folded HTML)
// only once two raw bodies differ, and then once per distinct raw body.
type ballot struct {
	seed    maphash.Seed
	noise   *noiseSet
	fold    bool
	errBody bool // compare the headers and bodies of 4xx and 5xx responses too
	// host and path of the request, against which redirect targets are made relative
	host, path string
	resps      []*response // successful responses in arrival order
	failed     []*response
	diverse    bool // two raw bodies differ: compare normalized bodies
	scratch    []byte
}

func (b *ballot) reset(seed maphash.Seed, noise *noiseSet, fold, errBody bool, host, path string) {
	b.seed, b.noise, b.fold, b.errBody, b.host, b.path = seed, noise, fold, errBody, host, path
	b.resps, b.failed, b.diverse = b.resps[:0], b.failed[:0], false
}

// add records r and returns the size of r's group.
func (b *ballot) add(r *response) int {
	if r.err != nil {
		b.failed = append(b.failed, r)
		return 0
	}
	if boilerplate(r.status, b.errBody) {
		// Redirects and error pages are each server's own boilerplate: only the status and
		// where a redirect points take part (see answer.go).
		r.statusOnly, r.normDone = true, true
		r.rawSum, r.bodyKey, r.hdrSum, r.location = 0, 0, 0, ""
		if r.status < 400 {
			if vs := r.header["Location"]; len(vs) > 0 {
				r.location = relativeLocation(strings.Join(vs, ","), b.host, r.backend.Addr, b.path)
				r.hdrSum = maphash.String(b.seed, r.location) | 1
			}
		}
		b.resps = append(b.resps, r)
		return b.count(r.key())
	}
	r.kind = kindOf(r.header)
	r.hdrSum = headerSum(b.seed, r.header, b.noise)
	r.rawSum = r.bodySum(b.seed)
	r.bodyKey, r.normDone, r.statusOnly = r.rawSum, false, false
	b.dedup(r)
	if !b.diverse {
		for _, o := range b.resps {
			if !o.statusOnly && o.rawSum != r.rawSum {
				b.diverse = true
				for _, p := range b.resps {
					b.normalize(p)
				}
				break
			}
		}
	}
	b.resps = append(b.resps, r)
	if b.diverse {
		b.normalize(r)
	}
	return b.count(r.key())
}

// normalize sets r.bodyKey to the hash of r's normalized body, reusing the result of an
// earlier response with the same raw body.
func (b *ballot) normalize(r *response) {
	if r.normDone {
		return
	}
	r.normDone = true
	if r.bb.spooled() {
		return // compared raw (see spool.go)
	}
	for _, o := range b.resps {
		if o != r && o.normDone && o.rawSum == r.rawSum && o.kind == r.kind {
			r.bodyKey = o.bodyKey
			return
		}
	}
	out, ok := normalizeBody(b.scratch[:0], r.kind, r.body, b.noise, b.fold)
	b.scratch = out
	if ok {
		r.bodyKey = maphash.Bytes(b.seed, out)
	}
}

// answer returns the response and body to send for the group of win: a member whose raw
// body another member sent too (the most common raw body of the group), else win's body in
// normalized form, so no difference the vote ignored (white space, member order, escapes)
// reaches the client from one executor; normalized reports the latter.
func (b *ballot) answer(win *response) (r *response, body []byte, normalized bool) {
	if !b.diverse || win.statusOnly || win.bb.spooled() {
		return win, win.body, false
	}
	best, bestN := win, 0
	for _, o := range b.resps {
		if o.key() != win.key() {
			continue
		}
		n := 0
		for _, p := range b.resps {
			if p.key() == win.key() && p.rawSum == o.rawSum {
				n++
			}
		}
		if n > bestN {
			best, bestN = o, n
		}
	}
	if bestN > 1 || best.bodyKey == best.rawSum {
		return best, best.body, false // shared raw bytes, or compared raw anyway
	}
	out, ok := normalizeBody(nil, win.kind, win.body, b.noise, b.fold)
	if !ok {
		return win, win.body, false
	}
	return win, out, true
}

func (b *ballot) count(k voteKey) int {
	n := 0
	for _, r := range b.resps {
		if r.key() == k {
			n++
		}
	}
	return n
}

// leader returns the first response of the largest group and the group's size.
func (b *ballot) leader() (*response, int) {
	var best *response
	bestN := 0
	for i, r := range b.resps {
		seen := false
		for _, o := range b.resps[:i] {
			if o.key() == r.key() {
				seen = true
				break
			}
		}
		if seen {
			continue
		}
		if n := b.count(r.key()); n > bestN {
			best, bestN = r, n
		}
	}
	return best, bestN
}

// diff says what differs between a dissenting response and the winner.
type diff struct {
	Status  bool     `json:"status"`
	Headers []string `json:"headers,omitempty"`
	Body    bool     `json:"body"`
}

// String reads as text in log lines: "status, headers Content-Type Set-Cookie, body".
func (d diff) String() string {
	var parts []string
	if d.Status {
		parts = append(parts, "status")
	}
	if len(d.Headers) > 0 {
		parts = append(parts, "headers "+strings.Join(d.Headers, " "))
	}
	if d.Body {
		parts = append(parts, "body")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func (b *ballot) diff(r, win *response) diff {
	d := diff{Status: r.status != win.status}
	if r.statusOnly || win.statusOnly {
		if r.location != win.location {
			d.Headers = []string{"Location"}
		}
		return d
	}
	d.Body = r.bodyKey != win.bodyKey
	if r.hdrSum != win.hdrSum {
		d.Headers = differingHeaders([]*response{r, win}, b.noise)
	}
	return d
}

// differingHeaders lists the compared headers whose values (or presence) are not the same
// in all rs.
func differingHeaders(rs []*response, noise *noiseSet) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		for k := range r.header {
			if noise.ignoresHeader(k) || seen[k] {
				continue
			}
			seen[k] = true
			_, ok0 := rs[0].header[k]
			v0 := comparedHeader(rs[0].header, k)
			for _, o := range rs[1:] {
				_, ok := o.header[k]
				if ok != ok0 || comparedHeader(o.header, k) != v0 {
					out = append(out, k)
					break
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// excerpt returns at most n bytes of b around the first byte where it differs from ref.
func excerpt(b, ref []byte, n int) string {
	i := 0
	for i < len(b) && i < len(ref) && b[i] == ref[i] {
		i++
	}
	start := max(0, i-n/4)
	end := min(len(b), start+n)
	return string(bytes.ToValidUTF8(b[start:end], []byte("?")))
}
