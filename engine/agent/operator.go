package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/enclave"
	"github.com/proteus-defense/proteus/engine"
)

// The dashboard's views of the engine's game and of the enclave, adapted to the API's
// interfaces (the api package imports neither).

// GameView is the engine as the API's api.Game (GET /api/v1/assets and the evolution).
func GameView(e *engine.Engine) api.Game { return gameView{e} }

type gameView struct{ e *engine.Engine }

var _ api.Game = gameView{}

func liveOf(l engine.Live) api.GameLive {
	return api.GameLive{CStar: l.CStar, Rate: l.Rate, Intensity: l.Intensity}
}

func (g gameView) Assets() []api.AssetGame {
	sts := g.e.Assets()
	out := make([]api.AssetGame, 0, len(sts))
	for _, s := range sts {
		a := api.AssetGame{Asset: s.Asset, Stage: s.Stage, StageID: s.StageID, Signal: s.Signal, Alpha: s.Alpha, Beta: s.Beta,
			Live: liveOf(s.Live), DecidedAt: s.DecidedAt, DecidedIn: s.DecidedIn}
		if s.Stage > 0 {
			a.StageAt = s.StageAt
		}
		if c := s.Choice; c != nil {
			a.Choice = &api.GameChoice{DefenderType: c.DefenderType, Defense: c.Defense, Signal: c.Signal, Attack: c.Attack,
				AttackGain: c.AttackGain, DefenseGain: c.DefenseGain}
		}
		out = append(out, a)
	}
	return out
}

func (g gameView) Evolution(ctx context.Context, asset string) (api.Evolution, error) {
	ev, err := g.e.Evolution(ctx, asset)
	if errors.Is(err, engine.ErrNoAsset) {
		return api.Evolution{}, fmt.Errorf("%w: %w", api.ErrNoAsset, err)
	}
	if err != nil {
		return api.Evolution{}, err
	}
	out := api.Evolution{Asset: ev.Asset, Stage: ev.Stage, StageID: ev.StageID, Current: ev.Current, DefenderType: ev.DefenderType,
		Signal: ev.Signal, Defense: ev.Defense, Attack: ev.Attack, Live: liveOf(ev.Live), T: ev.Trajectory.T,
		Attacks: series(ev.Attacks, ev.Trajectory.X), Defenses: series(ev.Defenses, ev.Trajectory.Y)}
	if out.T == nil {
		out.T = []float64{}
	}
	return out, nil
}

// series turns mixes over time (one mix per time) into one series per strategy.
func series(ids []string, mixes [][]float64) []api.StrategySeries {
	out := make([]api.StrategySeries, len(ids))
	for i, id := range ids {
		out[i] = api.StrategySeries{ID: id, P: make([]float64, 0, len(mixes))}
		for _, m := range mixes {
			if i < len(m) {
				out[i].P = append(out[i].P, m[i])
			}
		}
	}
	return out
}

// enclaveView is the running enclave node as api.Enclave (no peers while none runs).
type enclaveView struct{ a *agent }

var _ api.Enclave = enclaveView{}

func (v enclaveView) Self() string {
	if n := v.a.node.Load(); n != nil {
		return n.ID().String()
	}
	return ""
}

func (v enclaveView) Peers() []api.PeerTrust {
	n := v.a.node.Load()
	if n == nil {
		return nil
	}
	ps := n.Peers()
	out := make([]api.PeerTrust, 0, len(ps))
	for _, p := range ps {
		out = append(out, peerTrust(p))
	}
	return out
}

func peerTrust(p enclave.PeerInfo) api.PeerTrust {
	return api.PeerTrust{ID: p.ID, Connected: p.Connected, Membership: p.Membership, InTopic: p.InTopic, Trust: p.Trust, Score: p.Score}
}
