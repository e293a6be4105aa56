package store

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func decision(id string, at time.Time, source, asset string) Decision {
	return Decision{ID: id, Time: at, Asset: asset, Source: source, Verdict: "act", Probability: 0.93, Alpha: 0.85, Beta: 0.19,
		Stage: 2, StageID: "S2", Attack: "a3", Strategy: "d4", Signal: "mL",
		Countermeasures: []Countermeasure{{Kind: "block", Target: source + "/32", Expires: at.Add(10 * time.Minute), ID: "x"}},
		Evidence:        []Evidence{{Sensor: "eve", Time: at, Kind: "alert", Summary: "alert 1", Excerpt: `{"event_type":"alert"}`}},
		Detail:          json.RawMessage(`{"game":{"defense":"d4"}}`)}
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPutListGet(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	if err := s.Put(ctx, decision("d1", t0, "203.0.113.7", "web"), decision("d2", t0.Add(time.Minute), "203.0.113.8", "web"),
		decision("d3", t0.Add(2*time.Minute), "203.0.113.7", "db")); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx, Filter{})
	if err != nil || len(all) != 3 || all[0].ID != "d1" || all[2].ID != "d3" {
		t.Fatalf("list %v %v", all, err)
	}
	want := decision("d1", t0, "203.0.113.7", "web")
	got := all[0]
	if !got.Time.Equal(want.Time) || got.Probability != want.Probability || got.Strategy != "d4" || got.Stage != 2 ||
		len(got.Countermeasures) != 1 || !got.Countermeasures[0].Expires.Equal(want.Countermeasures[0].Expires) ||
		got.Evidence[0].Excerpt != want.Evidence[0].Excerpt || string(got.Detail) != string(want.Detail) {
		t.Fatalf("round trip: %+v", got)
	}
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{Source: "203.0.113.7"}, "d1,d3"},
		{Filter{Asset: "web"}, "d1,d2"},
		{Filter{Since: t0.Add(30 * time.Second)}, "d2,d3"},
		{Filter{Source: "203.0.113.7", Asset: "db"}, "d3"},
		{Filter{Limit: 2}, "d2,d3"},
		{Filter{Source: "198.51.100.1"}, ""},
	} {
		ds, err := s.List(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		if strings.Join(ids, ",") != c.want {
			t.Errorf("%+v: %v, want %s", c.f, ids, c.want)
		}
	}
	d, err := s.Get(ctx, "d2")
	if err != nil || d.Source != "203.0.113.8" {
		t.Fatalf("get %+v %v", d, err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

func TestPutBoundsAndRefuses(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	big := decision("big", t0, "203.0.113.7", "web")
	big.Evidence = nil
	for i := 0; i < 3*MaxEvidence; i++ {
		big.Evidence = append(big.Evidence, Evidence{Sensor: "eve", Summary: strings.Repeat("s", 2*MaxSummary), Excerpt: strings.Repeat("x", 5*MaxExcerpt)})
	}
	if err := s.Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, "big")
	if len(got.Evidence) != MaxEvidence || len(got.Evidence[0].Excerpt) != MaxExcerpt || len(got.Evidence[0].Summary) != MaxSummary {
		t.Fatalf("not bounded: %d evidence, excerpt %d", len(got.Evidence), len(got.Evidence[0].Excerpt))
	}
	for name, d := range map[string]Decision{
		"verdict": func() Decision { d := decision("v", t0, "a", "b"); d.Verdict = "maybe"; return d }(),
		"no id":   decision("", t0, "a", "b"),
		"detail":  func() Decision { d := decision("j", t0, "a", "b"); d.Detail = json.RawMessage(`{oops`); return d }(),
	} {
		if err := s.Put(ctx, d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMigrationsVersioned(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if v, err := s.Version(context.Background()); err != nil || v != SchemaVersion {
		t.Fatalf("version %d %v", v, err)
	}
	s.Close()
	// Reopening is idempotent; a database from a newer build is refused.
	s2 := open(t, dir)
	if _, err := s2.db.Exec(`UPDATE schema_version SET version = ?`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestWriterDropsWhenFullAndRetains(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	// Hold the database's write lock from another connection: the writer's transaction
	// waits, its queue fills, and Submit drops instead of blocking.
	lock, err := sql.Open("sqlite", "file:"+s.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	conn, err := lock.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(48 * time.Hour)
	w := NewWriter(s, WriterOptions{Queue: 2, Batch: 1, Retention: 24 * time.Hour, Now: func() time.Time { return now }})
	var dones []<-chan error
	accepted := 0
	for i := 0; i < 10; i++ {
		if d, ok := w.Submit(decision(fmt.Sprintf("w%d", i), now, "203.0.113.7", "web")); ok {
			dones = append(dones, d)
			accepted++
		}
	}
	if accepted > 3 || w.Dropped() != uint64(10-accepted) {
		t.Fatalf("accepted %d, dropped %d", accepted, w.Dropped())
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	for _, d := range dones {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	// An old decision goes at the next sweep (at start, here by reopening the writer).
	if err := s.Put(ctx, decision("old", t0, "203.0.113.7", "web")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, ok := w.Submit(decision("late", now, "a", "b")); ok {
		t.Fatal("submit after close accepted")
	}
	w2 := NewWriter(s, WriterOptions{Retention: 24 * time.Hour, Now: func() time.Time { return now }})
	w2.Close()
	if _, err := s.Get(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old decision kept past retention: %v", err)
	}
	ds, _ := s.List(ctx, Filter{})
	if len(ds) != accepted || w.Written() != uint64(accepted) {
		t.Fatalf("%d stored, %d written, want %d", len(ds), w.Written(), accepted)
	}
}

// TestKill9LosesNoCommittedDecision runs a real writer in a child process, reads the IDs of
// decisions whose write returned, kills the child with SIGKILL mid-stream and checks that
// every one of them is in the database.
func TestKill9LosesNoCommittedDecision(t *testing.T) {
	if os.Getenv("PROTEUS_STORE_CHILD") != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.v")
	cmd.Env = append(os.Environ(), "PROTEUS_STORE_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var committed []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(committed) < 300 {
		if id, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			committed = append(committed, id)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(committed) < 300 {
		t.Fatalf("child reported only %d decisions", len(committed))
	}
	s := open(t, dir)
	for _, id := range committed {
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Fatalf("decision %s reported committed, lost after kill -9: %v", id, err)
		}
	}
}

// TestKill9Child is the child of TestKill9LosesNoCommittedDecision.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv("PROTEUS_STORE_CHILD")
	if dir == "" {
		t.Skip("only runs as the child of TestKill9LosesNoCommittedDecision")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(s, WriterOptions{})
	for i := 0; ; i++ {
		var dones []<-chan error
		var ids []string
		for j := 0; j < 8; j++ { // several in flight: batches form
			id := fmt.Sprintf("k%d-%d", i, j)
			if d, ok := w.Submit(decision(id, time.Now(), "203.0.113.7", "web")); ok {
				dones, ids = append(dones, d), append(ids, id)
			}
		}
		for k, d := range dones {
			if err := <-d; err == nil {
				fmt.Printf("committed %s\n", ids[k])
			}
		}
	}
}

// A revert is recorded against a countermeasure the decision took, comes back with the
// decision, and goes with it at retention.
func TestRevertRecorded(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := time.Now().Add(-48 * time.Hour).UTC()
	d := Decision{ID: "d1", Time: old, Asset: "shop", Verdict: "act", Countermeasures: []Countermeasure{{Kind: "block", Target: "192.0.2.7/32", ID: "a1"}, {Kind: "share"}}}
	if err := s.Put(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ id, action string }{{"d1", "a2"}, {"d1", ""}, {"d2", "a1"}} {
		if err := s.PutRevert(ctx, bad.id, Revert{Time: time.Now(), Action: bad.action, By: "x"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("revert %s of %s: %v, want ErrNotFound", bad.action, bad.id, err)
		}
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.PutRevert(ctx, "d1", Revert{Time: at, Action: "a1", By: strings.Repeat("b", 2*MaxRevertBy)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "d1")
	if err != nil || len(got.Reverts) != 1 || got.Reverts[0].Action != "a1" || !got.Reverts[0].Time.Equal(at) || len(got.Reverts[0].By) != MaxRevertBy {
		t.Fatalf("reverts %+v %v", got.Reverts, err)
	}
	// Re-putting the decision (the engine extends one) keeps its reverts.
	if err := s.Put(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "d1"); len(got.Reverts) != 1 {
		t.Errorf("reverts after a re-put: %+v", got.Reverts)
	}
	if _, err := s.DeleteBefore(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM reverts`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d reverts left after their decision went (%v)", n, err)
	}
}

// The timeline counts decisions per bucket and verdict with their countermeasures, leaves out
// those outside the span, and ranks the sources.
func TestTimeline(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	put := func(id string, at time.Duration, src, verdict string, cms int) {
		t.Helper()
		d := Decision{ID: id, Time: t0.Add(at), Asset: "shop", Source: src, Verdict: verdict}
		for range cms {
			d.Countermeasures = append(d.Countermeasures, Countermeasure{Kind: "block"})
		}
		if err := s.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	put("before", -time.Second, "192.0.2.1", "act", 1)
	put("a", 0, "192.0.2.1", "act", 2)
	put("b", 59*time.Minute, "192.0.2.1", "defer", 0)
	put("c", 61*time.Minute, "192.0.2.2", "act", 1)
	put("d", 150*time.Minute, "192.0.2.2", "ignore", 0)
	put("e", 179*time.Minute, "192.0.2.3", "act", 3)
	put("f", 179*time.Minute, "", "act", 1)
	put("after", 180*time.Minute, "192.0.2.9", "act", 1)
	tl, err := s.Timeline(ctx, t0, t0.Add(3*time.Hour), 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []Bucket{
		{Start: t0, Act: 1, Defer: 1, Countermeasures: 2},
		{Start: t0.Add(time.Hour), Act: 1, Countermeasures: 1},
		{Start: t0.Add(2 * time.Hour), Act: 2, Ignore: 1, Countermeasures: 4},
	}
	if len(tl.Buckets) != 3 || tl.Bucket != 3600 {
		t.Fatalf("timeline %+v", tl)
	}
	for i, b := range want {
		if tl.Buckets[i] != b {
			t.Errorf("bucket %d: %+v, want %+v", i, tl.Buckets[i], b)
		}
	}
	if len(tl.TopSources) != 2 || tl.TopSources[0].Source != "192.0.2.2" || tl.TopSources[0].Decisions != 2 || tl.TopSources[0].Acts != 1 ||
		tl.TopSources[1].Source != "192.0.2.1" || tl.TopSources[1].Acts != 1 || !tl.TopSources[1].Last.Equal(t0.Add(59*time.Minute)) {
		t.Errorf("top sources %+v", tl.TopSources)
	}
	for _, bad := range []int{0, 1001} {
		if _, err := s.Timeline(ctx, t0, t0.Add(time.Hour), bad, 1); err == nil {
			t.Errorf("%d buckets accepted", bad)
		}
	}
	if _, err := s.Timeline(ctx, t0, t0, 10, 1); err == nil {
		t.Error("an empty span accepted")
	}
}
