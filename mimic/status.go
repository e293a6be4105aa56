package mimic

import (
	"net/http"
	"time"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// BackendStatus is one executor as the gateway sees it.
type BackendStatus struct {
	ID       string    `json:"id"`
	Variant  string    `json:"variant"`
	URL      string    `json:"url"`
	Trust    float64   `json:"trust"` // 1 - dissent frequency over the trust window
	Requests int       `json:"requests"`
	Dissents int       `json:"dissents"`
	Single   uint64    `json:"single_requests"`        // sent unvoted by single routes
	OutUntil time.Time `json:"ejected_until,omitzero"` // set while ejected
}

// Status is the gateway's view of its executors. Ready means a voted request (k and quorum of
// the options) can be answered now: at least a quorum of executors is not ejected.
type Status struct {
	Ready    bool            `json:"ready"`
	Quorum   int             `json:"quorum"`
	Backends []BackendStatus `json:"backends"`
	// Learned is the noise learned so far per route prefix ("default": no route), the fields
	// the vote no longer compares; ResetLearned forgets them.
	Learned map[string][]string `json:"learned"`
}

// Status reports every executor's trust and ejection.
func (g *Gateway) Status() Status {
	now := time.Now()
	trust := map[string]TrustScore{}
	for _, t := range g.core.Trust().Snapshot() {
		trust[t.ID] = t
	}
	q := g.o.Quorum
	all := g.o.Backends.Backends()
	st := Status{Quorum: q, Backends: make([]BackendStatus, 0, len(all))}
	in := 0
	live := make(map[string]bool, len(all))
	for _, b := range all {
		live[b.ID] = true
		t, seen := trust[b.ID]
		if !seen {
			t.Score = 1
		}
		bs := BackendStatus{ID: b.ID, Variant: b.Variant, URL: b.Addr, Trust: t.Score, Requests: t.Requests,
			Dissents: t.Dissents, OutUntil: g.core.OutUntil(b.ID, now), Single: g.singles.get(b.ID)}
		if bs.OutUntil.IsZero() {
			in++
		}
		st.Backends = append(st.Backends, bs)
	}
	st.Ready = in >= q
	g.singles.prune(live)
	st.Learned = g.Learned()
	return st
}

// HealthHandler serves Status as JSON: 200 when ready, 503 when not (for load balancers and
// readiness probes).
func (g *Gateway) HealthHandler() http.Handler {
	return voter.HealthHandler(func() (any, bool) { st := g.Status(); return st, st.Ready })
}
