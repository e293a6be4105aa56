package dnsgw

import (
	"net/http"
	"time"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// BackendStatus is one server as the front sees it.
type BackendStatus struct {
	ID       string    `json:"id"`
	Variant  string    `json:"variant"`
	Addr     string    `json:"addr"`
	Trust    float64   `json:"trust"` // 1 - dissent frequency over the trust window
	Queries  int       `json:"queries"`
	Dissents int       `json:"dissents"`
	OutUntil time.Time `json:"ejected_until,omitzero"`
}

// Status is the front's view of its servers. Ready means a query can be voted now: at least
// a quorum of servers is not ejected.
type Status struct {
	Ready     bool            `json:"ready"`
	Quorum    int             `json:"quorum"`
	Backends  []BackendStatus `json:"backends"`
	Malformed uint64          `json:"malformed_queries"`
	Stray     uint64          `json:"stray_answers"` // server datagrams with no query in flight for their ID
}

// Status reports every server's trust and ejection.
func (g *Gateway) Status() Status {
	now := time.Now()
	trust := map[string]BackendStatus{}
	for _, t := range g.core.Trust().Snapshot() {
		trust[t.ID] = BackendStatus{Trust: t.Score, Queries: t.Requests, Dissents: t.Dissents}
	}
	st := Status{Quorum: g.o.Quorum, Malformed: g.stat.malformed.Load(), Stray: g.stat.strayAnswers.Load()}
	in := 0
	for _, b := range g.o.Backends.Backends() {
		bs, seen := trust[b.ID]
		if !seen {
			bs.Trust = 1
		}
		bs.ID, bs.Variant, bs.Addr, bs.OutUntil = b.ID, b.Variant, b.Addr, g.core.OutUntil(b.ID, now)
		if bs.OutUntil.IsZero() {
			in++
		}
		st.Backends = append(st.Backends, bs)
	}
	st.Ready = in >= g.o.Quorum
	return st
}

// HealthHandler serves Status as JSON: 200 when ready, 503 when not.
func (g *Gateway) HealthHandler() http.Handler {
	return voter.HealthHandler(func() (any, bool) { st := g.Status(); return st, st.Ready })
}
