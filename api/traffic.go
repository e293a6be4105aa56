package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Traffic samples the voting front's request and dissent counters at a fixed interval into a
// bounded ring (the oldest sample is overwritten), for the dashboard's plot of requests and
// dissent rates over time (GET /api/v1/traffic). It reads the counters from the agent's
// Prometheus registry, so the HTTP gateway's (proteus_gateway_*) and the DNS front's
// (proteus_dns_*) are counted alike.
type Traffic struct {
	g     prometheus.Gatherer
	every time.Duration

	mu   sync.Mutex
	ring []TrafficSample
	next int  // where the next sample goes
	full bool // ring wrapped
}

// TrafficSample is one reading of the counters (totals since the agent started).
type TrafficSample struct {
	Time        time.Time `json:"time"`
	Requests    uint64    `json:"requests"`     // client requests (queries), every outcome
	Dissents    uint64    `json:"dissents"`     // executor answers that disagreed or did not arrive
	NoConsensus uint64    `json:"no_consensus"` // requests refused for want of a quorum
	Blocked     uint64    `json:"blocked"`      // requests refused because their client is blocked
}

// Defaults of the agent's traffic sampler: one sample every 10 s, 4 h kept (1440 samples,
// about 70 KiB).
const (
	DefaultTrafficInterval = 10 * time.Second
	DefaultTrafficSamples  = 1440
	// MaxTrafficSamples bounds the ring whatever the caller asks for.
	MaxTrafficSamples = 100_000
)

// NewTraffic returns a sampler of g every interval keeping the last n samples (n is clamped
// to [2, MaxTrafficSamples]; interval ≤ 0 means DefaultTrafficInterval).
func NewTraffic(g prometheus.Gatherer, interval time.Duration, n int) *Traffic {
	if interval <= 0 {
		interval = DefaultTrafficInterval
	}
	n = min(max(n, 2), MaxTrafficSamples)
	return &Traffic{g: g, every: interval, ring: make([]TrafficSample, n)}
}

// Interval is the sampling interval.
func (t *Traffic) Interval() time.Duration { return t.every }

// Span is how far back the ring reaches when full.
func (t *Traffic) Span() time.Duration { return time.Duration(len(t.ring)) * t.every }

// Run samples now and then every interval until ctx ends.
func (t *Traffic) Run(ctx context.Context) {
	t.Sample(time.Now())
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.Sample(now)
		}
	}
}

// trafficCounters are the counters sampled, by what they count.
var trafficCounters = map[string]int{
	"proteus_gateway_requests_total": cRequests, "proteus_dns_requests_total": cRequests,
	"proteus_gateway_dissent_total": cDissents, "proteus_dns_dissent_total": cDissents,
	"proteus_gateway_no_consensus_total": cNoConsensus, "proteus_dns_no_consensus_total": cNoConsensus,
}

const (
	cRequests = iota + 1
	cDissents
	cNoConsensus
)

// Sample reads the counters once and stores the reading as of now.
func (t *Traffic) Sample(now time.Time) {
	s := TrafficSample{Time: now.UTC()}
	mfs, err := t.g.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	for _, mf := range mfs {
		what := trafficCounters[mf.GetName()]
		if what == 0 {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := uint64(max(m.GetCounter().GetValue(), 0))
			switch what {
			case cRequests:
				s.Requests += v
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" && l.GetValue() == "blocked" {
						s.Blocked += v
					}
				}
			case cDissents:
				s.Dissents += v
			case cNoConsensus:
				s.NoConsensus += v
			}
		}
	}
	t.mu.Lock()
	t.ring[t.next] = s
	t.next++
	if t.next == len(t.ring) {
		t.next, t.full = 0, true
	}
	t.mu.Unlock()
}

// Samples returns the samples taken at or after since, oldest first.
func (t *Traffic) Samples(since time.Time) []TrafficSample {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []TrafficSample
	if t.full {
		all = append(all, t.ring[t.next:]...)
	}
	all = append(all, t.ring[:t.next]...)
	for i, s := range all {
		if !s.Time.Before(since) {
			return all[i:]
		}
	}
	return nil
}

// TrafficPoint is one interval between two samples: its end and the rates over it.
type TrafficPoint struct {
	Time        time.Time `json:"time"`
	Requests    float64   `json:"requests_per_s"`
	Dissents    float64   `json:"dissents_per_s"`
	NoConsensus float64   `json:"no_consensus_per_s"`
	Blocked     float64   `json:"blocked_per_s"`
	// DissentRate is dissents per request over the interval (0 without requests).
	DissentRate float64 `json:"dissent_ratio"`
}

// TrafficAnswer is the answer of GET /v1/traffic.
type TrafficAnswer struct {
	IntervalSeconds float64        `json:"interval_s"`
	Since           time.Time      `json:"since"`
	Until           time.Time      `json:"until"`
	Points          []TrafficPoint `json:"points"`
	// Last is the newest sample (the totals), when there is one.
	Last *TrafficSample `json:"last,omitempty"`
}

// Rates turns consecutive samples into per-second rates. A counter lower than before (the
// front was rebuilt with fresh counters) counts from zero again.
func Rates(ss []TrafficSample) []TrafficPoint {
	out := make([]TrafficPoint, 0, max(len(ss)-1, 0))
	delta := func(a, b uint64) float64 {
		if b < a {
			return float64(b)
		}
		return float64(b - a)
	}
	for i := 1; i < len(ss); i++ {
		a, b := ss[i-1], ss[i]
		dt := b.Time.Sub(a.Time).Seconds()
		if dt <= 0 {
			continue
		}
		req, dis := delta(a.Requests, b.Requests), delta(a.Dissents, b.Dissents)
		p := TrafficPoint{Time: b.Time, Requests: req / dt, Dissents: dis / dt,
			NoConsensus: delta(a.NoConsensus, b.NoConsensus) / dt, Blocked: delta(a.Blocked, b.Blocked) / dt}
		if req > 0 {
			p.DissentRate = dis / req
		}
		out = append(out, p)
	}
	return out
}

// WithTraffic enables GET /v1/traffic over t's samples.
func WithTraffic(t *Traffic) Option { return func(s *Server) { s.traffic = t } }

// Bounds of GET /v1/traffic.
const (
	DefaultTrafficPoints = 240
	MaxTrafficPoints     = 2000
)

// trafficRates answers GET /v1/traffic?since=DURATION&points=N: the request, dissent,
// no-consensus and blocked rates over the last since (default, and at most, what the ring
// holds) in at most N intervals (default DefaultTrafficPoints; longer intervals average
// several sampling intervals).
func (s *Server) trafficRates(w http.ResponseWriter, r *http.Request) {
	if s.traffic == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this agent samples no traffic (no voting front)"))
		return
	}
	q := r.URL.Query()
	span := s.traffic.Span()
	if v := q.Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > span {
			writeError(w, http.StatusBadRequest, fmt.Errorf("since must be a duration in (0, %s] (what the agent keeps), got %q", span, clip(v, 40)))
			return
		}
		span = d
	}
	points := DefaultTrafficPoints
	if v := q.Get("points"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxTrafficPoints {
			writeError(w, http.StatusBadRequest, fmt.Errorf("points must be an integer in [1, %d], got %q", MaxTrafficPoints, clip(v, 40)))
			return
		}
		points = n
	}
	if !s.plotSlot(w) {
		return
	}
	defer func() { <-s.plots }()
	now := s.now().UTC()
	since := now.Add(-span)
	// One sample before since, so the first interval in the span has its rate.
	ss := s.traffic.Samples(since.Add(-s.traffic.Interval()))
	ans := TrafficAnswer{IntervalSeconds: s.traffic.Interval().Seconds(), Since: since, Until: now, Points: Rates(thin(ss, points))}
	if len(ss) > 0 {
		last := ss[len(ss)-1]
		ans.Last = &last
	}
	writeJSON(w, http.StatusOK, ans)
}

// thin keeps every k-th sample (the first and the last always) so that at most n intervals
// remain between them; the rates between kept samples are the averages over what they span.
func thin(ss []TrafficSample, n int) []TrafficSample {
	if len(ss)-1 <= n {
		return ss
	}
	k := (len(ss) - 1 + n - 1) / n
	out := make([]TrafficSample, 0, n+1)
	for i := 0; i < len(ss)-1; i += k {
		out = append(out, ss[i])
	}
	return append(out, ss[len(ss)-1])
}
