package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/proteus-defense/proteus/game"
)

// AssetState is where an asset stands now, for the dashboard: its attack stage (the one the
// engine moved it to and that has not expired), the signal it sends, and the game's choice of
// its last decision.
type AssetState struct {
	Asset string
	// Stage is the current stage (1-based) and StageID its id; 0 and "" when the asset is in
	// no stage (no believed evidence within engine.stage_ttl).
	Stage   int
	StageID string
	StageAt time.Time // when evidence last confirmed the stage
	Signal  string    // the signal in force ("" before the first)
	// Alpha and Beta are the asset's three-way thresholds.
	Alpha, Beta float64
	// Choice and Live are the game's choice at the last decision and the parameters it was
	// solved with; DecidedAt is when (zero before the first decision).
	Choice    *Choice
	Live      Live
	DecidedAt time.Time
	DecidedIn int // the stage (1-based) of that decision
}

// Assets returns every configured asset's state, by name.
func (e *Engine) Assets() []AssetState {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]AssetState, 0, len(e.assets))
	for _, a := range e.assets {
		st := AssetState{Asset: a.Name, Signal: a.signal, Alpha: a.alpha, Beta: a.beta, StageAt: a.stageAt,
			Live: a.live, DecidedAt: a.decidedAt, DecidedIn: a.decidedIn}
		if a.stage >= 0 && now.Sub(a.stageAt) <= e.cfg.StageTTL {
			st.Stage, st.StageID = a.stage+1, e.chain.id[a.stage]
		}
		if a.choice != nil {
			c := *a.choice
			st.Choice = &c
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Asset < out[j].Asset })
	return out
}

// ErrNoAsset is returned by Evolution for an asset the engine does not know.
var ErrNoAsset = errors.New("engine: no such asset")

// Evolution is the replicator dynamics of the stage game an asset's defender plays now.
type Evolution struct {
	Asset   string
	Stage   int // 1-based
	StageID string
	// Current: Stage is the asset's current stage; otherwise the asset is in no stage and this
	// is the model's first stage, where an attack starts.
	Current      bool
	DefenderType string
	Signal       string
	Defense      string // the strategy the game chose
	Attack       string // the attack it predicts
	Live         Live
	Attacks      []string
	Defenses     []string
	Trajectory   game.MixTrajectory
}

// MaxEvolutionPoints bounds the points of an evolution's trajectory.
const MaxEvolutionPoints = 200

// maxEvolutions bounds the evolutions cached.
const maxEvolutions = 64

type evoKey struct {
	live        Live
	stage       int
	typ, signal string
}

// Evolution returns the evolution of asset's stage game from the uniform mixes: the stage it
// is in (else the first), the defender type and signal of its last decision in that stage
// (else the game's choice for the stage under the parameters of its last decision, or the
// model's own without one). Results are cached per parameter set, and one is computed at a
// time (a solve takes milliseconds): many concurrent callers cost one computation each new
// parameter set and wait for it, or until ctx ends.
func (e *Engine) Evolution(ctx context.Context, asset string) (Evolution, error) {
	var st *AssetState
	for _, s := range e.Assets() {
		if s.Asset == asset {
			st = &s
			break
		}
	}
	if st == nil {
		return Evolution{}, fmt.Errorf("%w: %q", ErrNoAsset, asset)
	}
	ev := Evolution{Asset: asset, Stage: st.Stage, Current: st.Stage > 0, Live: st.Live}
	if !ev.Current {
		ev.Stage = 1
	}
	ev.StageID = e.chain.id[ev.Stage-1]
	if st.Choice != nil && st.DecidedIn == ev.Stage {
		c := st.Choice
		ev.DefenderType, ev.Signal, ev.Defense, ev.Attack = c.DefenderType, c.Signal, c.Defense, c.Attack
	} else {
		sol, used, err := e.solver.solve(st.Live)
		if err != nil {
			return Evolution{}, err
		}
		ev.Live = used
		c := choose(&sol.Stages[ev.Stage-1], e.cfg.DefenderType)
		ev.DefenderType, ev.Signal, ev.Defense, ev.Attack = c.DefenderType, c.Signal, c.Defense, c.Attack
	}
	key := evoKey{live: ev.Live.rounded(), stage: ev.Stage, typ: ev.DefenderType, signal: ev.Signal}
	select {
	case e.evoSem <- struct{}{}:
	case <-ctx.Done():
		return Evolution{}, ctx.Err()
	}
	defer func() { <-e.evoSem }()
	if c, ok := e.evoCache[key]; ok {
		ev.Attacks, ev.Defenses, ev.Trajectory = c.Attacks, c.Defenses, c.Trajectory
		return ev, nil
	}
	atk, def, tr, err := game.StageMixEvolution(liveModel(e.o.Model, key.live), ev.Stage, ev.DefenderType, ev.Signal, nil, nil, MaxEvolutionPoints)
	if err != nil {
		return Evolution{}, fmt.Errorf("engine: evolution of %s: %w", asset, err)
	}
	ev.Attacks, ev.Defenses, ev.Trajectory = atk, def, tr
	if len(e.evoCache) >= maxEvolutions {
		clear(e.evoCache)
	}
	e.evoCache[key] = ev
	return ev, nil
}
