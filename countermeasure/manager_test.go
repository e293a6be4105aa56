package countermeasure

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// recorder is a fake actuator that logs calls and can be told to fail.
type recorder struct {
	mu       sync.Mutex
	id       string
	calls    []string
	live     map[string]Action
	failNext error
}

func newRecorder(id string) *recorder { return &recorder{id: id, live: map[string]Action{}} }

func (r *recorder) ID() string { return r.id }
func (r *recorder) Apply(_ context.Context, a Action) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failNext; err != nil {
		r.failNext = nil
		return err
	}
	r.calls = append(r.calls, "apply "+a.ID+" "+a.Expires.Format(time.TimeOnly))
	r.live[a.ID] = a
	return nil
}
func (r *recorder) Revert(_ context.Context, a Action) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failNext; err != nil {
		r.failNext = nil
		return err
	}
	r.calls = append(r.calls, "revert "+a.ID)
	delete(r.live, a.ID)
	return nil
}
func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, "; ")
}

func newTestManager(t *testing.T, dir string, c *clock, b *bus.Bus, acts ...Actuator) *Manager {
	t.Helper()
	m, err := NewManager(ManagerOptions{DataDir: dir, Actuators: acts, Bus: b, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func blockAction(source, addr string, ttl time.Duration) Action {
	return Action{Actuator: "rec", Kind: KindBlock, Source: source, Reason: "test",
		Target: AddrTarget(netip.MustParseAddr(addr)), Expires: t0.Add(ttl)}
}

func TestManagerApplyExtendRevert(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: t0}
	b := bus.New()
	events, cancel := b.Subscribe(32, bus.KindPrefix("countermeasure."))
	defer cancel()
	rec := newRecorder("rec")
	m := newTestManager(t, t.TempDir(), c, b, rec)

	a, err := m.Apply(ctx, blockAction("indicator--1", "203.0.113.7", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "rec/indicator--1/203.0.113.7" || !a.Applied.Equal(t0) {
		t.Fatalf("recorded %+v", a)
	}
	// Same source again with a later expiry: extended, not duplicated.
	c.Set(t0.Add(10 * time.Minute))
	if _, err := m.Apply(ctx, blockAction("indicator--1", "203.0.113.7", 2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// ...and with an earlier expiry: the later one stays.
	if _, err := m.Apply(ctx, blockAction("indicator--1", "203.0.113.7", 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	act := m.Active()
	if len(act) != 1 || !act[0].Expires.Equal(t0.Add(2*time.Hour)) || !act[0].Applied.Equal(t0) {
		t.Fatalf("active %+v, want one action expiring at +2h", act)
	}
	if _, err := m.Apply(ctx, blockAction("indicator--2", "198.51.100.1", 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// An IPv4-mapped, unmasked prefix is the same action as its plain IPv4 form.
	mapped := blockAction("indicator--1", "203.0.113.7", 2*time.Hour)
	mapped.Target = Target{Prefix: netip.MustParsePrefix("::ffff:203.0.113.7/128")}
	if got, err := m.Apply(ctx, mapped); err != nil || got.ID != "rec/indicator--1/203.0.113.7" || len(m.Active()) != 2 {
		t.Fatalf("mapped address: %+v %v, %d active", got, err, len(m.Active()))
	}
	if got := m.NextExpiry(); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Fatalf("next expiry %s", got)
	}

	// Nothing expires early.
	c.Set(t0.Add(29 * time.Minute))
	if n, err := m.RevertExpired(ctx); n != 0 || err != nil {
		t.Fatalf("early revert: %d %v", n, err)
	}
	c.Set(t0.Add(30 * time.Minute))
	if n, err := m.RevertExpired(ctx); n != 1 || err != nil {
		t.Fatalf("revert at expiry: %d %v", n, err)
	}
	want := "apply rec/indicator--1/203.0.113.7 13:00:00; apply rec/indicator--1/203.0.113.7 14:00:00; " +
		"apply rec/indicator--1/203.0.113.7 14:00:00; apply rec/indicator--2/198.51.100.1 12:30:00; " +
		"apply rec/indicator--1/203.0.113.7 14:00:00; revert rec/indicator--2/198.51.100.1"
	if got := rec.log(); got != want {
		t.Fatalf("calls\n got %s\nwant %s", got, want)
	}

	var kinds []string
	for len(events) > 0 {
		e := <-events
		kinds = append(kinds, fmt.Sprintf("%s:%v/%v", e.Kind, e.Attrs["how"], e.Attrs["why"]))
	}
	wantKinds := "countermeasure.applied:new/<nil>,countermeasure.applied:extended/<nil>,countermeasure.applied:refreshed/<nil>," +
		"countermeasure.applied:new/<nil>,countermeasure.applied:refreshed/<nil>,countermeasure.reverted:<nil>/expired"
	if got := strings.Join(kinds, ","); got != wantKinds {
		t.Fatalf("events\n got %s\nwant %s", got, wantKinds)
	}
}

func TestManagerRetract(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: t0}
	rec, vig := newRecorder("rec"), NewVigilance(nil)
	m := newTestManager(t, "", c, nil, rec, vig)
	for _, a := range []Action{
		blockAction("s1", "203.0.113.7", time.Hour),
		blockAction("s1", "203.0.113.8", time.Hour),
		blockAction("s2", "203.0.113.9", time.Hour),
		{Actuator: VigilanceID, Kind: KindVigilance, Source: "s1", Level: 2, Expires: t0.Add(time.Hour)},
	} {
		if _, err := m.Apply(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if vig.Level() != 2 {
		t.Fatalf("vigilance %d", vig.Level())
	}
	n, err := m.Retract(ctx, "s1")
	if err != nil || n != 3 {
		t.Fatalf("retract: %d %v, want 3", n, err)
	}
	if act := m.Active(); len(act) != 1 || act[0].Source != "s2" {
		t.Fatalf("active after retract %+v", act)
	}
	if vig.Level() != 0 {
		t.Fatalf("vigilance %d after retract", vig.Level())
	}
	if n, _ := m.Retract(ctx, "unknown"); n != 0 {
		t.Fatal("retract of an unknown source reverted something")
	}
}

func TestManagerRejects(t *testing.T) {
	c := &clock{t: t0}
	m := newTestManager(t, "", c, nil, newRecorder("rec"))
	tests := []struct {
		name string
		a    Action
		want error
	}{
		{"unknown actuator", Action{Actuator: "nope", Target: PortTarget(1), Expires: t0.Add(time.Hour)}, ErrUnknownActuator},
		{"no actuator", Action{Target: PortTarget(1), Expires: t0.Add(time.Hour)}, ErrInvalidAction},
		{"past expiry", Action{Actuator: "rec", Target: PortTarget(1), Expires: t0}, ErrInvalidAction},
		{"no target", Action{Actuator: "rec", Kind: KindBlock, Expires: t0.Add(time.Hour)}, ErrInvalidAction},
		{"bad kind", Action{Actuator: "rec", Kind: "nuke", Target: PortTarget(1), Expires: t0.Add(time.Hour)}, ErrInvalidAction},
		{"loopback", Action{Actuator: "rec", Target: AddrTarget(netip.MustParseAddr("127.0.0.1")), Expires: t0.Add(time.Hour)}, ErrInvalidAction},
		{"everything", Action{Actuator: "rec", Target: PrefixTarget(netip.MustParsePrefix("0.0.0.0/0")), Expires: t0.Add(time.Hour)}, ErrInvalidAction},
		{"v6 loopback", Action{Actuator: "rec", Target: AddrTarget(netip.MustParseAddr("::1")), Expires: t0.Add(time.Hour)}, ErrInvalidAction},
		{"two targets", Action{Actuator: "rec", Target: Target{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 1}, Expires: t0.Add(time.Hour)}, ErrInvalidAction},
	}
	for _, tc := range tests {
		if _, err := m.Apply(context.Background(), tc.a); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	if len(m.Active()) != 0 {
		t.Fatal("rejected actions recorded")
	}
}

// A loopback address the config lets be blocked (proteus demo's attacker) is blocked exactly;
// its neighbours, a prefix around it and 127.0.0.1 are still refused.
func TestManagerBlockableLoopback(t *testing.T) {
	c := &clock{t: t0}
	m, err := NewManager(ManagerOptions{Actuators: []Actuator{newRecorder("rec")}, Now: c.Now,
		BlockableLoopback: []netip.Addr{netip.MustParseAddr("127.0.0.66")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if _, err := m.Apply(context.Background(), blockAction("s", "127.0.0.66", time.Hour)); err != nil {
		t.Fatalf("blockable loopback address refused: %v", err)
	}
	for _, target := range []Target{AddrTarget(netip.MustParseAddr("127.0.0.67")), AddrTarget(netip.MustParseAddr("127.0.0.1")),
		PrefixTarget(netip.MustParsePrefix("127.0.0.64/30")), PrefixTarget(netip.MustParsePrefix("127.0.0.0/8"))} {
		a := blockAction("s", "192.0.2.1", time.Hour)
		a.Target = target
		if _, err := m.Apply(context.Background(), a); !errors.Is(err, ErrInvalidAction) {
			t.Errorf("block %s: %v, want ErrInvalidAction", target, err)
		}
	}
	if n := len(m.Active()); n != 1 {
		t.Fatalf("%d actions active, want the one block", n)
	}
}

func TestManagerFailuresAreRetried(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: t0}
	rec := newRecorder("rec")
	m := newTestManager(t, "", c, nil, rec)
	rec.failNext = errors.New("boom")
	if _, err := m.Apply(ctx, blockAction("s", "203.0.113.7", time.Hour)); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("apply failure not reported: %v", err)
	}
	if len(m.Active()) != 0 {
		t.Fatal("failed apply recorded")
	}
	if _, err := m.Apply(ctx, blockAction("s", "203.0.113.7", time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.Set(t0.Add(time.Hour))
	rec.failNext = errors.New("netlink busy")
	if n, err := m.RevertExpired(ctx); n != 0 || err == nil {
		t.Fatalf("failed revert: %d %v", n, err)
	}
	if len(m.Active()) != 1 {
		t.Fatal("action dropped after a failed revert; it would never be retried")
	}
	if n, err := m.RevertExpired(ctx); n != 1 || err != nil {
		t.Fatalf("retry: %d %v", n, err)
	}
}

// TestManagerRestart: live actions are re-applied, expired ones reverted, from the journal.
func TestManagerRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: t0}
	rec := newRecorder("rec")
	m := newTestManager(t, dir, c, nil, rec)
	for _, a := range []Action{blockAction("short", "203.0.113.7", 10*time.Minute), blockAction("long", "203.0.113.8", time.Hour)} {
		if _, err := m.Apply(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// The agent stops (Close flushes the journal); 20 minutes pass; a new process starts
	// with fresh actuators.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	c.Set(t0.Add(20 * time.Minute))
	rec2 := newRecorder("rec")
	m2 := newTestManager(t, dir, c, nil, rec2)
	if got := rec2.log(); got != "apply rec/long/203.0.113.8 13:00:00; revert rec/short/203.0.113.7" {
		t.Fatalf("restart calls: %s", got)
	}
	act := m2.Active()
	if len(act) != 1 || act[0].Source != "long" || !act[0].Expires.Equal(t0.Add(time.Hour)) || !act[0].Applied.Equal(t0) {
		t.Fatalf("after restart %+v", act)
	}
	// The journal now holds only the live action.
	m3 := newTestManager(t, dir, c, nil, newRecorder("rec"))
	if len(m3.Active()) != 1 {
		t.Fatalf("journal after restart: %+v", m3.Active())
	}
}

func TestManagerCorruptJournal(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":       "{not json",
		"wrong version": `{"version": 9, "actions": []}`,
		"unknown field": `{"version": 1, "actions": [], "extra": 1}`,
		"duplicate":     `{"version":1,"actions":[{"id":"x","actuator":"rec","kind":"block","expires":"2026-03-01T13:00:00Z"},{"id":"x","actuator":"rec","kind":"block","expires":"2026-03-01T13:00:00Z"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, JournalFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			b := bus.New()
			events, cancel := b.Subscribe(8, nil)
			defer cancel()
			c := &clock{t: t0}
			m := newTestManager(t, dir, c, b, newRecorder("rec"))
			if err := m.LoadErr(); !errors.Is(err, ErrJournalCorrupt) {
				t.Fatalf("LoadErr %v", err)
			}
			if bad, err := os.ReadFile(path + ".bad"); err != nil || string(bad) != content {
				t.Fatalf(".bad copy: %q %v", bad, err)
			}
			if e := <-events; e.Kind != EventJournalCorrupt {
				t.Fatalf("event %s", e.Kind)
			}
			// It keeps serving and writes a fresh journal.
			if _, err := m.Apply(context.Background(), blockAction("s", "203.0.113.7", time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := m.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := parseJournalFile(path); err != nil {
				t.Fatalf("fresh journal: %v", err)
			}
		})
	}
}

func parseJournalFile(path string) ([]Action, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseJournal(data)
}

// TestManagerRun: Run reverts at expiry. The fake clock is already past the expiry, so
// the timer fires at once; the test waits for the event, not for wall-clock time.
func TestManagerRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &clock{t: t0}
	b := bus.New()
	events, unsub := b.Subscribe(8, bus.KindPrefix(EventReverted))
	defer unsub()
	m := newTestManager(t, "", c, b, newRecorder("rec"))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	if _, err := m.Apply(ctx, blockAction("s", "203.0.113.7", time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.Set(t0.Add(time.Minute))
	m.poke()
	e := <-events
	if e.Subject != "rec/s/203.0.113.7" {
		t.Fatalf("reverted %s", e.Subject)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestVigilanceLevels(t *testing.T) {
	b := bus.New()
	events, cancel := b.Subscribe(8, bus.KindPrefix(EventVigilance))
	defer cancel()
	v := NewVigilance(b)
	ctx := context.Background()
	steps := []struct {
		apply bool
		a     Action
		want  int
	}{
		{true, Action{ID: "x", Level: 0}, 1},
		{true, Action{ID: "y", Level: 3}, 3},
		{true, Action{ID: "x", Level: 2}, 3},
		{false, Action{ID: "y"}, 2},
		{false, Action{ID: "y"}, 2},
		{false, Action{ID: "x"}, 0},
	}
	for i, s := range steps {
		var err error
		if s.apply {
			err = v.Apply(ctx, s.a)
		} else {
			err = v.Revert(ctx, s.a)
		}
		if err != nil || v.Level() != s.want {
			t.Fatalf("step %d: level %d, %v; want %d", i, v.Level(), err, s.want)
		}
	}
	var got []string
	for len(events) > 0 {
		e := <-events
		got = append(got, fmt.Sprint(e.Attrs["previous"], "->", e.Attrs["level"]))
	}
	if strings.Join(got, " ") != "0->1 1->3 3->2 2->0" {
		t.Fatalf("events %v", got)
	}
}

func TestRegistry(t *testing.T) {
	ids := strings.Join(Registered(), ",")
	for _, id := range []string{BlocklistID, NFTablesID, VigilanceID} {
		if !strings.Contains(ids, id) {
			t.Errorf("%s not registered: %s", id, ids)
		}
	}
	a, err := Build(BlocklistID, Env{})
	if err != nil || a.ID() != BlocklistID {
		t.Fatalf("build blocklist: %v", err)
	}
	if _, err := Build("countermeasure.nope", Env{}); !errors.Is(err, ErrUnknownActuator) {
		t.Fatalf("unknown: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	Register(BlocklistID, func(Env) (Actuator, error) { return nil, nil })
}

func FuzzJournal(f *testing.F) {
	f.Add([]byte(`{"version":1,"actions":[{"id":"x","actuator":"rec","kind":"block","target":{"prefix":"10.0.0.0/8"},"expires":"2026-03-01T13:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"actions":[]}`))
	f.Add([]byte(`{"version":1,"actions":[{"id":"v","actuator":"countermeasure.vigilance","kind":"vigilance","level":2,"expires":"2026-03-01T13:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"actions":[{"id":"p","actuator":"rec","kind":"block","target":{"port":22},"expires":"2026-03-01T13:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		actions, err := parseJournal(data)
		if err != nil {
			return
		}
		j := &journal{dir: t.TempDir()}
		if err := j.save(actions); err != nil {
			t.Fatal(err)
		}
		again, err := j.load()
		if err != nil || len(again) != len(actions) {
			t.Fatalf("saved journal does not load back: %v (%d vs %d)", err, len(again), len(actions))
		}
	})
}

// TestManagerGroupCommit: Apply does not wait for the journal write, writes are coalesced
// (one in flight, the next covers everything that arrived meanwhile), Sync waits for the
// disk, and what was synced survives a restart.
func TestManagerGroupCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: t0}
	m := newTestManager(t, dir, c, nil, newRecorder("rec"))
	var mu sync.Mutex
	writes := 0
	inFlight, release := make(chan struct{}), make(chan struct{})
	m.journal.beforeSave = func() {
		mu.Lock()
		writes++
		first := writes == 1
		mu.Unlock()
		if first {
			close(inFlight)
			<-release // the disk is slow
		}
	}
	if _, err := m.Apply(ctx, blockAction("s0", "203.0.113.1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	<-inFlight
	const n = 50
	for i := 1; i <= n; i++ { // all return while the first write is stuck
		if _, err := m.Apply(ctx, blockAction(fmt.Sprintf("s%d", i), fmt.Sprintf("203.0.113.%d", i+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	synced := make(chan error, 1)
	go func() { synced <- m.Sync(ctx) }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned %v while the write was stuck", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	w := writes
	mu.Unlock()
	if w != 2 {
		t.Errorf("%d journal writes for %d applies, want 2 (one in flight, one batch)", w, n+1)
	}
	got, err := parseJournalFile(filepath.Join(dir, JournalFile))
	if err != nil || len(got) != n+1 {
		t.Fatalf("journal after Sync: %d actions, %v", len(got), err)
	}
}

// TestManagerRunFlushesJournal: when Run's context ends, the journal is flushed before Run
// returns, so a clean stop never loses an action.
func TestManagerRunFlushesJournal(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	m := newTestManager(t, dir, c, nil, newRecorder("rec"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	for i := 0; i < 20; i++ {
		if _, err := m.Apply(ctx, blockAction(fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", i+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	m2 := newTestManager(t, dir, c, nil, newRecorder("rec"))
	if got := len(m2.Active()); got != 20 {
		t.Fatalf("after a clean stop %d actions restored, want 20", got)
	}
	// After Close the manager still journals, synchronously.
	if _, err := m.Apply(context.Background(), blockAction("late", "198.51.100.99", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := parseJournalFile(filepath.Join(dir, JournalFile)); err != nil || len(got) != 21 {
		t.Fatalf("journal after a late apply: %d actions, %v", len(got), err)
	}
}

// TestManagerJournalInterval: the first change after a quiet period is written at once;
// changes within the interval wait for its end (or for Sync/Close) and are written together.
func TestManagerJournalInterval(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := &clock{t: t0}
	m, err := NewManager(ManagerOptions{DataDir: dir, Actuators: []Actuator{newRecorder("rec")}, Now: c.Now, JournalInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	path := filepath.Join(dir, JournalFile)
	onDisk := func() int {
		got, err := parseJournalFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if _, err := m.Apply(ctx, blockAction("a", "203.0.113.1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for onDisk() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first change was not written without waiting for the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := m.Apply(ctx, blockAction("b", "203.0.113.2", time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := onDisk(); n != 1 {
		t.Fatalf("a change inside the interval was written at once (%d actions on disk)", n)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := onDisk(); n != 2 {
		t.Fatalf("after Sync %d actions on disk, want 2", n)
	}
	if _, err := m.Apply(ctx, blockAction("c", "203.0.113.3", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := onDisk(); n != 3 {
		t.Fatalf("after Close %d actions on disk, want 3", n)
	}
}
