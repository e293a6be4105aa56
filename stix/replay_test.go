package stix

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestReplayGuard(t *testing.T) {
	g := NewReplayGuard(10)
	s := sample(targets["ipv4"])
	if err := g.Admit(&s, testNow); err != nil {
		t.Fatal(err)
	}
	if err := g.Admit(&s, testNow.Add(time.Minute)); !errors.Is(err, ErrReplay) {
		t.Fatalf("second admit: %v, want ErrReplay", err)
	}
	// A later version of the same object (the revocation) is new.
	r := s.Revoke(testNow.Add(time.Minute), "")
	if err := g.Admit(&r, testNow.Add(time.Minute)); err != nil {
		t.Fatalf("revocation: %v", err)
	}
	if err := g.Admit(&r, testNow.Add(2*time.Minute)); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed revocation: %v", err)
	}
	// After valid_until the key is forgotten, and the message refused as expired.
	after := s.ValidUntil
	if err := g.Admit(&s, after); !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: %v, want ErrExpired", err)
	}
	g.Expire(after)
	if g.Len() != 0 {
		t.Fatalf("len %d after expiry, want 0", g.Len())
	}
}

func TestReplayGuardBounded(t *testing.T) {
	g := NewReplayGuard(3)
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("indicator--00000000-0000-4000-8000-%012d", i)
		// later i expires later, so the earliest are evicted first
		if err := g.AdmitKey(id, testNow, testNow.Add(time.Duration(i+1)*time.Hour), testNow); err != nil {
			t.Fatal(err)
		}
	}
	if g.Len() != 3 || g.Evicted() != 2 {
		t.Fatalf("len %d evicted %d, want 3 and 2", g.Len(), g.Evicted())
	}
	newest := fmt.Sprintf("indicator--00000000-0000-4000-8000-%012d", 4)
	if err := g.AdmitKey(newest, testNow, testNow.Add(5*time.Hour), testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("newest forgotten: %v", err)
	}
	oldest := fmt.Sprintf("indicator--00000000-0000-4000-8000-%012d", 0)
	if err := g.AdmitKey(oldest, testNow, testNow.Add(time.Hour), testNow); err != nil {
		t.Fatalf("evicted key should be admitted again: %v", err)
	}
}

// The guard pins an id's owner and binding, limits keys per owner (except the exempt one),
// and carries its state across a restart through Entries and Restore.
func TestReplayGuardOwnersBindingsRestore(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := NewReplayGuard(100)
	g.SetPerOwner(2, "me")
	exp := now.Add(time.Hour)
	if err := g.AdmitOwned("a", "192.0.2.1", "x", now, exp, now); err != nil {
		t.Fatal(err)
	}
	if err := g.AdmitOwned("a", "192.0.2.2", "x", now.Add(time.Second), exp, now); !errors.Is(err, ErrRebound) {
		t.Errorf("re-targeted version: %v", err)
	}
	if err := g.AdmitOwned("b", "192.0.2.1", "x", now.Add(time.Second), exp, now); !errors.Is(err, ErrRebound) {
		t.Errorf("another owner's version: %v", err)
	}
	if err := g.AdmitOwned("a", "192.0.2.1", "x", now.Add(time.Second), exp, now); err != nil {
		t.Errorf("new version, same binding: %v", err)
	}
	if err := g.AdmitOwned("a", "192.0.2.3", "y", now, exp, now); !errors.Is(err, ErrBudget) {
		t.Errorf("third key of a: %v", err)
	}
	for i := 0; i < 5; i++ {
		if err := g.AdmitOwned("me", "t", fmt.Sprint("m", i), now, exp, now); err != nil {
			t.Errorf("exempt owner: %v", err)
		}
	}
	back := NewReplayGuard(100)
	back.Restore(g.Entries(), now)
	if back.Len() != g.Len() || back.Owned("a") != 2 {
		t.Fatalf("restored %d keys (a: %d), want %d", back.Len(), back.Owned("a"), g.Len())
	}
	if err := back.AdmitOwned("a", "192.0.2.1", "x", now, exp, now); !errors.Is(err, ErrReplay) {
		t.Errorf("replay after restore: %v", err)
	}
	if err := back.AdmitOwned("a", "198.51.100.1", "x", now.Add(time.Minute), exp, now); !errors.Is(err, ErrRebound) {
		t.Errorf("re-targeting after restore: %v", err)
	}
	later := NewReplayGuard(100)
	later.Restore(g.Entries(), exp)
	if later.Len() != 0 {
		t.Errorf("expired entries restored: %d", later.Len())
	}
}
