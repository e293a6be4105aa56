package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// ExitWatcher is implemented by drivers that learn at once when an instance's process ends,
// so the pool replaces a crashed executor without waiting for health checks to fail.
type ExitWatcher interface {
	// Exited returns a channel closed when inst has exited, or nil when unknown.
	Exited(inst *Instance) <-chan struct{}
}

// Cleaner is implemented by drivers that can remove debris an earlier agent left beyond what
// List reports (e.g. half-created work directories). The pool calls it once at Start, after
// stopping every leftover instance.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}

// Pool events besides the driver events: one EventTransition per state change.
const (
	EventTransition     = "executor.transition"
	EventRotationFailed = "executor.rotation-failed"
)

// Pool errors.
var (
	ErrNoInstance = errors.New("executor: no such instance in service")
	ErrBusy       = errors.New("executor: instance is already being reconfigured")
	ErrPoolClosed = errors.New("executor: pool closed")
)

// PoolConfig is the pool's part of the agent configuration, already validated.
type PoolConfig struct {
	Variants []Spec
	Desired  int // executors kept in service
	Min      int // Start fails unless this many become healthy
	// MaxConcurrent is c*: at most this many reconfigurations (rotations, replacements,
	// quarantine refills) run at once; more wait.
	MaxConcurrent int
	// Redraw lets every rotation and replacement pick a variant afresh (preferring variants
	// not already in service); otherwise an instance is replaced by its own variant.
	Redraw         bool
	HealthInterval time.Duration // between probes of a healthy instance (default 1s)
	HealthTimeout  time.Duration // per probe (default 1s)
	HealthFailures int           // consecutive failed probes before replacement (default 3)
	StartTimeout   time.Duration // for a new instance to become healthy (default 15s)
	DrainTimeout   time.Duration // for in-flight requests of a retired instance (default 10s)
	BackoffMin     time.Duration // first wait after a failed replacement (default 200ms)
	BackoffMax     time.Duration // longest wait between replacement attempts (default 30s)
	RateWindow     time.Duration // window of RotationRate (default 60s)
	// SharesDrivers: the drivers are another pool's too, which started first and stopped the
	// leftovers of an earlier run (theirs and this pool's); this pool's Start must not stop
	// that pool's running executors as leftovers, and its Close leaves the drivers open (the
	// owning pool closes them: close this pool first).
	SharesDrivers bool
}

func (c *PoolConfig) defaults() {
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&c.HealthInterval, time.Second)
	setDur(&c.HealthTimeout, time.Second)
	setDur(&c.StartTimeout, 15*time.Second)
	setDur(&c.DrainTimeout, 10*time.Second)
	setDur(&c.BackoffMin, 200*time.Millisecond)
	setDur(&c.BackoffMax, 30*time.Second)
	setDur(&c.RateWindow, time.Minute)
	if c.HealthFailures <= 0 {
		c.HealthFailures = 3
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 1
	}
	if c.Desired <= 0 {
		c.Desired = 1
	}
	if c.Min <= 0 || c.Min > c.Desired {
		c.Min = c.Desired
	}
}

// Pool keeps the desired number of healthy executors, replaces failed ones with backoff, and
// rotates instances make-before-break under the c* cap. Its read side (Healthy, Acquire,
// Release) is lock-free, because the gateway calls it on every request.
type Pool struct {
	cfg     PoolConfig
	drivers map[string]Driver
	health  *HealthChecker
	log     *slog.Logger
	bus     *bus.Bus
	sem     chan struct{}
	now     func() time.Time

	healthy atomic.Pointer[[]*Instance] // immutable snapshot
	live    sync.Map                    // id -> *member: starting, healthy or draining

	mu          sync.Mutex
	members     map[string]*member // every instance the pool still owns, by ID
	filling     int                // replacement launches under way
	rotations   int                // rotations under way (each may add one instance for a while)
	fillBackoff time.Duration
	nextFill    time.Time
	closed      bool
	closeOnce   sync.Once
	closeDone   chan struct{} // closed when Close has stopped everything
	started     time.Time
	kick        chan struct{}
	runCtx      context.Context // ends when the pool closes
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	rateMu sync.Mutex
	done   []time.Time // completion times of recent reconfigurations

	stopMu    sync.Mutex
	unstopped []unstopped // instances whose Stop failed (engine down); retried each tick and on Close
}

// unstopped is an instance the pool has taken out of service but could not stop yet.
type unstopped struct {
	driver Driver
	inst   *Instance
}

type member struct {
	inst     *Instance
	spec     Spec
	driver   Driver
	state    State // guarded by Pool.mu
	busy     bool  // guarded by Pool.mu: a rotation or retirement owns it
	fails    int   // guarded by Pool.mu
	inflight atomic.Int64
	draining atomic.Bool
	drained  chan struct{} // signalled when inflight reaches 0 while draining
}

// MemberStatus is a snapshot of one instance for status displays.
type MemberStatus struct {
	Instance *Instance `json:"instance"`
	State    State     `json:"state"`
	InFlight int64     `json:"in_flight"`
	Age      time.Duration
}

// NewPool checks the configuration against the drivers and returns a pool that has not
// started anything yet. drivers maps Spec.Driver to a built driver.
func NewPool(cfg PoolConfig, drivers map[string]Driver, logger *slog.Logger, b *bus.Bus) (*Pool, error) {
	cfg.defaults()
	if len(cfg.Variants) == 0 {
		return nil, errors.New("executor: pool: no variants")
	}
	seen := map[string]bool{}
	for _, s := range cfg.Variants {
		if seen[s.Variant] {
			return nil, fmt.Errorf("executor: pool: variant %q twice", s.Variant)
		}
		seen[s.Variant] = true
		d, ok := drivers[s.Driver]
		if !ok {
			return nil, fmt.Errorf("executor: pool: variant %s: %w %q", s.Variant, ErrUnknownDriver, s.Driver)
		}
		if v, ok := d.(Validator); ok {
			if err := v.ValidateSpec(s); err != nil {
				return nil, fmt.Errorf("executor: pool: %w", err)
			}
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		cfg:       cfg,
		drivers:   drivers,
		health:    NewHealthChecker(cfg.HealthTimeout),
		log:       logger.With("component", "executor/pool"),
		bus:       b,
		sem:       make(chan struct{}, cfg.MaxConcurrent),
		now:       time.Now,
		members:   map[string]*member{},
		kick:      make(chan struct{}, 1),
		runCtx:    context.Background(),
		closeDone: make(chan struct{}),
	}
	empty := []*Instance{}
	p.healthy.Store(&empty)
	return p, nil
}

// Config returns the effective configuration (with defaults filled in).
func (p *Pool) Config() PoolConfig { return p.cfg }

// Healthy returns the instances in service. The slice is shared and must not be modified;
// calling it costs one atomic load.
func (p *Pool) Healthy() []*Instance { return *p.healthy.Load() }

// Acquire registers a request about to be sent to instance id. It returns false when the
// instance is no longer in service (the caller picks another one); every true must be paired
// with Release.
func (p *Pool) Acquire(id string) bool {
	v, ok := p.live.Load(id)
	if !ok {
		return false
	}
	m := v.(*member)
	m.inflight.Add(1)
	if m.draining.Load() {
		p.release(m)
		return false
	}
	return true
}

// Hold registers a request on instance id even if it is draining, for callers that cannot
// pick another executor (the voting gateway has already chosen its k). A draining instance is
// then stopped only after the request is released (or the drain timeout). Pair with Release.
// It does nothing for an instance that is already gone.
func (p *Pool) Hold(id string) {
	if v, ok := p.live.Load(id); ok {
		v.(*member).inflight.Add(1)
	}
}

// Release ends a request registered with Acquire or Hold.
func (p *Pool) Release(id string) {
	if v, ok := p.live.Load(id); ok {
		p.release(v.(*member))
	}
}

func (p *Pool) release(m *member) {
	if m.inflight.Add(-1) == 0 && m.draining.Load() {
		select {
		case m.drained <- struct{}{}:
		default:
		}
	}
}

// CStar is the maximum number of concurrent reconfigurations.
func (p *Pool) CStar() int { return p.cfg.MaxConcurrent }

// RotationRate is the measured reconfiguration rate: rotations and replacements completed per
// second over the last RateWindow (or since Start, if shorter).
func (p *Pool) RotationRate() float64 {
	now := p.now()
	p.rateMu.Lock()
	defer p.rateMu.Unlock()
	p.pruneRate(now)
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	win := p.cfg.RateWindow
	if !started.IsZero() {
		if up := now.Sub(started); up < win {
			win = up
		}
	}
	if win < time.Second {
		win = time.Second
	}
	return float64(len(p.done)) / win.Seconds()
}

func (p *Pool) pruneRate(now time.Time) {
	cut := now.Add(-p.cfg.RateWindow)
	i := 0
	for i < len(p.done) && p.done[i].Before(cut) {
		i++
	}
	p.done = p.done[i:]
}

func (p *Pool) countReconfiguration() {
	now := p.now()
	p.rateMu.Lock()
	p.done = append(p.done, now)
	p.pruneRate(now)
	p.rateMu.Unlock()
}

// Members returns a snapshot of every instance the pool owns (any state), oldest first.
func (p *Pool) Members() []MemberStatus {
	now := p.now()
	p.mu.Lock()
	out := make([]MemberStatus, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, MemberStatus{Instance: m.inst, State: m.state, InFlight: m.inflight.Load(), Age: now.Sub(m.inst.Started)})
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Instance.Started.Equal(out[j].Instance.Started) {
			return out[i].Instance.Started.Before(out[j].Instance.Started)
		}
		return out[i].Instance.ID < out[j].Instance.ID
	})
	return out
}

// Start stops whatever an earlier agent left behind, starts Desired executors and returns once
// at least Min are healthy (or fails). The pool then supervises them until ctx ends or Close.
func (p *Pool) Start(ctx context.Context) error {
	if !p.cfg.SharesDrivers { // else the first pool over these drivers cleaned up
		if err := p.cleanupLeftovers(ctx); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if p.closed || p.cancel != nil {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	p.started = p.now()
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	p.runCtx = rctx
	p.mu.Unlock()

	specs := p.initialSpecs()
	type result struct {
		m   *member
		err error
	}
	res := make(chan result, len(specs))
	for _, s := range specs {
		go func() {
			m, err := p.launch(rctx, s, "initial")
			res <- result{m, err}
		}()
	}
	var errs []error
	healthy := 0
	for range specs {
		r := <-res
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		healthy++
	}
	if healthy < p.cfg.Min {
		p.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("executor: pool: %d of %d executors healthy, need %d: %w", healthy, len(specs), p.cfg.Min, errors.Join(errs...))
	}
	for _, err := range errs {
		p.log.Warn("initial executor failed; replacing", "err", err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go p.supervise(rctx)
	context.AfterFunc(ctx, func() { p.Close(context.Background()) })
	return nil
}

// cleanupLeftovers stops every instance the drivers still know about from an earlier run.
func (p *Pool) cleanupLeftovers(ctx context.Context) error {
	for id, d := range p.drivers {
		left, err := d.List(ctx)
		if err != nil {
			return fmt.Errorf("executor: pool: list %s leftovers: %w", id, err)
		}
		for _, inst := range left {
			p.log.Warn("stopping leftover executor", "id", inst.ID, "driver", id, "handle", inst.Handle)
			if err := d.Stop(ctx, inst); err != nil {
				return fmt.Errorf("executor: pool: stop leftover %s: %w", inst.ID, err)
			}
			p.publish(EventTransition, inst.ID, map[string]any{"to": string(StateStopped), "reason": "leftover", "variant": inst.Variant})
		}
		if c, ok := d.(Cleaner); ok {
			if err := c.Cleanup(ctx); err != nil {
				return fmt.Errorf("executor: pool: cleanup %s: %w", id, err)
			}
		}
	}
	return nil
}

// initialSpecs spreads Desired instances over the variants: in order without redraw, in a
// random order with redraw.
func (p *Pool) initialSpecs() []Spec {
	vs := slices.Clone(p.cfg.Variants)
	if p.cfg.Redraw {
		rand.Shuffle(len(vs), func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
	}
	out := make([]Spec, p.cfg.Desired)
	for i := range out {
		out[i] = vs[i%len(vs)]
	}
	return out
}

// pickSpec chooses the variant that replaces old: old itself without redraw, otherwise a
// random variant not in service elsewhere, other than old's when possible (any variant when
// all are in service).
func (p *Pool) pickSpec(old Spec, replacing string) Spec {
	if !p.cfg.Redraw || len(p.cfg.Variants) == 1 {
		return old
	}
	p.mu.Lock()
	inUse := map[string]bool{}
	for id, m := range p.members {
		if id != replacing && (m.state == StateHealthy || m.state == StateStarting) {
			inUse[m.spec.Variant] = true
		}
	}
	p.mu.Unlock()
	// Prefer a variant that is not in service and differs from the outgoing one, so the set of
	// running implementations changes with every rotation when there are spare variants.
	var free, other []Spec
	for _, s := range p.cfg.Variants {
		if !inUse[s.Variant] {
			free = append(free, s)
			if s.Variant != old.Variant {
				other = append(other, s)
			}
		}
	}
	switch {
	case len(other) > 0:
		free = other
	case len(free) == 0:
		free = p.cfg.Variants
	}
	return free[rand.IntN(len(free))]
}

// launch starts one instance of spec and waits until it is healthy; on success it is in
// service. On failure everything it started is stopped again.
func (p *Pool) launch(ctx context.Context, spec Spec, reason string) (*member, error) {
	d := p.drivers[spec.Driver]
	inst, err := d.Start(ctx, spec)
	if err != nil {
		p.publish(EventFailed, spec.Variant, map[string]any{"variant": spec.Variant, "reason": reason, "err": err.Error()})
		return nil, err
	}
	m := &member{inst: inst, spec: spec, driver: d, state: StateStarting, drained: make(chan struct{}, 1)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = d.Stop(context.WithoutCancel(ctx), inst)
		return nil, ErrPoolClosed
	}
	p.members[inst.ID] = m
	p.mu.Unlock()
	p.transition(m, "", StateStarting, reason)
	var exited <-chan struct{}
	if w, ok := d.(ExitWatcher); ok {
		exited = w.Exited(inst)
	}
	if err := p.waitHealthy(ctx, m, exited); err != nil {
		p.mu.Lock()
		m.busy = true
		quarantined := m.state == StateQuarantined
		p.mu.Unlock()
		if quarantined {
			return nil, fmt.Errorf("executor: start %s: quarantined while starting", spec.Variant)
		}
		p.setState(m, StateFailed, err.Error())
		p.stopMember(context.WithoutCancel(ctx), m, false)
		return nil, fmt.Errorf("executor: start %s: %w", spec.Variant, err)
	}
	p.mu.Lock()
	if m.state != StateStarting { // quarantined (or the pool closed) while it was starting
		st := m.state
		p.mu.Unlock()
		return nil, fmt.Errorf("executor: start %s: %s while starting", spec.Variant, st)
	}
	m.busy = false
	p.mu.Unlock()
	p.live.Store(inst.ID, m)
	p.setState(m, StateHealthy, reason)
	if exited != nil {
		p.mu.Lock()
		rctx, closed := p.runCtx, p.closed
		if !closed {
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if !closed {
			go p.watchExit(rctx, m, exited)
		}
	}
	return m, nil
}

// waitHealthy probes a new instance quickly until it answers, exits, or StartTimeout passes.
func (p *Pool) waitHealthy(ctx context.Context, m *member, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	delay := 5 * time.Millisecond
	var last error
	for {
		if last = p.health.Probe(ctx, m.inst, m.spec); last == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-exited:
			t.Stop()
			return errors.New("exited before becoming healthy")
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not healthy after %v: %w", p.cfg.StartTimeout, last)
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

func (p *Pool) watchExit(ctx context.Context, m *member, exited <-chan struct{}) {
	defer p.wg.Done()
	select {
	case <-exited:
	case <-ctx.Done():
		return
	}
	p.mu.Lock()
	failed := !m.busy && (m.state == StateHealthy || m.state == StateStarting)
	if failed {
		m.busy = true
	}
	p.mu.Unlock()
	if failed {
		p.fail(m, "process exited")
	}
}

// fail takes a broken instance out of service at once, stops it and asks for a replacement.
// The caller has set m.busy.
func (p *Pool) fail(m *member, why string) {
	p.log.Warn("executor failed", "id", m.inst.ID, "variant", m.spec.Variant, "reason", why)
	m.draining.Store(true)
	p.setState(m, StateFailed, why)
	p.stopMember(context.Background(), m, false)
	p.poke()
}

func (p *Pool) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// setState changes m's state, refreshes the healthy snapshot and publishes the transition.
func (p *Pool) setState(m *member, to State, reason string) {
	p.mu.Lock()
	from := m.state
	m.state = to
	p.refreshLocked()
	p.mu.Unlock()
	p.transition(m, from, to, reason)
}

func (p *Pool) transition(m *member, from, to State, reason string) {
	attrs := map[string]any{"from": string(from), "to": string(to), "variant": m.spec.Variant, "address": m.inst.Address}
	if reason != "" {
		attrs["reason"] = reason
	}
	p.publish(EventTransition, m.inst.ID, attrs)
	switch to {
	case StateHealthy:
		p.publish(EventHealthy, m.inst.ID, attrs)
	case StateFailed:
		p.publish(EventFailed, m.inst.ID, attrs)
	}
}

func (p *Pool) publish(kind, subject string, attrs map[string]any) {
	p.bus.Publish(bus.Event{Kind: kind, Source: "executor/pool", Subject: subject, Attrs: attrs})
}

// refreshLocked rebuilds the immutable healthy snapshot; p.mu is held.
func (p *Pool) refreshLocked() {
	list := make([]*Instance, 0, len(p.members))
	for _, m := range p.members {
		if m.state == StateHealthy {
			list = append(list, m.inst)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Started.Before(list[j].Started) })
	p.healthy.Store(&list)
}

// drainSettle is how long a retired instance stays up after it left the healthy snapshot
// before its in-flight count is trusted: a voting front that read the snapshot just before
// holds the instance (Hold) a moment later, and would otherwise send to a stopped executor.
const drainSettle = 250 * time.Millisecond

// stopMember drains (when drain is set) and stops m, then forgets it.
func (p *Pool) stopMember(ctx context.Context, m *member, drain bool) {
	m.draining.Store(true)
	if drain {
		t := time.NewTimer(p.cfg.DrainTimeout)
		settle := time.NewTimer(min(drainSettle, p.cfg.DrainTimeout))
	wait:
		for settling := true; settling || m.inflight.Load() > 0; {
			select {
			case <-settle.C:
				settling = false
			case <-m.drained: // the count reached zero; look again
			case <-t.C:
				p.log.Warn("drain timeout; stopping with requests in flight", "id", m.inst.ID, "in_flight", m.inflight.Load())
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		t.Stop()
		settle.Stop()
	}
	if err := m.driver.Stop(ctx, m.inst); err != nil {
		p.log.Error("stop failed; will retry", "id", m.inst.ID, "err", err)
		p.stopMu.Lock()
		p.unstopped = append(p.unstopped, unstopped{m.driver, m.inst})
		p.stopMu.Unlock()
	}
	p.live.Delete(m.inst.ID)
	p.mu.Lock()
	delete(p.members, m.inst.ID)
	from := m.state
	m.state = StateStopped
	p.refreshLocked()
	p.mu.Unlock()
	p.transition(m, from, StateStopped, "")
}

// reasonKey carries why a rotation was asked for (schedule, api, engine, ...).
type reasonKey struct{}

// WithReason annotates ctx with why a rotation is requested; it shows up in events.
func WithReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, reasonKey{}, reason)
}

// Reason is why the action on ctx was asked for (WithReason), "request" when unsaid; drivers
// record it (the kubernetes driver labels a quarantined pod with it).
func Reason(ctx context.Context) string { return reasonOf(ctx) }

func reasonOf(ctx context.Context) string {
	if r, ok := ctx.Value(reasonKey{}).(string); ok {
		return r
	}
	return "request"
}

// acquireSlot waits for one of the c* reconfiguration slots.
func (p *Pool) acquireSlot(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pool) releaseSlot() { <-p.sem }

// Rotate replaces instance id make-before-break: it starts a replacement (a redrawn variant
// when Redraw is on) on a fresh port, waits until it is healthy and in service, then takes the
// old instance out of service, waits for its in-flight requests and stops it. It waits for a
// c* slot first. When the replacement fails, the old instance stays in service.
func (p *Pool) Rotate(ctx context.Context, id string) error {
	if err := p.acquireSlot(ctx); err != nil {
		return fmt.Errorf("executor: rotate %s: %w", id, err)
	}
	defer p.releaseSlot()
	t0 := p.now()
	p.mu.Lock()
	m := p.members[id]
	switch {
	case p.closed:
		p.mu.Unlock()
		return ErrPoolClosed
	case m == nil || m.state != StateHealthy:
		p.mu.Unlock()
		return fmt.Errorf("executor: rotate %s: %w", id, ErrNoInstance)
	case m.busy:
		p.mu.Unlock()
		return fmt.Errorf("executor: rotate %s: %w", id, ErrBusy)
	}
	m.busy = true
	p.rotations++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.rotations--
		p.mu.Unlock()
	}()
	reason := reasonOf(ctx)
	spec := p.pickSpec(m.spec, id)
	nm, err := p.launch(ctx, spec, "rotation")
	if err != nil {
		p.mu.Lock()
		m.busy = false
		p.mu.Unlock()
		p.publish(EventRotationFailed, id, map[string]any{"variant": m.spec.Variant, "next_variant": spec.Variant, "reason": reason, "err": err.Error()})
		p.poke() // m may have died meanwhile
		return fmt.Errorf("executor: rotate %s: %w", id, err)
	}
	p.mu.Lock()
	quarantined := m.state == StateQuarantined // quarantined while its replacement started
	p.mu.Unlock()
	if !quarantined {
		p.setState(m, StateDraining, "rotation")
		p.stopMember(context.WithoutCancel(ctx), m, true)
	}
	d := p.now().Sub(t0)
	p.countReconfiguration()
	p.log.Info("rotated", "old", id, "new", nm.inst.ID, "variant", nm.spec.Variant, "addr", nm.inst.Address, "took", d, "reason", reason)
	p.publish(EventRotation, id, map[string]any{
		"old": id, "new": nm.inst.ID, "old_variant": m.spec.Variant, "new_variant": nm.spec.Variant,
		"new_address": nm.inst.Address, "duration_s": d.Seconds(), "reason": reason,
	})
	return nil
}

// RotateAll rotates every instance in service, at most c* at a time, and returns the joined
// errors.
func (p *Pool) RotateAll(ctx context.Context) error {
	insts := p.Healthy()
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for i, inst := range insts {
		wg.Go(func() { errs[i] = p.Rotate(ctx, inst.ID) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Quarantine takes instance id out of service at once, freezes it through its driver (which
// keeps its state for forensics) and lets the supervisor start a replacement.
func (p *Pool) Quarantine(ctx context.Context, id string) error {
	p.mu.Lock()
	m := p.members[id]
	if m == nil || p.closed || (m.state != StateHealthy && m.state != StateStarting && m.state != StateDraining) {
		p.mu.Unlock()
		return fmt.Errorf("executor: quarantine %s: %w", id, ErrNoInstance)
	}
	m.busy = true
	p.mu.Unlock()
	m.draining.Store(true)
	p.live.Delete(id)
	p.setState(m, StateQuarantined, reasonOf(ctx))
	if err := m.driver.Quarantine(ctx, m.inst); err != nil {
		p.log.Error("quarantine failed; stopping instead", "id", id, "err", err)
		p.stopMember(context.WithoutCancel(ctx), m, false)
		p.poke()
		return fmt.Errorf("executor: quarantine %s: %w", id, err)
	}
	p.poke()
	return nil
}

// supervise probes health, replaces failed instances and keeps Desired in service.
func (p *Pool) supervise(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.probeAll(ctx)
			p.retryStops(ctx)
		case <-p.kick:
		}
		p.fill(ctx)
	}
}

func (p *Pool) probeAll(ctx context.Context) {
	ms := p.membersWhere(func(m *member) bool { return m.state == StateHealthy && !m.busy })
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			err := p.health.Probe(ctx, m.inst, m.spec)
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			if err == nil {
				m.fails = 0
				p.mu.Unlock()
				return
			}
			m.fails++
			failed := m.fails >= p.cfg.HealthFailures && !m.busy && m.state == StateHealthy
			if failed {
				m.busy = true
			}
			n := m.fails
			p.mu.Unlock()
			p.log.Warn("health check failed", "id", m.inst.ID, "consecutive", n, "err", err)
			if failed {
				p.fail(m, fmt.Sprintf("%d consecutive health check failures: %v", n, err))
			}
		})
	}
	wg.Wait()
}

// membersWhere returns the members for which keep (called under p.mu) is true.
func (p *Pool) membersWhere(keep func(*member) bool) []*member {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ms []*member
	for _, m := range p.members {
		if keep(m) {
			ms = append(ms, m)
		}
	}
	return ms
}

// fill starts replacements while fewer than Desired instances are starting or in service,
// one launch per missing instance, with exponential backoff after failures.
func (p *Pool) fill(ctx context.Context) {
	p.mu.Lock()
	if p.closed || p.now().Before(p.nextFill) {
		p.mu.Unlock()
		return
	}
	live := 0
	var oldest *member
	for _, m := range p.members {
		if m.state == StateHealthy || m.state == StateStarting {
			live++
		}
		if m.state == StateHealthy && !m.busy && (oldest == nil || m.inst.Started.Before(oldest.inst.Started)) {
			oldest = m
		}
	}
	missing := max(p.cfg.Desired-live-p.filling, 0)
	p.filling += missing
	p.wg.Add(missing)
	// More instances than wanted and no launch or rotation explains it (a replacement raced
	// with a rotation): retire the oldest, draining it like a rotation would.
	trim := p.filling == 0 && live > p.cfg.Desired+p.rotations && oldest != nil
	if trim {
		oldest.busy = true
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if trim {
		go func() {
			defer p.wg.Done()
			p.setState(oldest, StateDraining, "excess")
			p.stopMember(ctx, oldest, true)
		}()
	}
	for range missing {
		go func() {
			defer p.wg.Done()
			err := p.replaceOne(ctx)
			p.mu.Lock()
			p.filling--
			if err != nil {
				p.fillBackoff = min(max(2*p.fillBackoff, p.cfg.BackoffMin), p.cfg.BackoffMax)
				p.nextFill = p.now().Add(p.fillBackoff)
			} else {
				p.fillBackoff = 0
			}
			backoff := p.fillBackoff
			p.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				p.log.Warn("replacement failed; backing off", "err", err, "backoff", backoff)
				time.AfterFunc(backoff, p.poke)
			}
		}()
	}
}

func (p *Pool) replaceOne(ctx context.Context) error {
	if err := p.acquireSlot(ctx); err != nil {
		return err
	}
	defer p.releaseSlot()
	spec := p.pickSpec(p.cfg.Variants[rand.IntN(len(p.cfg.Variants))], "")
	if !p.cfg.Redraw {
		spec = p.leastUsedVariant()
	}
	if _, err := p.launch(ctx, spec, "replacement"); err != nil {
		return err
	}
	p.countReconfiguration()
	return nil
}

// leastUsedVariant is the configured variant with the fewest instances starting or in
// service (first in configuration order on ties), so that without redraw a replacement
// restores the configured mix.
func (p *Pool) leastUsedVariant() Spec {
	p.mu.Lock()
	defer p.mu.Unlock()
	count := map[string]int{}
	for _, m := range p.members {
		if m.state == StateHealthy || m.state == StateStarting {
			count[m.spec.Variant]++
		}
	}
	best := p.cfg.Variants[0]
	for _, s := range p.cfg.Variants[1:] {
		if count[s.Variant] < count[best.Variant] {
			best = s
		}
	}
	return best
}

// Close stops supervising and stops every instance, quarantined ones included (their work
// directories are kept by the driver), then closes each driver that has a Close method
// (io.Closer: what a driver set up on the machine for all its executors, such as the docker
// driver's kernel audit rules). It is safe to call more than once and concurrently; every
// call returns once everything is stopped.
func (p *Pool) Close(ctx context.Context) {
	p.closeOnce.Do(func() {
		p.close(ctx)
		close(p.closeDone)
	})
	<-p.closeDone
}

func (p *Pool) close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
	var wg sync.WaitGroup
	for _, m := range p.membersWhere(func(*member) bool { return true }) {
		wg.Go(func() { p.stopMember(ctx, m, false) })
	}
	wg.Wait()
	p.retryStops(ctx)
	if p.cfg.SharesDrivers {
		return // the pool that owns the drivers closes them, once it has stopped too
	}
	for name, d := range p.drivers {
		if c, ok := d.(io.Closer); ok {
			if err := c.Close(); err != nil {
				p.log.Warn("closing the driver", "driver", name, "err", err)
			}
		}
	}
}

// retryStops tries again to stop instances whose Stop failed earlier (say the Docker engine
// was unreachable), so nothing taken out of service is left running once the driver answers.
func (p *Pool) retryStops(ctx context.Context) {
	p.stopMu.Lock()
	pending := p.unstopped
	p.unstopped = nil
	p.stopMu.Unlock()
	var failed []unstopped
	for _, u := range pending {
		if err := u.driver.Stop(ctx, u.inst); err != nil {
			failed = append(failed, u)
			continue
		}
		p.log.Info("stopped after retry", "id", u.inst.ID)
	}
	if len(failed) > 0 {
		p.stopMu.Lock()
		p.unstopped = append(p.unstopped, failed...)
		p.stopMu.Unlock()
	}
}
