package mimic

import (
	"github.com/proteus-defense/proteus/config"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// learner finds noise online, and ordinary traffic cannot teach it to stop comparing what
// matters. A field (a header or a JSON pointer) is learned as noise only when, on minSamples
// distinct paths, every executor's value differed from every other's on a request where the
// responses otherwise agreed (same status, at most maxDiffFields differing fields, any body
// difference confined to JSON fields): true noise, like a per-server clock or request ID. A
// field where one executor is the odd one out is never learned, whichever executor it is on
// each path: that is dissent, and it is what a compromised executor (or a probe that makes a
// different executor the odd one out on each of two files) produces. Some fields are never
// learned at all (see neverNoise): the status, Content-Type, Location, cookies, the security
// headers; and no whole body is.
type learner struct {
	enabled    bool
	minSamples int
	onLearn    func(field string)

	base *noiseSet // the configured noise, what Reset returns to
	set  atomic.Pointer[noiseSet]

	mu     sync.Mutex
	fields map[string]*fieldStats
}

type fieldStats struct {
	paths map[uint64]struct{} // distinct paths on which all executors differed in the field
}

const (
	maxDiffFields     = 8    // more differing fields than this is not "otherwise agreeing"
	maxTrackedFields  = 4096 // bound on the learner's memory
	headerFieldPrefix = "header:"
	jsonFieldPrefix   = "json:"
)

// neverNoise reports whether header k (canonical) must always be compared: what it carries
// decides how a client treats the answer, so neither learning nor configuration may drop it.
func neverNoise(k string) bool { return config.SecurityHeader(k) }

// learnable reports whether a field ("header:NAME" or "json:/POINTER") may become noise.
func learnable(field string) bool {
	if h, ok := strings.CutPrefix(field, headerFieldPrefix); ok {
		return !neverNoise(h)
	}
	return strings.HasPrefix(field, jsonFieldPrefix)
}

func newLearner(base *noiseSet, enabled bool, minSamples int) *learner {
	l := &learner{enabled: enabled, minSamples: minSamples, base: base, fields: map[string]*fieldStats{}}
	l.set.Store(base)
	return l
}

// reset forgets every learned field and sample: the configured noise only.
func (l *learner) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.fields)
	l.set.Store(l.base)
}

func (l *learner) noise() *noiseSet { return l.set.Load() }

// learned lists the learned fields, sorted ("header:X-Request-Id", "json:/ts").
func (l *learner) learned() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for f, st := range l.fields {
		if st == nil {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// observe looks at the successful responses to one request for path whose votes were not
// unanimous.
func (l *learner) observe(path string, seed maphash.Seed, rs []*response, noise *noiseSet) {
	if !l.enabled || len(rs) < 3 {
		return
	}
	for _, r := range rs[1:] {
		if r.status != rs[0].status || r.statusOnly {
			return
		}
	}
	values := map[string][]string{} // field -> value per response
	for _, h := range differingHeaders(rs, noise) {
		if neverNoise(h) {
			return // a difference that is never noise: this request teaches nothing
		}
		vs := make([]string, len(rs))
		for i, r := range rs {
			if _, ok := r.header[h]; ok {
				vs[i] = "=" + comparedHeader(r.header, h)
			}
		}
		values[headerFieldPrefix+h] = vs
	}
	bodiesDiffer := false
	for _, r := range rs[1:] {
		if r.bodyKey != rs[0].bodyKey {
			bodiesDiffer = true
		}
	}
	if bodiesDiffer {
		flat := make([]map[string]string, len(rs))
		for i, r := range rs {
			if r.kind != kindJSON {
				return
			}
			v, err := parseJSON(r.body)
			if err != nil {
				return
			}
			flat[i] = map[string]string{}
			flattenJSON(v, "", flat[i])
		}
		ptrs := map[string]bool{}
		for _, f := range flat {
			for p := range f {
				ptrs[p] = true
			}
		}
		for p := range ptrs {
			if noise.ignoredPointer(p) {
				continue
			}
			vs := make([]string, len(rs))
			same := true
			for i, f := range flat {
				if v, ok := f[p]; ok {
					vs[i] = "=" + v
				}
				same = same && vs[i] == vs[0]
			}
			if !same {
				values[jsonFieldPrefix+p] = vs
			}
			if len(values) > maxDiffFields {
				return
			}
		}
	}
	if len(values) == 0 || len(values) > maxDiffFields {
		return
	}
	ph := maphash.String(seed, path)
	l.mu.Lock()
	defer l.mu.Unlock()
	for field, vs := range values {
		st, known := l.fields[field]
		if known && st == nil {
			continue // already learned
		}
		if !allDistinct(vs) {
			continue // an odd one out (or two alike): dissent, never evidence of noise
		}
		if !known {
			if len(l.fields) >= maxTrackedFields {
				continue
			}
			st = &fieldStats{paths: map[uint64]struct{}{}}
			l.fields[field] = st
		}
		st.paths[ph] = struct{}{}
		if len(st.paths) < l.minSamples {
			continue
		}
		l.markLearned(field)
		if l.onLearn != nil {
			l.onLearn(field)
		}
	}
}

// allDistinct reports whether no two values are the same.
func allDistinct(vs []string) bool {
	for i := range vs {
		for j := range i {
			if vs[i] == vs[j] {
				return false
			}
		}
	}
	return true
}

// restore marks field as learned without any samples: a field learned before a restart (see
// LoadLearned). It reports whether the field is new to l.
func (l *learner) restore(field string) bool {
	if !learnable(field) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st, known := l.fields[field]; known && st == nil {
		return false
	}
	l.markLearned(field)
	return true
}

// markLearned adds field to the noise set; l.mu must be held.
func (l *learner) markLearned(field string) {
	l.fields[field] = nil
	cur := l.set.Load()
	if h, ok := strings.CutPrefix(field, headerFieldPrefix); ok {
		l.set.Store(cur.with(h, ""))
	} else {
		l.set.Store(cur.with("", strings.TrimPrefix(field, jsonFieldPrefix)))
	}
}
