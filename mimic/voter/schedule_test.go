package voter

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestMaxDiversityAvoidsSameTraits(t *testing.T) {
	all := []Member{
		{ID: "n1", Variant: "nginx", Traits: map[string]string{"server": "nginx", "lang": "c", "tls": "openssl"}},
		{ID: "n2", Variant: "nginx", Traits: map[string]string{"server": "nginx", "lang": "c", "tls": "openssl"}},
		{ID: "l1", Variant: "lighttpd", Traits: map[string]string{"server": "lighttpd", "lang": "c", "tls": "openssl"}},
		{ID: "g1", Variant: "go", Traits: map[string]string{"server": "go", "lang": "go", "tls": "crypto/tls"}},
	}
	s, _ := NewScheduler(SchedMaxDiversity, nil)
	usedN := map[string]bool{}
	for range 20 {
		got := s.Pick(nil, all, 3)
		ids := []string{}
		for _, b := range got {
			ids = append(ids, b.ID)
		}
		if len(ids) != 3 || !slices.Contains(ids, "l1") || !slices.Contains(ids, "g1") ||
			slices.Contains(ids, "n1") == slices.Contains(ids, "n2") {
			t.Fatalf("picked %v", ids)
		}
		usedN[ids[0]] = true
	}
	if !usedN["n1"] || !usedN["n2"] {
		t.Errorf("equally diverse subsets not rotated: %v", usedN)
	}
}

func TestSchedulersPickDistinct(t *testing.T) {
	var all []Member
	for i := range 7 {
		all = append(all, Member{ID: fmt.Sprint(i), Variant: fmt.Sprint(i % 3), Traits: map[string]string{"x": fmt.Sprint(i % 2)}})
	}
	for _, name := range Schedulers {
		s, err := NewScheduler(name, NewTrust(10, 0, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for range 300 {
			got := s.Pick(nil, all, 3)
			ids := map[string]bool{}
			for _, b := range got {
				ids[b.ID] = true
				seen[b.ID]++
			}
			if len(got) != 3 || len(ids) != 3 {
				t.Fatalf("%s picked %v", name, got)
			}
		}
		if name != SchedMaxDiversity && len(seen) != 7 {
			t.Errorf("%s never used some backends: %v", name, seen)
		}
		if got := s.Pick(nil, all[:2], 3); len(got) != 2 {
			t.Errorf("%s with fewer backends than k: %v", name, got)
		}
	}
	if _, err := NewScheduler("nope", nil); err == nil {
		t.Error("unknown scheduler accepted")
	}
}

func TestTrustWeightedPrefersTrusted(t *testing.T) {
	tr := NewTrust(10, 0, time.Minute)
	now := time.Now()
	for range 10 {
		tr.Record("bad", true, now)
		tr.Record("good", false, now)
	}
	s, _ := NewScheduler(SchedTrustWeight, tr)
	all := []Member{{ID: "good"}, {ID: "bad"}}
	bad := 0
	for range 2000 {
		if s.Pick(nil, all, 1)[0].ID == "bad" {
			bad++
		}
	}
	// weight 0.05 against 1: about 5% of picks.
	if bad == 0 || bad > 200 {
		t.Fatalf("bad picked %d of 2000 times", bad)
	}
}

func TestTrustWindowAndRebuild(t *testing.T) {
	tr := NewTrust(4, 3, time.Minute)
	t0 := time.Unix(1000, 0)
	steps := []struct {
		dissent bool
		at      time.Duration
		rebuild bool
		score   float64
	}{
		{true, 0, false, 0},
		{false, time.Second, false, 0.5},
		{true, 2 * time.Second, false, 1 - 2.0/3},
		{false, 3 * time.Second, false, 0.5},
		{false, 4 * time.Second, false, 0.75}, // first dissent left the window of 4
		{true, 2 * time.Minute, false, 0.5},   // the first two dissents are older than the period
		{true, 2*time.Minute + time.Second, false, 0.5},
		{true, 2*time.Minute + 2*time.Second, true, 0.25},
	}
	for i, s := range steps {
		if got := tr.Record("x", s.dissent, t0.Add(s.at)); got != s.rebuild {
			t.Errorf("step %d: rebuild=%v, want %v", i, got, s.rebuild)
		}
		if got := tr.Score("x"); fmt.Sprintf("%.3f", got) != fmt.Sprintf("%.3f", s.score) {
			t.Errorf("step %d: score %v, want %v", i, got, s.score)
		}
	}
	if snap := tr.Snapshot(); len(snap) != 1 || snap[0].Dissents != 3 || snap[0].Requests != 4 {
		t.Errorf("snapshot %+v", snap)
	}
	if tr.Score("unknown") != 1 {
		t.Error("unknown executor not fully trusted")
	}
}
