package mtd

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proteus-defense/proteus/executor"
)

// Rotator is the part of the pool the scheduler drives.
type Rotator interface {
	Healthy() []*executor.Instance
	Rotate(ctx context.Context, id string) error
}

// Scheduler rotates the pool's instances when the policy says they are due. Each instance
// gets its own deadline, drawn when the scheduler first sees it, so rotations spread out
// instead of happening in lockstep.
type Scheduler struct {
	policy Policy // Run's own copy
	first  Policy
	// next is a policy SetPolicy handed in, taken up at the next tick; cur is the one in
	// effect (for Policy).
	next, cur atomic.Pointer[Policy]
	pool      Rotator
	log       *slog.Logger
	rng       *rand.Rand
	now       func() time.Time
	tick      time.Duration
}

// NewScheduler returns a scheduler for pool; seed makes the jitter reproducible (use a
// random seed in production).
func NewScheduler(p Policy, pool Rotator, logger *slog.Logger, seed uint64) *Scheduler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tick := 250 * time.Millisecond
	if p.EveryMin > 0 {
		tick = min(tick, max(p.EveryMin/20, 10*time.Millisecond))
	}
	return &Scheduler{policy: p, first: p, pool: pool, log: logger.With("component", "mtd"), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Now, tick: tick}
}

// SetPolicy replaces the policy from the next tick on (the agent's vigilance shortens the
// interval with Policy.Scaled and restores it): every instance's deadline is drawn again
// from its start under p, and one that is then already past is spread over the next
// EveryMin instead of all rotating at once. A scheduler whose first policy never rotates
// keeps never rotating.
func (s *Scheduler) SetPolicy(p Policy) { s.next.Store(&p) }

// Policy is the policy in effect: the first one, until Run has taken up one SetPolicy gave.
func (s *Scheduler) Policy() Policy {
	if p := s.cur.Load(); p != nil {
		return *p
	}
	return s.first
}

// redraw draws every known deadline again under the current policy.
func (s *Scheduler) redraw(deadline map[string]time.Time, busy map[string]bool, now time.Time) {
	started := map[string]time.Time{}
	for _, inst := range s.pool.Healthy() {
		started[inst.ID] = inst.Started
	}
	for id := range deadline {
		st, ok := started[id]
		if !ok || busy[id] {
			continue
		}
		due := s.policy.Deadline(st, s.rng)
		if !due.IsZero() && due.Before(now) && s.policy.EveryMin > 0 {
			due = now.Add(time.Duration(s.rng.Int64N(int64(s.policy.EveryMin) + 1)))
		}
		deadline[id] = due
	}
	s.log.Info("rotation schedule changed", "policy", s.policy.String())
}

// Run checks deadlines until ctx ends; rotations it started are waited for before it returns.
func (s *Scheduler) Run(ctx context.Context) {
	if !s.policy.Enabled() {
		s.log.Info("no rotation schedule; rotating on request only")
		<-ctx.Done()
		return
	}
	s.log.Info("rotation schedule", "policy", s.policy.String())
	var wg sync.WaitGroup
	defer wg.Wait()
	type result struct {
		id  string
		err error
	}
	results := make(chan result, 64)
	deadline := map[string]time.Time{}
	busy := map[string]bool{}
	failures := map[string]int{}
	nextCron := s.policy.NextCron(s.now())
	t := time.NewTicker(s.tick)
	defer t.Stop()
	rotate := func(id, reason string) {
		busy[id] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.pool.Rotate(executor.WithReason(ctx, reason), id)
			select {
			case results <- result{id, err}:
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			delete(busy, r.id)
			if r.err != nil && ctx.Err() == nil {
				// The old instance stays in service; try again after a growing pause.
				failures[r.id]++
				pause := min(time.Duration(failures[r.id])*time.Second, time.Minute)
				deadline[r.id] = s.now().Add(pause)
				s.log.Warn("scheduled rotation failed", "id", r.id, "err", r.err, "retry_in", pause)
			} else {
				delete(deadline, r.id)
				delete(failures, r.id)
			}
			continue
		case <-t.C:
		}
		now := s.now()
		if p := s.next.Swap(nil); p != nil {
			s.policy = *p
			s.cur.Store(p)
			s.redraw(deadline, busy, now)
		}
		healthy := s.pool.Healthy()
		seen := make(map[string]bool, len(healthy))
		cronDue := !nextCron.IsZero() && !now.Before(nextCron)
		if cronDue {
			nextCron = s.policy.NextCron(now)
		}
		for _, inst := range healthy {
			seen[inst.ID] = true
			if busy[inst.ID] {
				continue
			}
			if cronDue {
				rotate(inst.ID, "cron")
				continue
			}
			due, ok := deadline[inst.ID]
			if !ok {
				due = s.policy.Deadline(inst.Started, s.rng)
				deadline[inst.ID] = due
			}
			if !due.IsZero() && !now.Before(due) {
				reason := "interval"
				if s.policy.MaxLifetime > 0 && now.Sub(inst.Started) >= s.policy.MaxLifetime {
					reason = "max_lifetime"
				}
				rotate(inst.ID, reason)
			}
		}
		for id := range deadline {
			if !seen[id] && !busy[id] {
				delete(deadline, id)
				delete(failures, id)
			}
		}
	}
}
