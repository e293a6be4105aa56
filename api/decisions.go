package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/proteus-defense/proteus/store"
)

// MaxDecisionsLimit bounds ?limit= of GET /v1/decisions.
const MaxDecisionsLimit = 1000

// DecisionList is the answer of GET /v1/decisions: the decisions without their detail and
// evidence excerpts (GET /v1/decisions/{id} has the whole story), oldest first.
type DecisionList struct {
	Decisions []store.Decision `json:"decisions"`
}

func (s *Server) decisionsEnabled(w http.ResponseWriter) bool {
	if s.decisions == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this agent runs without the engine's audit store (engine.model is not set)"))
		return false
	}
	return true
}

// ParseDecisionFilter reads ?since= (a duration ago or an RFC 3339 time), ?source= (an IP
// address), ?asset=, ?verdict= and ?limit= (1 to MaxDecisionsLimit); now anchors durations.
func ParseDecisionFilter(q map[string][]string, now time.Time) (store.Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var f store.Filter
	if v := get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			f.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.Since = t
		} else {
			return f, fmt.Errorf("since must be a positive duration such as 2h or an RFC 3339 time, got %q", v)
		}
	}
	if v := get("source"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return f, fmt.Errorf("source must be an IP address, got %q", v)
		}
		f.Source = a.Unmap().String()
	}
	f.Asset = get("asset")
	switch f.Verdict = get("verdict"); f.Verdict {
	case "", "act", "defer", "ignore":
	default:
		return f, fmt.Errorf("verdict must be act, defer or ignore, got %q", f.Verdict)
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDecisionsLimit {
			return f, fmt.Errorf("limit must be an integer in [1, %d], got %q", MaxDecisionsLimit, v)
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) listDecisions(w http.ResponseWriter, r *http.Request) {
	if !s.decisionsEnabled(w) {
		return
	}
	f, err := ParseDecisionFilter(r.URL.Query(), s.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ds, err := s.decisions.List(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	store.Brief(ds)
	writeJSON(w, http.StatusOK, DecisionList{Decisions: ds})
}

func (s *Server) getDecision(w http.ResponseWriter, r *http.Request) {
	if !s.decisionsEnabled(w) {
		return
	}
	d, err := s.decisions.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, d)
	}
}
