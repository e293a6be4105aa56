package mimic

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// learner finds noise online: a field (a header or a JSON pointer) that differs between
// executors on requests where their responses otherwise agree (same status, at most
// maxDiffFields differing fields, and any body difference confined to JSON fields) is
// learned as noise after minSamples such requests, unless one executor was the odd one out
// in more than maxOddShare of them: a field in which a single executor keeps disagreeing
// with the others is that executor's dissent, not noise.
type learner struct {
	enabled     bool
	minSamples  int
	maxOddShare float64
	onLearn     func(field string)

	set atomic.Pointer[noiseSet]

	mu     sync.Mutex
	fields map[string]*fieldStats
}

type fieldStats struct {
	n   int            // requests on which the field differed while the rest agreed
	odd map[string]int // backend ID -> times it alone differed
}

const (
	maxDiffFields     = 8    // more differing fields than this is not "otherwise agreeing"
	maxTrackedFields  = 4096 // bound on the learner's memory
	headerFieldPrefix = "header:"
	jsonFieldPrefix   = "json:"
)

func newLearner(base *noiseSet, enabled bool, minSamples int, maxOddShare float64) *learner {
	l := &learner{enabled: enabled, minSamples: minSamples, maxOddShare: maxOddShare, fields: map[string]*fieldStats{}}
	l.set.Store(base)
	return l
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

// observe looks at the successful responses to one request whose votes were not unanimous.
func (l *learner) observe(rs []*response, noise *noiseSet) {
	if !l.enabled || len(rs) < 3 {
		return
	}
	for _, r := range rs[1:] {
		if r.status != rs[0].status {
			return
		}
	}
	values := map[string][]string{} // field -> value per response
	for _, h := range differingHeaders(rs, noise) {
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
	l.mu.Lock()
	defer l.mu.Unlock()
	for field, vs := range values {
		st, known := l.fields[field]
		if known && st == nil {
			continue // already learned
		}
		if !known {
			if len(l.fields) >= maxTrackedFields {
				continue
			}
			st = &fieldStats{odd: map[string]int{}}
			l.fields[field] = st
		}
		st.n++
		if odd := oddOneOut(vs); odd >= 0 {
			st.odd[rs[odd].backend.ID]++
		}
		if st.n < l.minSamples {
			continue
		}
		most := 0
		for _, c := range st.odd {
			most = max(most, c)
		}
		if float64(most) > l.maxOddShare*float64(st.n) {
			continue
		}
		l.markLearned(field)
		if l.onLearn != nil {
			l.onLearn(field)
		}
	}
}

// restore marks field as learned without any samples: a field learned before a restart (see
// LoadLearned). It reports whether the field is new to l.
func (l *learner) restore(field string) bool {
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

// oddOneOut returns the index of the only value that differs from all the others, which all
// agree, or -1.
func oddOneOut(vs []string) int {
	for i := range vs {
		ref := vs[(i+1)%len(vs)]
		if vs[i] == ref {
			continue
		}
		rest := true
		for j := range vs {
			if j != i && vs[j] != ref {
				rest = false
				break
			}
		}
		if rest {
			return i
		}
	}
	return -1
}
