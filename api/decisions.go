package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/proteus-defense/proteus/dashboard"
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
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// RevertResult is the answer of POST /v1/decisions/{id}/revert: the revert as recorded in the
// audit store.
type RevertResult struct {
	Decision string       `json:"decision"`
	Revert   store.Revert `json:"revert"`
}

// revertDecision reverts one countermeasure of a decision before it expires (?action= its
// action ID) and records who asked in the audit store, so the decision's story says who
// reverted what and when. 404: no such decision or countermeasure; 409: it is no longer
// active (expired, or reverted already).
func (s *Server) revertDecision(w http.ResponseWriter, r *http.Request) {
	if !s.decisionsEnabled(w) || !s.countermeasuresEnabled(w) {
		return
	}
	id, action := r.PathValue("id"), r.URL.Query().Get("action")
	if action == "" {
		writeError(w, http.StatusBadRequest, errors.New("action=ID (the countermeasure's action ID) is required"))
		return
	}
	d, err := s.decisions.Get(r.Context(), id)
	if err != nil {
		s.storeError(w, err)
		return
	}
	var cm *store.Countermeasure
	for i := range d.Countermeasures {
		if c := &d.Countermeasures[i]; c.ID != "" && c.ID == action {
			cm = c
		}
	}
	if cm == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("decision %s took no countermeasure %q", id, action))
		return
	}
	active := false
	for _, a := range s.cm.Active() {
		active = active || a.ID == action
	}
	if !active {
		writeError(w, http.StatusConflict, fmt.Errorf("countermeasure %s of decision %s is not active (it expired or was reverted)", action, id))
		return
	}
	rev := store.Revert{Time: s.now().UTC(), Action: action, By: requester(r)}
	if err := s.cm.Revert(r.Context(), action); err != nil {
		s.log.Error("revert requested", "decision", id, "action", action, "by", rev.By, "err", err)
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.log.Warn("countermeasure reverted early", "decision", id, "action", action, "kind", cm.Kind, "target", cm.Target, "by", rev.By)
	if err := s.decisions.PutRevert(r.Context(), id, rev); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("reverted, but not recorded in the audit store: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, RevertResult{Decision: id, Revert: rev})
}

// requester says who made r, as far as the API can tell: a dashboard session (by the first
// digits of its hash, never the cookie) or a holder of the bearer token, and from where.
func requester(r *http.Request) string {
	from := r.RemoteAddr
	if h, _, err := net.SplitHostPort(from); err == nil {
		from = h
	}
	if p := peerOf(r.Context()); p != "" {
		from = "the unix socket (" + p + ")"
	} else if from == "" || from == "@" {
		from = "the unix socket"
	}
	if sess := dashboard.SessionOf(r.Context()); sess != "" {
		return "dashboard session " + sess + " from " + from
	}
	return "API token from " + from
}

func (s *Server) storeError(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeError(w, http.StatusInternalServerError, err)
}

// Bounds of GET /v1/timeline.
const (
	MaxTimelineBuckets = 500
	MaxTopSources      = 100
	MaxTimelineSpan    = 366 * 24 * time.Hour
)

// timeline answers GET /v1/timeline?since=DURATION&buckets=N&top=N: the decisions of the last
// since (default 24h) in N buckets (default 48) by verdict with their countermeasures, and the
// top sources (default 10), for the dashboard's timeline.
func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	if !s.decisionsEnabled(w) {
		return
	}
	q := r.URL.Query()
	span := 24 * time.Hour
	if v := q.Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > MaxTimelineSpan {
			writeError(w, http.StatusBadRequest, fmt.Errorf("since must be a duration in (0, %s], got %q", MaxTimelineSpan, v))
			return
		}
		span = d
	}
	n, top := 48, 10
	for _, p := range []struct {
		name string
		v    *int
		max  int
	}{{"buckets", &n, MaxTimelineBuckets}, {"top", &top, MaxTopSources}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > p.max {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%s must be an integer in [1, %d], got %q", p.name, p.max, v))
			return
		}
		*p.v = i
	}
	now := s.now()
	tl, err := s.decisions.Timeline(r.Context(), now.Add(-span), now.Add(time.Nanosecond), n, top)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, tl)
}
