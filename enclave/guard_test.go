package enclave

import (
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/stix"
)

// enclave.protect is read by config.ParsePrefixOrAddr, as the config validator reads it: host
// bits are refused (not silently masked), a mapped form protects the IPv4 network it maps, and
// every spelling of a protected network (mapped, NAT64, 6to4) stays protected.
func TestGuardProtectList(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC) }
	if _, err := newGuard([]string{"198.51.100.7/24"}, nil, now); err == nil || !strings.Contains(err.Error(), "host bits set (want 198.51.100.0/24)") {
		t.Errorf("host bits: %v", err)
	}
	if _, err := newGuard([]string{"not-an-address"}, nil, now); err == nil || !strings.Contains(err.Error(), `"not-an-address"`) {
		t.Errorf("bad entry: %v", err)
	}
	g, err := newGuard([]string{"198.51.100.0/24", "::ffff:203.0.113.0/120", "2001:db8:7::1"}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]bool{
		"198.51.100.9":          true,
		"198.51.0.0/16":         true, // overlaps
		"::ffff:198.51.100.9":   true,
		"64:ff9b::198.51.100.9": true, // NAT64
		"2002:c633:6409::1":     true, // 6to4 of 198.51.100.9
		"203.0.113.200":         true, // from the mapped entry
		"2001:db8:7::1":         true,
		"2001:db8:7::2":         false,
		"198.51.101.1":          false,
		"192.0.2.1":             false,
	} {
		tg, err := ParseTarget(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.static.protects(tg); got != want {
			t.Errorf("%s: protected %v, want %v", target, got, want)
		}
	}
}

func (ps protectSet) protects(t stix.Target) bool {
	_, ok := ps.overlaps(t.Prefix)
	return ok
}
