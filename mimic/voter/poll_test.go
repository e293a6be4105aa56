package voter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// answers maps an executor ID to its answer; "" is a failure, "slow:X" answers X once release
// is closed.
type script struct {
	answers map[string]string
	release chan struct{}
}

func (s *script) ask(ctx context.Context, m Member) (string, string, error) {
	a := s.answers[m.ID]
	if len(a) > 5 && a[:5] == "slow:" {
		select {
		case <-s.release:
			a = a[5:]
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
	if a == "" {
		return "", "", errors.New("refused")
	}
	return a, a, nil
}

func members(ids ...string) []Member {
	var out []Member
	for _, id := range ids {
		out = append(out, Member{ID: id, Variant: "v-" + id})
	}
	return out
}

func newTestCore(t *testing.T) (*Core, <-chan bus.Event) {
	t.Helper()
	b := bus.New()
	ch, cancel := b.Subscribe(64, nil)
	t.Cleanup(cancel)
	c, err := New(Options{Source: "test", Bus: b, RebuildThreshold: 0})
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

// poll runs one round and waits for its accounting.
func poll(t *testing.T, c *Core, s *script, picked []Member, q int) ([]Answer[string, string], bool, *Round[string, string]) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	var round *Round[string, string]
	group, ok := Poll(context.Background(), picked, PollOptions{Quorum: q, Timeout: time.Minute}, s.ask, func(r *Round[string, string]) {
		defer wg.Done()
		round = r
		Account(c, r, Report[string, string]{Describe: func() (map[string]any, []any) { return map[string]any{"query": "q"}, nil },
			Differs: func(a, w *Answer[string, string]) any { return a.Value + "!=" + w.Value }}, time.Now())
	})
	if s.release != nil {
		close(s.release)
	}
	wg.Wait()
	return group, ok, round
}

func kinds(ch <-chan bus.Event) map[string][]bus.Event {
	out := map[string][]bus.Event{}
	for {
		select {
		case e := <-ch:
			out[e.Kind] = append(out[e.Kind], e)
		default:
			return out
		}
	}
}

func TestPollMajorityWinsAndTheLiarIsReported(t *testing.T) {
	c, ch := newTestCore(t)
	// The liar answers last, after the decision: it is still reported.
	s := &script{answers: map[string]string{"a": "true", "b": "true", "c": "slow:forged"}, release: make(chan struct{})}
	group, ok, r := poll(t, c, s, members("a", "b", "c"), 2)
	if !ok || len(group) != 2 || group[0].Value != "true" || group[1].Value != "true" {
		t.Fatalf("deciding group %+v ok %v", group, ok)
	}
	if len(r.Answers) != 3 || len(r.Group()) != 2 {
		t.Fatalf("round: %d answers, group %v", len(r.Answers), r.Group())
	}
	ev := kinds(ch)
	d := ev[EventDissent]
	if len(d) != 1 || d[0].Subject != "c" || d[0].Attrs["differs"] != "forged!=true" || d[0].Attrs["query"] != "q" ||
		d[0].Attrs["kind"] != DissentContent || d[0].Source != "test" {
		t.Fatalf("dissent events: %+v", d)
	}
	if c.Trust().Score("c") != 0 || c.Trust().Score("a") != 1 {
		t.Errorf("trust c %v a %v", c.Trust().Score("c"), c.Trust().Score("a"))
	}
}

func TestPollNoQuorumAndFailures(t *testing.T) {
	c, ch := newTestCore(t)
	s := &script{answers: map[string]string{"a": "x", "b": "y", "c": ""}}
	if _, ok, r := poll(t, c, s, members("a", "b", "c"), 2); ok || r.Winner != -1 {
		t.Fatalf("a quorum of two out of x, y and a failure: %+v", r)
	}
	ev := kinds(ch)
	if n := ev[EventNoConsensus]; len(n) != 1 || len(n[0].Attrs["votes"].([]any)) != 3 || n[0].Attrs["quorum"] != 2 {
		t.Fatalf("no-consensus events: %+v", n)
	}
	d := ev[EventDissent]
	if len(d) != 1 || d[0].Subject != "c" || d[0].Attrs["kind"] != DissentAvailability || d[0].Attrs["error"] != "refused" {
		t.Fatalf("dissent events: %+v", d)
	}
}

func TestPollStopsWhenNoGroupCanWin(t *testing.T) {
	c, _ := newTestCore(t)
	// a and b disagree; c is slow: with a quorum of 3 no group can win, so Poll returns
	// before c answers, and the accounting comes once it has.
	s := &script{answers: map[string]string{"a": "x", "b": "y", "c": "slow:x"}, release: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	_, ok := Poll(context.Background(), members("a", "b", "c"), PollOptions{Quorum: 3, Timeout: time.Minute}, s.ask, func(r *Round[string, string]) {
		defer wg.Done()
		if len(r.Answers) != 3 {
			t.Errorf("accounted %d answers", len(r.Answers))
		}
		Account(c, r, Report[string, string]{}, time.Now())
	})
	if ok {
		t.Fatal("decided")
	}
	close(s.release)
	wg.Wait()
}

func TestChooseKeepsTheQuorum(t *testing.T) {
	c, _ := newTestCore(t)
	all := members("a", "b", "c")
	now := time.Unix(1000, 0)
	for range 3 {
		c.Reached(all[0], errors.New("down"), now)
	}
	got, err := c.Choose(nil, all, 3, 2, now)
	if err != nil || len(got) != 2 {
		t.Fatalf("with a ejected: %v %v", got, err)
	}
	for range 3 {
		c.Reached(all[1], errors.New("down"), now)
	}
	if got, err := c.Choose(nil, all, 3, 2, now); err != nil || len(got) != 3 {
		t.Fatalf("two ejected, quorum 2: all three go (%v, %v)", got, err)
	}
	if _, err := c.Choose(nil, all[:1], 3, 2, now); !errors.Is(err, ErrTooFew) {
		t.Fatalf("one executor, quorum 2: %v", err)
	}
}

// A round that finds the stragglers' semaphore full stops waiting for its slow executor: the
// ask is cancelled and counted, instead of piling up.
func TestPollStragglersBounded(t *testing.T) {
	c, ch := newTestCore(t)
	full := make(chan struct{}, 1)
	full <- struct{}{}
	s := &script{answers: map[string]string{"a": "x", "b": "x", "c": "slow:x"}, release: make(chan struct{})} // never released
	var wg sync.WaitGroup
	wg.Add(1)
	group, ok := Poll(context.Background(), members("a", "b", "c"), PollOptions{Quorum: 2, Timeout: time.Hour, Stragglers: full}, s.ask,
		func(r *Round[string, string]) {
			defer wg.Done()
			Account(c, r, Report[string, string]{}, time.Now())
		})
	if !ok || len(group) != 2 {
		t.Fatalf("decided %v with %d", ok, len(group))
	}
	wg.Wait() // returns although c never answers: its ask was cancelled
	d := kinds(ch)[EventDissent]
	if len(d) != 1 || d[0].Subject != "c" || d[0].Attrs["kind"] != DissentAvailability {
		t.Fatalf("dissent events: %+v", d)
	}
}

// Tally decides as Poll does, one answer at a time: at the quorum, when no group can reach it
// any more, and with waitAll only once every executor is in; answers after the decision
// change nothing of it.
func TestTally(t *testing.T) {
	ans := func(id, key string) Answer[string, string] {
		if key == "" {
			return Answer[string, string]{Member: Member{ID: id}, Err: errors.New("down")}
		}
		return Answer[string, string]{Member: Member{ID: id}, Value: key, Key: key}
	}
	for _, tc := range []struct {
		name    string
		q       int
		waitAll bool
		keys    []string // in arrival order; "" a failure
		at      int      // the answer (index) that decides
		ok      bool
		group   int
	}{
		{"majority", 2, false, []string{"x", "y", "x"}, 2, true, 2},
		{"first two agree", 2, false, []string{"x", "x", "y"}, 1, true, 2},
		{"no group can win", 2, false, []string{"x", "y", "z"}, 2, false, 0},
		{"failures", 2, false, []string{"", "", "x"}, 1, false, 0},
		{"quorum 3, one differs", 3, false, []string{"x", "y", "x"}, 1, false, 0},
		{"wait all", 2, true, []string{"x", "x", "y"}, 2, true, 2},
		{"wait all, the group grows", 2, true, []string{"x", "x", "x"}, 2, true, 3},
	} {
		var tl Tally[string, string]
		tl.ResetIn(make([]Answer[string, string], len(tc.keys)), tc.q, tc.waitAll)
		for i, k := range tc.keys {
			decided, group, ok := tl.Add(ans(string(rune('a'+i)), k))
			if decided != (i == tc.at) {
				t.Fatalf("%s: answer %d decided %v", tc.name, i, decided)
			}
			if decided && (ok != tc.ok || len(group) != tc.group) {
				t.Fatalf("%s: ok %v with %d, want %v with %d", tc.name, ok, len(group), tc.ok, tc.group)
			}
		}
		if !tl.Decided() || !tl.Complete() || len(tl.Round().Answers) != len(tc.keys) {
			t.Fatalf("%s: decided %v complete %v answers %d", tc.name, tl.Decided(), tl.Complete(), len(tl.Round().Answers))
		}
		if decided, _, _ := tl.Add(ans("late", "x")); decided || len(tl.Round().Answers) != len(tc.keys) {
			t.Fatalf("%s: an answer beyond n was taken", tc.name)
		}
	}
}
