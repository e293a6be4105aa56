package sensor

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Source states reported by the Supervisor.
const (
	StateRunning    = "running"
	StateRestarting = "restarting" // failed; waiting for its backoff to pass
	StateStopped    = "stopped"
)

// Backoff bounds between restarts of a failing source: the first wait is Min, each further
// failure doubles it up to Max, and a source that ran for Reset without failing starts
// again from Min.
type Backoff struct {
	Min, Max, Reset time.Duration
}

// DefaultBackoff is 200 ms doubling to 30 s, reset after a minute of running.
var DefaultBackoff = Backoff{Min: 200 * time.Millisecond, Max: 30 * time.Second, Reset: time.Minute}

// State is what the Supervisor knows about one source.
type State struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
}

// Supervisor runs sources, owns the channel they write to, and restarts failed ones.
type Supervisor struct {
	out     chan Event
	sources []Source
	backoff Backoff
	log     *slog.Logger

	mu     sync.Mutex
	states []State
	notify func(State)
}

// Notify sets f to be called with a source's new state on every change (from the source's
// goroutine; f must not block). Call it before Run.
func (s *Supervisor) Notify(f func(State)) { s.notify = f }

// NewSupervisor returns a supervisor for sources writing to a channel with room for buf
// events. A zero backoff means DefaultBackoff.
func NewSupervisor(sources []Source, buf int, b Backoff, log *slog.Logger) *Supervisor {
	if b == (Backoff{}) {
		b = DefaultBackoff
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if buf < 1 {
		buf = 1
	}
	s := &Supervisor{out: make(chan Event, buf), sources: sources, backoff: b,
		log: log.With("component", "sensor"), states: make([]State, len(sources))}
	for i, src := range sources {
		s.states[i] = State{Name: src.Name(), State: StateStopped}
	}
	return s
}

// Events is the channel every source writes to; it is closed when Run returns.
func (s *Supervisor) Events() <-chan Event { return s.out }

// States returns every source's state, in the order given.
func (s *Supervisor) States() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]State(nil), s.states...)
}

// Run runs every source until ctx is done, restarting each on failure, then closes Events.
func (s *Supervisor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, src := range s.sources {
		wg.Add(1)
		go func() { defer wg.Done(); s.keep(ctx, i, src) }()
	}
	wg.Wait()
	close(s.out)
}

func (s *Supervisor) keep(ctx context.Context, i int, src Source) {
	wait := s.backoff.Min
	for {
		s.set(i, StateRunning, nil, false)
		start := time.Now()
		err := runSafe(ctx, src, s.out)
		if ctx.Err() != nil {
			s.set(i, StateStopped, nil, false)
			return
		}
		if err == nil {
			err = ErrStopped
		}
		if time.Since(start) >= s.backoff.Reset {
			wait = s.backoff.Min
		}
		s.log.Error("source failed; restarting", "source", src.Name(), "err", err, "in", wait)
		s.set(i, StateRestarting, err, true)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.set(i, StateStopped, nil, false)
			return
		case <-t.C:
		}
		wait = min(2*wait, s.backoff.Max)
	}
}

// runSafe runs src, turning a panic into an error.
func runSafe(ctx context.Context, src Source, out chan<- Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sensor: %s panicked: %v\n%s", src.Name(), r, debug.Stack())
		}
	}()
	return src.Run(ctx, out)
}

func (s *Supervisor) set(i int, state string, err error, restart bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.states[i]
	st.State, st.Since = state, time.Now()
	if err != nil {
		st.LastError = err.Error()
	}
	if restart {
		st.Restarts++
	}
	if s.notify != nil {
		s.notify(*st)
	}
}
