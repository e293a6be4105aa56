package countermeasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// JournalFile is the journal's file name inside the data dir.
const JournalFile = "countermeasures.json"

// EventJournalCorrupt is published when the journal could not be read at start.
const EventJournalCorrupt = "countermeasure.journal_corrupt"

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// DataDir holds the journal (JournalFile). Empty means no journal: nothing survives
	// a restart (tests, dry runs).
	DataDir   string
	Actuators []Actuator
	Bus       *bus.Bus
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// JournalInterval is the least time between two journal writes (see persist.go);
	// 0 means DefaultJournalInterval, negative means write after every change.
	JournalInterval time.Duration
	// BlockableLoopback are single addresses of the never-blocked ranges that a block may
	// name exactly (config engine.blockable_loopback; the caller validated them): a one-host
	// demonstration's attacker.
	BlockableLoopback []netip.Addr
}

// Manager applies actions through actuators, remembers them in a journal, and reverts
// them when they expire or are retracted. All methods are safe for concurrent use;
// operations are serialized.
type Manager struct {
	mu        sync.Mutex
	actuators map[string]Actuator
	active    map[string]Action
	journal   *journal
	bus       *bus.Bus
	log       *slog.Logger
	now       func() time.Time
	blockable []netip.Addr
	wake      chan struct{}
	loadErr   error

	// Journal persistence (see persist.go): mutations bump gen and kick the writer, which
	// writes the whole state once per batch. saved is the last gen on disk; attempted the
	// last gen a write was tried for, saveErr that write's error. flushed is closed and
	// replaced after every attempt.
	gen           uint64
	saved         uint64
	attempted     uint64
	saveErr       error
	flushed       chan struct{}
	kick          chan struct{}
	flushNow      chan struct{} // Sync: write now, do not wait for the interval
	stop          chan struct{}
	interval      time.Duration
	writerOn      bool // the writer goroutine is running
	writerStarted bool
	writerEnd     chan struct{}
	closeOnce     sync.Once
}

// NewManager returns a manager; call Start before use.
func NewManager(o ManagerOptions) (*Manager, error) {
	m := &Manager{actuators: map[string]Actuator{}, active: map[string]Action{}, bus: o.Bus,
		log: o.Logger, now: o.Now, wake: make(chan struct{}, 1),
		flushed: make(chan struct{}), kick: make(chan struct{}, 1), flushNow: make(chan struct{}, 1),
		stop: make(chan struct{}), writerEnd: make(chan struct{}), interval: o.JournalInterval, blockable: o.BlockableLoopback}
	if m.interval == 0 {
		m.interval = DefaultJournalInterval
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "countermeasure")
	if m.now == nil {
		m.now = time.Now
	}
	for _, a := range o.Actuators {
		if a == nil {
			return nil, fmt.Errorf("countermeasure: nil actuator")
		}
		if _, dup := m.actuators[a.ID()]; dup {
			return nil, fmt.Errorf("countermeasure: actuator %q given twice", a.ID())
		}
		m.actuators[a.ID()] = a
	}
	if o.DataDir != "" {
		m.journal = &journal{dir: o.DataDir}
	}
	return m, nil
}

// Start loads the journal, reverts the actions that expired while the agent was down and
// re-applies the live ones (their remaining TTL is their original expiry), writes the
// journal back (synchronously) and starts the journal writer. A corrupt
// journal is not fatal: it is renamed to JournalFile+".bad", logged, published as
// EventJournalCorrupt, reported by LoadErr, and the manager starts empty. Start returns an
// error only when the data dir is unusable.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.journal == nil {
		return nil
	}
	actions, err := m.journal.load()
	if err != nil {
		if !errors.Is(err, ErrJournalCorrupt) {
			return err
		}
		m.loadErr = err
		m.log.Error("journal unreadable; starting empty", "err", err, "kept", m.journal.path()+".bad")
		m.publish(bus.Event{Kind: EventJournalCorrupt, Attrs: map[string]any{"err": err.Error()}})
	}
	now := m.now()
	for _, a := range actions {
		act, ok := m.actuators[a.Actuator]
		if !ok {
			m.log.Warn("journal names an actuator that is not configured; dropping action", "id", a.ID, "actuator", a.Actuator)
			continue
		}
		if !a.Expires.After(now) {
			if err := act.Revert(ctx, a); err != nil {
				m.log.Error("revert of expired action at start", "id", a.ID, "err", err)
				m.failed(a, "revert", err)
				m.active[a.ID] = a // retry on the next sweep
				continue
			}
			m.reverted(a, "expired")
			continue
		}
		if err := act.Apply(ctx, a); err != nil {
			m.log.Error("re-apply at start", "id", a.ID, "err", err)
			m.failed(a, "apply", err)
			continue
		}
		m.active[a.ID] = a
		m.applied(a, "restored")
	}
	m.gen++
	m.writeLocked()
	if !m.writerStarted {
		m.writerStarted, m.writerOn = true, true
		go m.writer()
	}
	m.poke()
	return nil
}

// LoadErr is the journal error Start recovered from, or nil.
func (m *Manager) LoadErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loadErr
}

// ActionID is the ID the Manager gives an action whose ID is empty.
func ActionID(actuator, source string, t Target) string {
	return actuator + "/" + source + "/" + t.String()
}

// Apply applies a through its actuator and journals it. It returns (and publishes
// EventApplied) as soon as the actuator has made the action effective; the journal is
// written by a background writer (see Sync), so a crash within the write window may lose
// the action from the journal, never from the actuator. Applying an action whose ID is
// already active extends it ("extended", or "refreshed" when the expiry did not grow): the
// later expiry wins, the actuator is asked to apply again
// (refreshing e.g. an nftables timeout), and no second action is recorded. It returns the
// action as recorded.
func (m *Manager) Apply(ctx context.Context, a Action) (Action, error) {
	if a.Kind == "" {
		a.Kind = KindBlock
	}
	if a.Target.Prefix.IsValid() {
		a.Target.Prefix = PrefixTarget(a.Target.Prefix).Prefix // masked, IPv4-mapped unmapped
	}
	if a.ID == "" {
		a.ID = ActionID(a.Actuator, a.Source, a.Target)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if err := checkAction(a, now, m.blockable); err != nil {
		return Action{}, err
	}
	act, ok := m.actuators[a.Actuator]
	if !ok {
		return Action{}, fmt.Errorf("%w: %q", ErrUnknownActuator, a.Actuator)
	}
	a.Applied = now
	event := "new"
	if old, ok := m.active[a.ID]; ok {
		event = "extended"
		a.Applied = old.Applied
		if !a.Expires.After(old.Expires) {
			event = "refreshed" // the same or an earlier expiry: the later one stays
			a.Expires = old.Expires
		}
	}
	if err := act.Apply(ctx, a); err != nil {
		m.failed(a, "apply", err)
		return Action{}, fmt.Errorf("countermeasure: apply %s: %w", a.ID, err)
	}
	m.active[a.ID] = a
	m.saveLocked()
	m.applied(a, event)
	m.poke()
	return a, nil
}

func checkAction(a Action, now time.Time, blockable []netip.Addr) error {
	switch {
	case a.Actuator == "":
		return fmt.Errorf("%w: %s: no actuator", ErrInvalidAction, a.ID)
	case a.Kind != KindBlock && a.Kind != KindVigilance && a.Kind != KindRedirect:
		return fmt.Errorf("%w: %s: kind %q", ErrInvalidAction, a.ID, a.Kind)
	case a.Kind == KindRedirect && !(a.Target.IsPrefix() && a.Target.Prefix.IsSingleIP()):
		return fmt.Errorf("%w: %s: a redirect names one address, got %s", ErrInvalidAction, a.ID, a.Target)
	case a.Kind == KindBlock && a.Target.IsZero():
		return fmt.Errorf("%w: %s: block without a target", ErrInvalidAction, a.ID)
	case a.Target.Prefix.IsValid() && a.Target.Port != 0:
		return fmt.Errorf("%w: %s: target has both a prefix and a port", ErrInvalidAction, a.ID)
	case !a.Expires.After(now):
		return fmt.Errorf("%w: %s: expires %s, not in the future", ErrInvalidAction, a.ID, a.Expires.UTC().Format(time.RFC3339))
	case a.Level < 0:
		return fmt.Errorf("%w: %s: negative level", ErrInvalidAction, a.ID)
	}
	if a.Kind == KindBlock && a.Target.IsPrefix() {
		if p := a.Target.Prefix; p.IsSingleIP() && slices.Contains(blockable, p.Addr()) {
			return nil
		}
		for _, r := range neverBlock {
			if r.Overlaps(a.Target.Prefix) {
				return fmt.Errorf("%w: %s: refusing to block %s, it overlaps %s", ErrInvalidAction, a.ID, a.Target, r)
			}
		}
	}
	return nil
}

// neverBlock are ranges the Manager refuses to block whatever asks: the host's own
// loopback (the gateway reaches its executors there) and the unspecified addresses.
var neverBlock = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::/128"),
}

// Revert reverts the active action id now ("manual"); unknown ids are not an error.
func (m *Manager) Revert(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.active[id]
	if !ok {
		return nil
	}
	err := m.revertLocked(ctx, a, "manual")
	m.saveLocked()
	return err
}

// Retract reverts every active action whose Source is source (a retraction arrived) and
// returns how many were reverted.
func (m *Manager) Retract(ctx context.Context, source string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	n := 0
	for _, a := range m.sortedLocked() {
		if a.Source != source {
			continue
		}
		if err := m.revertLocked(ctx, a, "retracted"); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	m.saveLocked()
	return n, errors.Join(errs...)
}

// RevertExpired reverts every action whose expiry is not after the manager's clock and
// returns how many were reverted. Run calls it; tests call it with a fake clock.
func (m *Manager) RevertExpired(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var errs []error
	n := 0
	for _, a := range m.sortedLocked() {
		if a.Expires.After(now) {
			continue
		}
		if err := m.revertLocked(ctx, a, "expired"); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 || len(errs) > 0 {
		m.saveLocked()
	}
	return n, errors.Join(errs...)
}

// revertLocked reverts a; on failure the action stays active so the next sweep retries.
func (m *Manager) revertLocked(ctx context.Context, a Action, why string) error {
	act, ok := m.actuators[a.Actuator]
	if !ok {
		delete(m.active, a.ID)
		return nil
	}
	if err := act.Revert(ctx, a); err != nil {
		m.failed(a, "revert", err)
		return fmt.Errorf("countermeasure: revert %s: %w", a.ID, err)
	}
	delete(m.active, a.ID)
	m.reverted(a, why)
	return nil
}

// Active returns the active actions sorted by ID.
func (m *Manager) Active() []Action {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sortedLocked()
}

func (m *Manager) sortedLocked() []Action {
	out := make([]Action, 0, len(m.active))
	for _, a := range m.active {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// NextExpiry is the earliest expiry among active actions (zero when none).
func (m *Manager) NextExpiry() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	for _, a := range m.active {
		if next.IsZero() || a.Expires.Before(next) {
			next = a.Expires
		}
	}
	return next
}

// Run reverts actions as they expire until ctx is done, then closes the manager (Close:
// the journal is flushed). Failed reverts are retried every retry interval (one second).
func (m *Manager) Run(ctx context.Context) error {
	const retry = time.Second
	defer m.Close()
	for {
		var timer *time.Timer
		var fire <-chan time.Time
		if next := m.NextExpiry(); !next.IsZero() {
			d := next.Sub(m.now())
			if d < 0 {
				d = 0
			}
			timer = time.NewTimer(d)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-m.wake:
		case <-fire:
			if _, err := m.RevertExpired(ctx); err != nil {
				m.log.Error("revert expired", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(retry):
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) publish(e bus.Event) {
	e.Source = "countermeasure"
	m.bus.Publish(e)
}

func attrs(a Action) map[string]any {
	return map[string]any{"id": a.ID, "actuator": a.Actuator, "kind": string(a.Kind),
		"target": a.Target.String(), "source": a.Source, "reason": a.Reason, "expires": a.Expires, "level": a.Level}
}

func (m *Manager) applied(a Action, how string) {
	m.log.Info("applied", "id", a.ID, "target", a.Target.String(), "expires", a.Expires, "how", how)
	at := attrs(a)
	at["how"] = how
	m.publish(bus.Event{Kind: EventApplied, Subject: a.ID, Attrs: at})
}

func (m *Manager) reverted(a Action, why string) {
	m.log.Info("reverted", "id", a.ID, "target", a.Target.String(), "why", why)
	at := attrs(a)
	at["why"] = why
	m.publish(bus.Event{Kind: EventReverted, Subject: a.ID, Attrs: at})
}

func (m *Manager) failed(a Action, op string, err error) {
	at := attrs(a)
	at["op"] = op
	at["err"] = err.Error()
	m.publish(bus.Event{Kind: EventFailed, Subject: a.ID, Attrs: at})
}
