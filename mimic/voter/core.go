package voter

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// Bus event kinds published by every voting adapter; the event's Source says which one
// ("gateway" for HTTP, "dns" for DNS), so the engine reads them all the same way.
const (
	EventDissent     = "gateway.dissent"
	EventNoConsensus = "gateway.no-consensus"
	EventRebuild     = "gateway.rebuild"
	EventEjected     = "gateway.ejected" // an executor is left out of the picks for a while
	EventBack        = "gateway.back"    // ... and is back after answering its probe
)

// Dissent kinds.
const (
	DissentContent      = "content"      // answered, but not like the decision
	DissentAvailability = "availability" // timed out, failed, or sent an answer that could not be read
)

// ErrTooFew is returned by Choose when fewer executors than the quorum are available.
var ErrTooFew = errors.New("voter: fewer executors than the quorum")

// Options configure a Core. Zero values take the documented defaults.
type Options struct {
	Source    string          // the events' Source, e.g. "gateway", "dns"
	Bus       *bus.Bus        // optional
	Logger    *slog.Logger    // optional, used as it is (give it the adapter's component)
	Rebuild   func(id string) // optional: called (in its own goroutine) by the dissent policy
	Metrics   *Metrics        // optional
	Scheduler string          // random (default), round-robin, trust-weighted, max-diversity

	TrustWindow      int           // requests in each executor's trust window, default 100
	RebuildThreshold int           // dissents within RebuildWindow that call Rebuild (0: never)
	RebuildWindow    time.Duration // default 1m

	// EjectAfter consecutive availability failures leave an executor out of the picks for
	// EjectFor, doubling up to EjectMax while its probes fail (defaults 3, 1s, 30s; EjectAfter
	// negative: never). See Ejector.
	EjectAfter         int
	EjectFor, EjectMax time.Duration
}

// Core is the accounting every voting adapter shares: it chooses the executors of a request
// and turns each executor's outcome into trust, ejection, dissent and no-consensus events,
// log lines (dissent lines limited to one per executor and kind per second) and rebuild
// requests. It is safe for concurrent use.
type Core struct {
	source     string
	bus        *bus.Bus
	log        *slog.Logger
	rebuild    func(id string)
	metrics    *Metrics
	trust      *Trust
	eject      *Ejector
	sched      Scheduler
	dissentLog *logLimiter
	vigilantK  atomic.Int32 // Tighten's k; 0: the adapter's own (vigilance.go)
}

// New builds a Core.
func New(o Options) (*Core, error) {
	if o.Source == "" {
		o.Source = "gateway"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics("proteus_" + o.Source)
	}
	if o.TrustWindow <= 0 {
		o.TrustWindow = 100
	}
	if o.RebuildWindow <= 0 {
		o.RebuildWindow = time.Minute
	}
	if o.EjectAfter == 0 {
		o.EjectAfter = 3
	}
	if o.EjectFor <= 0 {
		o.EjectFor = time.Second
	}
	if o.EjectMax < o.EjectFor {
		o.EjectMax = max(30*time.Second, o.EjectFor)
	}
	c := &Core{
		source:     o.Source,
		bus:        o.Bus,
		log:        o.Logger,
		rebuild:    o.Rebuild,
		metrics:    o.Metrics,
		trust:      NewTrust(o.TrustWindow, o.RebuildThreshold, o.RebuildWindow),
		eject:      NewEjector(o.EjectAfter, o.EjectFor, o.EjectMax),
		dissentLog: newLogLimiter(time.Second),
	}
	var err error
	if c.sched, err = NewScheduler(o.Scheduler, c.trust); err != nil {
		return nil, err
	}
	return c, nil
}

// Source is the events' Source.
func (c *Core) Source() string { return c.source }

// Trust exposes the per-executor trust scores.
func (c *Core) Trust() *Trust { return c.trust }

// Eligible returns the executors of all a request with quorum q may go to at now: those not
// ejected, unless leaving them out would leave fewer than q (then all of them).
func (c *Core) Eligible(all []Member, q int, now time.Time) []Member {
	if in := c.eject.Available(all, now); len(in) < len(all) && len(in) >= q {
		return in
	}
	return all
}

// Available returns the executors of all that are not ejected at now (all itself when none is).
func (c *Core) Available(all []Member, now time.Time) []Member { return c.eject.Available(all, now) }

// Pick appends to dst the scheduler's choice of k of all.
func (c *Core) Pick(dst, all []Member, k int) []Member { return c.sched.Pick(dst, all, k) }

// Choose appends to dst the executors one request goes to: min(k, eligible) of all, chosen by
// the scheduler among the eligible ones; ErrTooFew when that is fewer than q.
func (c *Core) Choose(dst, all []Member, k, q int, now time.Time) ([]Member, error) {
	all = c.Eligible(all, q, now)
	n := min(k, len(all))
	if n == 0 || n < q {
		return dst, ErrTooFew
	}
	return c.sched.Pick(dst, all, n), nil
}

// OutUntil returns when id's ejection ends, zero when it is not out at now.
func (c *Core) OutUntil(id string, now time.Time) time.Time { return c.eject.OutUntil(id, now) }

// Dissent is one executor's disagreement with a decision, or its failure to answer.
type Dissent struct {
	Member Member
	Kind   string // DissentContent or DissentAvailability
	Err    error  // what failed, for DissentAvailability
	// Attrs are the adapter's event attributes (request, client, what differed...); the core
	// adds executor, variant, kind and error. The map is published as it is.
	Attrs map[string]any
	// Log returns the adapter's attributes of the log line (called only when a line is
	// logged).
	Log func() []any
}

// Dissent publishes d, counts it, logs it (at most one line per executor and kind per
// second, the next one saying how many it left out) and records it in the executor's trust,
// asking for a rebuild when the policy says so.
func (c *Core) Dissent(d Dissent, now time.Time) {
	m := d.Member
	c.metrics.dissent.WithLabelValues(m.Variant, d.Kind).Inc()
	attrs := d.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	attrs["executor"], attrs["variant"], attrs["kind"] = m.ID, m.Variant, d.Kind
	if d.Err != nil {
		attrs["error"] = d.Err.Error()
	}
	if ok, left := c.dissentLog.allow(m.ID+" "+d.Kind, now); ok {
		args := []any{"executor", m.ID, "variant", m.Variant, "kind", d.Kind}
		if d.Log != nil {
			args = append(args, d.Log()...)
		}
		if d.Err != nil {
			args = append(args, "error", d.Err)
		}
		if left > 0 {
			args = append(args, "suppressed", left) // like it since the last line, not logged
		}
		c.log.Warn("dissent", args...)
	}
	c.bus.Publish(bus.Event{Kind: EventDissent, Source: c.source, Subject: m.ID, Attrs: attrs})
	if c.trust.Record(m.ID, true, now) {
		c.askRebuild(m)
	}
}

// Agreed records that m's answer was the decision's.
func (c *Core) Agreed(m Member, now time.Time) {
	if c.trust.Record(m.ID, false, now) {
		c.askRebuild(m)
	}
}

// Reached records whether m could be reached (err nil: it answered) for ejection, and says so
// when m goes out or comes back. Only failures to reach m or to hear from it in time belong
// here; an answer that was refused for its content does not.
func (c *Core) Reached(m Member, err error, now time.Time) {
	out, back := c.eject.Result(m.ID, err != nil, now)
	switch {
	case out > 0:
		c.metrics.ejections.WithLabelValues(m.Variant).Inc()
		c.log.Warn("executor ejected", "executor", m.ID, "variant", m.Variant, "for", out, "error", err)
		c.bus.Publish(bus.Event{Kind: EventEjected, Source: c.source, Subject: m.ID, Attrs: map[string]any{
			"variant": m.Variant, "for": out.String(), "error": err.Error()}})
	case back:
		c.log.Info("executor back", "executor", m.ID, "variant", m.Variant)
		c.bus.Publish(bus.Event{Kind: EventBack, Source: c.source, Subject: m.ID, Attrs: map[string]any{"variant": m.Variant}})
	}
}

// NoConsensus publishes and counts a request refused for want of a quorum; log holds the
// log line's attributes.
func (c *Core) NoConsensus(subject string, attrs map[string]any, log ...any) {
	c.metrics.noConsensus.Inc()
	if log != nil {
		c.log.Warn("no consensus", log...)
	}
	c.bus.Publish(bus.Event{Kind: EventNoConsensus, Source: c.source, Subject: subject, Attrs: attrs})
}

func (c *Core) askRebuild(m Member) {
	c.metrics.rebuilds.WithLabelValues(m.Variant).Inc()
	c.log.Warn("asking for rebuild", "executor", m.ID, "variant", m.Variant)
	c.bus.Publish(bus.Event{Kind: EventRebuild, Source: c.source, Subject: m.ID, Attrs: map[string]any{"variant": m.Variant}})
	if c.rebuild != nil {
		go c.rebuild(m.ID)
	}
}
