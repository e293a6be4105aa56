package voter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// Scheduler chooses which k of the healthy backends answer one request. Pick appends its
// choice to dst and returns it; it must be safe for concurrent use and must not modify all.
type Scheduler interface {
	Pick(dst, all []Member, k int) []Member
}

// Scheduler names accepted by NewScheduler.
const (
	SchedRandom       = "random"
	SchedRoundRobin   = "round-robin"
	SchedTrustWeight  = "trust-weighted"
	SchedMaxDiversity = "max-diversity"
)

// Schedulers lists the scheduler names.
var Schedulers = []string{SchedRandom, SchedRoundRobin, SchedTrustWeight, SchedMaxDiversity}

// NewScheduler returns the scheduler called name. trust may be nil except for trust-weighted.
func NewScheduler(name string, trust *Trust) (Scheduler, error) {
	switch name {
	case SchedRandom, "":
		return randomSched{}, nil
	case SchedRoundRobin:
		return &roundRobin{}, nil
	case SchedTrustWeight:
		if trust == nil {
			return nil, fmt.Errorf("voter: scheduler %s needs trust", name)
		}
		return trustWeighted{trust}, nil
	case SchedMaxDiversity:
		return &maxDiversity{}, nil
	}
	return nil, fmt.Errorf("voter: unknown scheduler %q (known: %v)", name, Schedulers)
}

type randomSched struct{}

func (randomSched) Pick(dst, all []Member, k int) []Member {
	n := len(all)
	if k >= n {
		return append(dst, all...)
	}
	// Floyd's algorithm: k distinct indices without copying all.
	var chosen [64]bool
	if n > len(chosen) {
		perm := rand.Perm(n)
		for _, i := range perm[:k] {
			dst = append(dst, all[i])
		}
		return dst
	}
	for j := n - k; j < n; j++ {
		t := rand.IntN(j + 1)
		if chosen[t] {
			t = j
		}
		chosen[t] = true
	}
	for i := range n {
		if chosen[i] {
			dst = append(dst, all[i])
		}
	}
	return dst
}

type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Pick(dst, all []Member, k int) []Member {
	n := len(all)
	if k >= n {
		return append(dst, all...)
	}
	start := int(r.next.Add(1) % uint64(n))
	for i := range k {
		dst = append(dst, all[(start+i)%n])
	}
	return dst
}

// trustWeighted samples k backends without replacement with probability proportional to
// their trust (Efraimidis–Spirakis keys u^(1/w)), so an executor that dissents often is
// asked less often but never starved of the requests that could clear it.
type trustWeighted struct{ t *Trust }

func (s trustWeighted) Pick(dst, all []Member, k int) []Member {
	n := len(all)
	if k >= n {
		return append(dst, all...)
	}
	type cand struct {
		key float64
		i   int
	}
	cs := make([]cand, n)
	for i, b := range all {
		w := max(s.t.Score(b.ID), 0.05)
		cs[i] = cand{math.Pow(rand.Float64(), 1/w), i}
	}
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.key > b.key:
			return -1
		case a.key < b.key:
			return 1
		}
		return 0
	})
	for _, c := range cs[:k] {
		dst = append(dst, all[c.i])
	}
	return dst
}

// maxDiversity chooses the k backends whose declared traits (and variants) differ most:
// it maximizes the sum over pairs of the number of trait keys on which the two differ, so a
// vulnerability tied to one trait value rarely reaches a majority. Among equally diverse
// subsets it rotates, to spread the load. Results are cached per backend set.
type maxDiversity struct {
	mu    sync.Mutex
	key   string
	best  [][]int // equally diverse index subsets
	next  atomic.Uint64
	limit int // largest number of subsets searched exhaustively; greedy beyond
}

func (s *maxDiversity) Pick(dst, all []Member, k int) []Member {
	n := len(all)
	if k >= n {
		return append(dst, all...)
	}
	key := setKey(all, k)
	s.mu.Lock()
	if s.key != key {
		s.best = bestSubsets(all, k, max(s.limit, 5000))
		s.key = key
	}
	best := s.best
	s.mu.Unlock()
	sub := best[int(s.next.Add(1)%uint64(len(best)))]
	for _, i := range sub {
		dst = append(dst, all[i])
	}
	return dst
}

func setKey(all []Member, k int) string {
	n := 4
	for _, b := range all {
		n += len(b.ID) + 1
	}
	buf := make([]byte, 0, n)
	buf = append(buf, byte(k))
	for _, b := range all {
		buf = append(buf, b.ID...)
		buf = append(buf, 0)
	}
	return string(buf)
}

// distance is the number of trait keys (and the variant) on which a and b differ.
func distance(a, b Member) int {
	d := 0
	if a.Variant != b.Variant {
		d++
	}
	for k, v := range a.Traits {
		if w, ok := b.Traits[k]; !ok || w != v {
			d++
		}
	}
	for k := range b.Traits {
		if _, ok := a.Traits[k]; !ok {
			d++
		}
	}
	return d
}

// bestSubsets returns every k-subset of all with the largest pairwise distance sum, searching
// exhaustively when C(n,k) <= limit and greedily (from each starting backend) otherwise.
func bestSubsets(all []Member, k, limit int) [][]int {
	n := len(all)
	dist := make([][]int, n)
	for i := range dist {
		dist[i] = make([]int, n)
		for j := range n {
			dist[i][j] = distance(all[i], all[j])
		}
	}
	score := func(sub []int) int {
		s := 0
		for i, a := range sub {
			for _, b := range sub[i+1:] {
				s += dist[a][b]
			}
		}
		return s
	}
	var best [][]int
	bestScore := -1
	consider := func(sub []int) {
		sc := score(sub)
		switch {
		case sc > bestScore:
			bestScore, best = sc, [][]int{slices.Clone(sub)}
		case sc == bestScore:
			best = append(best, slices.Clone(sub))
		}
	}
	if binom(n, k) <= limit {
		sub := make([]int, k)
		var rec func(pos, from int)
		rec = func(pos, from int) {
			if pos == k {
				consider(sub)
				return
			}
			for i := from; i <= n-(k-pos); i++ {
				sub[pos] = i
				rec(pos+1, i+1)
			}
		}
		rec(0, 0)
		return best
	}
	for start := range n {
		sub := []int{start}
		for len(sub) < k {
			bi, bs := -1, -1
			for c := range n {
				if slices.Contains(sub, c) {
					continue
				}
				s := 0
				for _, x := range sub {
					s += dist[x][c]
				}
				if s > bs {
					bi, bs = c, s
				}
			}
			sub = append(sub, bi)
		}
		slices.Sort(sub)
		dup := false
		for _, b := range best {
			if slices.Equal(b, sub) {
				dup = true
			}
		}
		if !dup {
			consider(sub)
		}
	}
	return best
}

func binom(n, k int) int {
	r := 1
	for i := 1; i <= k; i++ {
		r = r * (n - k + i) / i
		if r > 1<<30 {
			return r
		}
	}
	return r
}
