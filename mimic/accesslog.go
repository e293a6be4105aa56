package mimic

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The access log is one JSON line per client request, written once the vote is complete
// (stragglers included), so it says how the vote went: which executors agreed with the
// answer, which dissented and in what, and which did not answer. Off unless
// Options.AccessLogFile names a file ("-": standard error).

// openAccessLog opens the access log for appending, readable by the agent's user only.
func openAccessLog(path string) (*slog.Logger, *os.File, error) {
	if path == "-" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("mimic: access log: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), f, nil
}

// accessEntry is what the client's goroutine knows of the answer, for the access log.
type accessEntry struct {
	start   time.Time
	status  int
	outcome string
}

// logAccess writes c's line; the ballot is complete.
func (c *call) logAccess(now time.Time) {
	b := &c.ballot
	var agreed []string
	var dissent []map[string]string
	for _, r := range b.resps {
		if c.win != nil && r.key() == c.win.key() {
			agreed = append(agreed, r.backend.ID)
			continue
		}
		d := map[string]string{"executor": r.backend.ID, "kind": DissentContent, "status": strconv.Itoa(r.status)}
		if c.win != nil {
			d["differs"] = b.diff(r, c.win).String()
		}
		dissent = append(dissent, d)
	}
	for _, r := range b.failed {
		dissent = append(dissent, map[string]string{"executor": r.backend.ID, "kind": DissentAvailability, "error": r.err.Error()})
	}
	c.g.access.Info("request",
		"request", c.requestID(), "client", c.client(), "method", c.method, "path", c.path,
		"policy", string(c.policy), "status", c.entry.status, "outcome", c.entry.outcome,
		"duration_ms", float64(now.Sub(c.entry.start).Microseconds())/1000,
		"agreed", agreed, "dissent", dissent)
}

// singleCounts counts the requests single routes sent to each executor: what no vote checked
// is at least accounted for (Status, and a log line per request).
type singleCounts struct{ m sync.Map } // executor ID -> *atomic.Uint64

func (s *singleCounts) add(id string) {
	v, ok := s.m.Load(id)
	if !ok {
		v, _ = s.m.LoadOrStore(id, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

func (s *singleCounts) get(id string) uint64 {
	if v, ok := s.m.Load(id); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

// prune forgets executors no longer among live (rotated away), so the map stays bounded.
func (s *singleCounts) prune(live map[string]bool) {
	s.m.Range(func(k, _ any) bool {
		if !live[k.(string)] {
			s.m.Delete(k)
		}
		return true
	})
}
