package countermeasure

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// A redirect names one address and the decision behind it; a prefix, a port or another kind
// is refused (by the actuator and the Manager), and a revert ends it.
func TestRedirects(t *testing.T) {
	r := NewRedirects()
	ctx := context.Background()
	a := netip.MustParseAddr("198.51.100.7")
	act := Action{ID: "r1", Actuator: RedirectID, Kind: KindRedirect, Target: AddrTarget(a), Reason: "decision D-1", Expires: time.Now().Add(time.Minute)}
	if err := r.Apply(ctx, act); err != nil {
		t.Fatal(err)
	}
	if d, ok := r.Redirected(netip.MustParseAddr("::ffff:198.51.100.7")); !ok || d != "D-1" {
		t.Fatalf("Redirected = %q %v, want D-1 true", d, ok)
	}
	if _, ok := r.Redirected(netip.MustParseAddr("198.51.100.8")); ok {
		t.Fatal("another address is redirected")
	}
	for _, bad := range []Action{
		{ID: "r2", Kind: KindRedirect, Target: PrefixTarget(netip.MustParsePrefix("198.51.100.0/24"))},
		{ID: "r3", Kind: KindRedirect, Target: PortTarget(80)},
		{ID: "r4", Kind: KindBlock, Target: AddrTarget(a)},
	} {
		if err := r.Apply(ctx, bad); !errors.Is(err, ErrUnsupportedTarget) {
			t.Errorf("Apply(%+v) = %v, want ErrUnsupportedTarget", bad, err)
		}
	}
	if err := checkAction(Action{ID: "r5", Actuator: RedirectID, Kind: KindRedirect, Target: PrefixTarget(netip.MustParsePrefix("10.0.0.0/8")),
		Expires: time.Now().Add(time.Minute)}, time.Now(), nil); !errors.Is(err, ErrInvalidAction) {
		t.Errorf("the Manager takes a redirect of a prefix: %v", err)
	}
	if err := r.Revert(ctx, act); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Redirected(a); ok {
		t.Fatal("still redirected after the revert")
	}
}
