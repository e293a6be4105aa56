package api_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/game"
)

// fakePool is a Controller with fixed MTD figures.
type fakePool struct {
	cstar int
	rate  float64
}

func (f fakePool) Members() []executor.MemberStatus         { return nil }
func (f fakePool) Rotate(context.Context, string) error     { return nil }
func (f fakePool) RotateAll(context.Context) error          { return nil }
func (f fakePool) Quarantine(context.Context, string) error { return nil }
func (f fakePool) CStar() int                               { return f.cstar }
func (f fakePool) RotationRate() float64                    { return f.rate }

func client(t *testing.T, h http.Handler) *api.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, api.TokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(dir, srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Status reports c*, the measured rate and β_y = game.DefenseSuccess(c*, a, π) for the
// agent's π or the request's.
func TestStatusDefenseSuccess(t *testing.T) {
	ctx := context.Background()
	c := client(t, api.NewServer(fakePool{cstar: 2, rate: 0.1}, nil, "tok", prometheus.NewRegistry(), nil, api.WithAttackIntensity(0.8)))
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.CStar != 2 || st.RotationRate != 0.1 || st.AttackIntensity != 0.8 || st.DefenseSuccess != game.DefenseSuccess(2, 0.1, 0.8) {
		t.Fatalf("status %+v", st)
	}
	if want := math.Tanh(2 * 0.1 / (2 * 0.8)); math.Abs(st.DefenseSuccess-want) > 1e-12 {
		t.Errorf("β %v, want tanh(c*·a/(2π)) = %v", st.DefenseSuccess, want)
	}
	st, err = c.StatusFor(ctx, 0.2)
	if err != nil || st.AttackIntensity != 0.2 || st.DefenseSuccess != game.DefenseSuccess(2, 0.1, 0.2) {
		t.Fatalf("status for π = 0.2: %+v %v", st, err)
	}
	var apiErr *api.APIError
	for _, pi := range []float64{-1, 1.5, math.NaN()} {
		if _, err := c.StatusFor(ctx, pi); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
			t.Errorf("π = %v: %v", pi, err)
		}
	}
	if st.Executors == nil {
		t.Error("executors must be [] not null")
	}
}

func TestBlockUnblockActions(t *testing.T) {
	ctx := context.Background()
	bl := countermeasure.NewBlocklist()
	dir := t.TempDir()
	m, err := countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dir, Actuators: []countermeasure.Actuator{bl}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// before the temporary directory goes: the journal's background writer may still be writing
	// (CI: "TempDir RemoveAll cleanup: directory not empty")
	t.Cleanup(func() { m.Close() })
	c := client(t, api.NewServer(fakePool{}, nil, "tok", prometheus.NewRegistry(), nil, api.WithCountermeasures(m, countermeasure.BlocklistID)))
	a, err := c.Block(ctx, "203.0.113.7", 10*time.Minute, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	if a.Target.String() != "203.0.113.7" || a.Reason != "scanner" || a.Source != api.OperatorSource || a.Actuator != countermeasure.BlocklistID {
		t.Fatalf("action %+v", a)
	}
	if !bl.Blocked(netip.MustParseAddr("203.0.113.7")) || bl.Blocked(netip.MustParseAddr("203.0.113.8")) {
		t.Fatal("blocklist does not hold exactly the address")
	}
	// Blocking again extends the same action; a CIDR is a second one (masked).
	b, err := c.Block(ctx, "203.0.113.7", 20*time.Minute, "")
	if err != nil || b.ID != a.ID || !b.Expires.After(a.Expires) {
		t.Fatalf("re-block: %+v %v", b, err)
	}
	if _, err := c.Block(ctx, "198.51.100.77/24", time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	acts, err := c.Actions(ctx)
	if err != nil || len(acts) != 2 || acts[0].Target.String() != "198.51.100.0/24" {
		t.Fatalf("actions %+v %v", acts, err)
	}
	var apiErr *api.APIError
	for _, bad := range []struct {
		target string
		ttl    time.Duration
	}{{"127.0.0.1", time.Minute}, {"not-an-address", time.Minute}, {"203.0.113.9", -time.Minute}, {"::1", time.Minute}, {"203.0.113.9", 2 * api.MaxBlockTTL}} {
		if _, err := c.Block(ctx, bad.target, bad.ttl, ""); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
			t.Errorf("block %s for %s: %v", bad.target, bad.ttl, err)
		}
	}
	if _, err := c.Unblock(ctx, "198.51.100.1"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("unblock an address inside a blocked CIDR: %v", err)
	}
	rev, err := c.Unblock(ctx, "203.0.113.7")
	if err != nil || len(rev) != 1 || rev[0].ID != a.ID {
		t.Fatalf("unblock: %+v %v", rev, err)
	}
	if bl.Blocked(netip.MustParseAddr("203.0.113.7")) {
		t.Error("still blocked after unblock")
	}
	if _, err := c.Unblock(ctx, "203.0.113.7"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("second unblock: %v", err)
	}
	if acts, _ := c.Actions(ctx); len(acts) != 1 {
		t.Errorf("actions after unblock: %+v", acts)
	}

	// Without a Manager the endpoints say so.
	plain := client(t, api.NewServer(fakePool{}, nil, "tok", prometheus.NewRegistry(), nil))
	if _, err := plain.Actions(ctx); !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
		t.Errorf("actions without countermeasures: %v", err)
	}
}
