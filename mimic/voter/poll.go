package voter

import (
	"context"
	"errors"
	"time"
)

// Answer is one executor's answer in a poll, or its failure.
type Answer[V any, K comparable] struct {
	Member  Member
	Value   V
	Key     K     // the equivalence class of the normalized answer: equal keys, equivalent answers
	Err     error // no usable answer: an availability dissent
	Elapsed time.Duration
}

// Round is a poll's answers once every executor has answered or failed.
type Round[V any, K comparable] struct {
	Answers []Answer[V, K] // successes and failures, in arrival order
	Winner  int            // index in Answers of the first answer of the deciding group, -1: no quorum
	Quorum  int
	Cut     bool // the client went away before the decision (ctx of Poll was cancelled)
}

// Ask asks one executor and returns its answer with its key; ctx bounds it.
type Ask[V any, K comparable] func(ctx context.Context, m Member) (V, K, error)

// PollOptions say when a poll is decided and how long its asks may take.
type PollOptions struct {
	Quorum  int           // equivalent answers that decide
	WaitAll bool          // decide only once every executor answered or failed
	Timeout time.Duration // bounds every ask, stragglers included
	// Stragglers, when set, is a semaphore of the rounds still waiting for executors after
	// their decision: a round that finds it full cancels its asks at once (they fail with
	// context.Canceled, availability dissents), so slow executors cannot pile up waiting asks.
	Stragglers chan struct{}
}

// Poll asks every executor of picked at once and returns as soon as o.Quorum answers share a
// key (the group of all that share it so far), or as soon as no key can reach the quorum any
// more (ok false), or when every executor has answered if o.WaitAll. The answers still on
// their way go on (see PollOptions.Stragglers), and done gets the whole Round once they are
// in (in another goroutine when Poll returned first), for Account. Cancelling ctx before the
// decision stops the asks.
func Poll[V any, K comparable](ctx context.Context, picked []Member, o PollOptions, ask Ask[V, K], done func(*Round[V, K])) (group []Answer[V, K], ok bool) {
	n, q := len(picked), o.Quorum
	ch := make(chan Answer[V, K], n)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.Timeout)
	stop := context.AfterFunc(ctx, cancel)
	for _, m := range picked {
		go func() {
			start := time.Now()
			v, k, err := ask(actx, m)
			ch <- Answer[V, K]{Member: m, Value: v, Key: k, Err: err, Elapsed: time.Since(start)}
		}()
	}
	var t Tally[V, K]
	t.Reset(n, q, o.WaitAll)
	r := &t.r
	for !t.decided {
		if decided, g, k := t.Add(<-ch); decided {
			group, ok = g, k
		}
	}
	r.Cut = !stop() && r.Winner < 0
	if len(r.Answers) == n {
		cancel()
		done(r)
		return group, ok
	}
	held := false
	if o.Stragglers != nil {
		select {
		case o.Stragglers <- struct{}{}:
			held = true
		default:
			cancel() // as many rounds already wait for stragglers: these count as unavailable
		}
	}
	got := len(r.Answers)
	snapshot := *r
	snapshot.Answers = append([]Answer[V, K](nil), r.Answers...)
	go func() {
		defer cancel()
		for range n - got {
			snapshot.Answers = append(snapshot.Answers, <-ch)
		}
		done(&snapshot)
		if held {
			<-o.Stragglers
		}
	}()
	return group, ok
}

// Tally decides a poll from its answers as they arrive, for an adapter that gathers them
// itself (without a goroutine per ask, as Poll has): the same rule as Poll's. It is not safe
// for concurrent use; the zero Tally must be Reset before use.
type Tally[V any, K comparable] struct {
	r       Round[V, K]
	group   []Answer[V, K] // where Add builds the deciding group, if set (GroupIn)
	n       int
	waitAll bool
	decided bool
}

// Reset readies t for a poll of n executors with quorum q (waitAll: see PollOptions.WaitAll).
// It keeps the capacity of the answers slice it had.
func (t *Tally[V, K]) Reset(n, q int, waitAll bool) {
	t.r = Round[V, K]{Answers: t.r.Answers[:0], Winner: -1, Quorum: q}
	if cap(t.r.Answers) < n {
		t.r.Answers = make([]Answer[V, K], 0, n)
	}
	t.n, t.waitAll, t.decided = n, waitAll, n == 0
}

// Add records one executor's answer or failure. decided is true for the one call that
// decides the poll: q answers share a key (group is every answer that shares it so far, ok
// true), or no key can reach the quorum any more (ok false), or, with waitAll, every
// executor has answered. Answers added after the decision are kept for the Round but change
// nothing of it; more than n answers are ignored.
func (t *Tally[V, K]) Add(a Answer[V, K]) (decided bool, group []Answer[V, K], ok bool) {
	r := &t.r
	if len(r.Answers) >= t.n {
		return false, nil, false
	}
	r.Answers = append(r.Answers, a)
	if t.decided {
		return false, nil, false
	}
	if a.Err == nil && r.Winner < 0 && r.count(a.Key) >= r.Quorum {
		r.Winner = r.first(a.Key)
	}
	switch {
	case len(r.Answers) == t.n:
	case t.waitAll:
		return false, nil, false
	case r.Winner >= 0:
	case r.lead()+(t.n-len(r.Answers)) >= r.Quorum:
		return false, nil, false // a group can still reach the quorum
	}
	t.decided = true
	if r.Winner < 0 {
		return true, nil, false
	}
	group = t.group[:0]
	for _, a := range r.Answers {
		if a.Err == nil && a.Key == r.Answers[r.Winner].Key {
			group = append(group, a)
		}
	}
	return true, group, true
}

// GroupIn has Add build the deciding group in buf (its capacity; a longer one is allocated)
// instead of a new slice, until the next GroupIn: the caller is done with a poll's group before
// it reuses buf.
func (t *Tally[V, K]) GroupIn(buf []Answer[V, K]) { t.group = buf[:0] }

// ResetIn is Reset for len(buf) executors, the answers kept in buf (its contents are
// overwritten): an adapter can keep them in the request's own struct.
func (t *Tally[V, K]) ResetIn(buf []Answer[V, K], q int, waitAll bool) {
	t.r.Answers = buf[:0]
	t.Reset(len(buf), q, waitAll)
}

// Decided says whether the poll is decided.
func (t *Tally[V, K]) Decided() bool { return t.decided }

// Complete says whether every executor has answered or failed.
func (t *Tally[V, K]) Complete() bool { return len(t.r.Answers) >= t.n }

// Round is the poll so far (the whole of it once Complete), for Account. It is t's own: the
// caller must not Reset t while using it.
func (t *Tally[V, K]) Round() *Round[V, K] { return &t.r }

func (r *Round[V, K]) count(k K) int {
	c := 0
	for _, a := range r.Answers {
		if a.Err == nil && a.Key == k {
			c++
		}
	}
	return c
}

func (r *Round[V, K]) first(k K) int {
	for i, a := range r.Answers {
		if a.Err == nil && a.Key == k {
			return i
		}
	}
	return -1
}

// lead is the size of the largest group so far.
func (r *Round[V, K]) lead() int {
	best := 0
	for _, a := range r.Answers {
		if a.Err == nil {
			best = max(best, r.count(a.Key))
		}
	}
	return best
}

// Group returns the indices in r.Answers of the answers equivalent to the winner's.
func (r *Round[V, K]) Group() []int {
	if r.Winner < 0 {
		return nil
	}
	var out []int
	for i, a := range r.Answers {
		if a.Err == nil && a.Key == r.Answers[r.Winner].Key {
			out = append(out, i)
		}
	}
	return out
}

// Report says how the adapter describes a round's outcomes in events.
type Report[V any, K comparable] struct {
	// Describe returns the request's event attributes (query, client, request ID...; each
	// event gets a copy with its own additions) and its log line attributes. It is called
	// only for a round that has an event to publish, at most once, so a round every executor
	// agreed on builds neither.
	Describe func() (attrs map[string]any, log []any)
	// Differs describes how a dissenting answer differs from the winner's, for its event's
	// "differs" attribute and log line.
	Differs func(a, win *Answer[V, K]) any
	// Extra, when set, adds its attributes to a content dissent's event (an excerpt...).
	Extra func(a, win *Answer[V, K], attrs map[string]any)
	// Vote describes one answer in a no-consensus event ("vote" attribute).
	Vote func(a *Answer[V, K]) any
	// Reachable says whether a failure means the executor could not be reached or did not
	// answer in time (what ejection counts); nil: every failure but a cancellation.
	Reachable func(err error) bool
}

// Account turns a finished round into trust, ejection, dissent and no-consensus events:
// every failure is an availability dissent (none when the client went away first), every
// answer outside the deciding group a content dissent, and no deciding group a no-consensus
// event with every vote.
func Account[V any, K comparable](c *Core, r *Round[V, K], rep Report[V, K], now time.Time) {
	if r.Cut {
		return
	}
	var base *eventBase // the request's attributes, taken at its first event: most rounds have none
	describe := func() *eventBase {
		if base == nil {
			base = new(eventBase)
			if rep.Describe != nil {
				base.attrs, base.log = rep.Describe()
			}
		}
		return base
	}
	unreachable := rep.Reachable
	if unreachable == nil {
		unreachable = func(err error) bool { return !errors.Is(err, context.Canceled) }
	}
	var win *Answer[V, K]
	if r.Winner >= 0 {
		win = &r.Answers[r.Winner]
	}
	for i := range r.Answers {
		a := &r.Answers[i]
		switch {
		case a.Err != nil:
			b := describe()
			c.Dissent(Dissent{Member: a.Member, Kind: DissentAvailability, Err: a.Err, Attrs: b.attrsCopy(), Log: func() []any { return b.logAttrs() }}, now)
			if unreachable(a.Err) {
				c.Reached(a.Member, a.Err, now)
			}
			continue
		case win == nil:
		case a.Key == win.Key:
			c.Agreed(a.Member, now)
		default:
			b := describe()
			at := b.attrsCopy()
			var d any = "answer"
			if rep.Differs != nil {
				d = rep.Differs(a, win)
			}
			at["differs"] = d
			if rep.Extra != nil {
				rep.Extra(a, win, at)
			}
			c.Dissent(Dissent{Member: a.Member, Kind: DissentContent, Attrs: at, Log: func() []any { return b.logAttrs("differs", d) }}, now)
		}
		c.Reached(a.Member, nil, now)
	}
	if win == nil {
		votes := make([]any, 0, len(r.Answers))
		for i := range r.Answers {
			a := &r.Answers[i]
			v := map[string]any{"executor": a.Member.ID, "variant": a.Member.Variant}
			if a.Err != nil {
				v["error"] = a.Err.Error()
			} else if rep.Vote != nil {
				v["vote"] = rep.Vote(a)
			}
			votes = append(votes, v)
		}
		b := describe()
		at := b.attrsCopy()
		at["quorum"], at["votes"] = r.Quorum, votes
		c.NoConsensus("", at, b.logAttrs("quorum", r.Quorum, "executors", len(r.Answers))...)
	}
}

// eventBase is a request's event attributes (Report.Describe), shared by its round's events.
type eventBase struct {
	attrs map[string]any
	log   []any
}

func (b *eventBase) attrsCopy() map[string]any {
	m := make(map[string]any, len(b.attrs)+8)
	for k, v := range b.attrs {
		m[k] = v
	}
	return m
}

func (b *eventBase) logAttrs(extra ...any) []any {
	return append(append([]any{}, b.log...), extra...)
}
