package engine

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/game"
)

// TestAssetsAndEvolutionFollowTheAttack: Assets shows the stage a decision moved the asset
// to and the game's choice there, and Evolution is the replicator dynamics of that stage's
// game for the chosen defender type and signal, checked against the game package; a stage
// that expired shows none and evolves the first stage. A hostile caller asking for an
// unknown asset or many evolutions at once gets ErrNoAsset and one computation.
func TestAssetsAndEvolutionFollowTheAttack(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, dir, &now)
	defer r.close()
	ctx := context.Background()

	as := r.e.Assets()
	if len(as) != 1 || as[0].Asset != "web" || as[0].Stage != 0 || as[0].Choice != nil || !as[0].DecidedAt.IsZero() {
		t.Fatalf("before any evidence: %+v", as)
	}
	var last *Decision
	for _, line := range []string{
		eveLine("203.0.113.7", "ET EXPLOIT Apache Struts RCE attempt", "Attempted Administrator Privilege Gain", 1),
		eveLine("203.0.113.7", "ET EXPLOIT Apache Struts RCE attempt", "Attempted Administrator Privilege Gain", 1),
	} {
		advance(&now, time.Second)
		if d := r.e.Handle(ctx, parse(t, line)); d != nil {
			<-d.Stored
			last = d
		}
	}
	if last == nil || last.Stage != 2 {
		t.Fatalf("last decision %+v", last)
	}
	as = r.e.Assets()
	a := as[0]
	if a.Stage != 2 || a.StageID != last.StageID || a.Choice == nil || a.Choice.Defense != last.Strategy || a.Choice.Signal != last.Signal ||
		a.DecidedIn != 2 || !a.DecidedAt.Equal(last.Time) || a.Live.CStar != 2 {
		t.Fatalf("asset %+v (choice %+v), last decision %+v", a, a.Choice, last.Decision)
	}

	ev, err := r.e.Evolution(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Current || ev.Stage != 2 || ev.Defense != last.Strategy || ev.Signal != last.Signal || ev.DefenderType != a.Choice.DefenderType {
		t.Fatalf("evolution %+v", ev)
	}
	n := len(ev.Trajectory.T)
	if n < 3 || n > MaxEvolutionPoints+1 || len(ev.Trajectory.X) != n || len(ev.Trajectory.Y) != n ||
		len(ev.Trajectory.X[0]) != len(ev.Attacks) || len(ev.Trajectory.Y[0]) != len(ev.Defenses) {
		t.Fatalf("trajectory of %d points, %d attacks, %d defenses", n, len(ev.Attacks), len(ev.Defenses))
	}
	for i := range ev.Attacks { // from the uniform mix
		if math.Abs(ev.Trajectory.X[0][i]-1/float64(len(ev.Attacks))) > 1e-9 {
			t.Fatalf("start mix %v is not uniform", ev.Trajectory.X[0])
		}
	}
	// The same as the game package computes for that stage with the live parameters.
	atk, def, want, err := game.StageMixEvolution(liveModel(r.e.o.Model, ev.Live.rounded()), 2, ev.DefenderType, ev.Signal, nil, nil, MaxEvolutionPoints)
	if err != nil {
		t.Fatal(err)
	}
	if len(atk) != len(ev.Attacks) || len(def) != len(ev.Defenses) || len(want.T) != n {
		t.Fatalf("game: %v %v %d points; engine %v %v %d", atk, def, len(want.T), ev.Attacks, ev.Defenses, n)
	}
	for i := range want.X[n-1] {
		if math.Abs(want.X[n-1][i]-ev.Trajectory.X[n-1][i]) > 1e-12 {
			t.Fatalf("end mix %v, game's %v", ev.Trajectory.X[n-1], want.X[n-1])
		}
	}

	if _, err := r.e.Evolution(ctx, "<script>"); !errors.Is(err, ErrNoAsset) {
		t.Fatalf("unknown asset: %v", err)
	}
	// Many at once: all get the same answer, computed once (the cache holds one entry).
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := r.e.Evolution(ctx, "web")
			if err == nil && len(got.Trajectory.T) != n {
				err = errors.New("a different trajectory")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(r.e.evoCache) != 1 {
		t.Fatalf("%d evolutions cached for one parameter set", len(r.e.evoCache))
	}
	// A caller that gives up while another computes is not kept waiting.
	r.e.evoSem <- struct{}{}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.e.Evolution(cctx, "web"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	<-r.e.evoSem

	// The stage expires: none now, and the evolution is the first stage's.
	advance(&now, r.e.cfg.StageTTL+time.Minute)
	if a := r.e.Assets()[0]; a.Stage != 0 || a.StageID != "" || a.Choice == nil {
		t.Fatalf("after the stage TTL: %+v", a)
	}
	ev, err = r.e.Evolution(ctx, "web")
	if err != nil || ev.Current || ev.Stage != 1 || ev.StageID == "" || ev.DefenderType == "" {
		t.Fatalf("evolution without a stage: %+v %v", ev, err)
	}
}
