package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The dashboard's views of the engine's game and of the enclave: GET /v1/assets (each asset's
// stage and the game's choice), GET /v1/assets/{name}/evolution (the replicator dynamics of
// the stage game its defender plays now) and GET /v1/enclave/peers (the enclave's peers with
// their trust). The agent's composition adapts the engine and the enclave node to the
// interfaces here (this package must not import them).

// GameChoice is the game's choice at an asset's last decision.
type GameChoice struct {
	DefenderType string  `json:"defender_type"`
	Defense      string  `json:"defense"`
	Signal       string  `json:"signal"`
	Attack       string  `json:"predicted_attack"`
	AttackGain   float64 `json:"attack_gain"`
	DefenseGain  float64 `json:"defense_gain"`
}

// GameLive are the live parameters a stage game was solved with: c*, the reconfiguration rate
// a in the model's time unit and the attack intensity π (all 0: the model's own).
type GameLive struct {
	CStar     int     `json:"cstar"`
	Rate      float64 `json:"rate"`
	Intensity float64 `json:"intensity"`
}

// AssetGame is one asset as the engine sees it now.
type AssetGame struct {
	Asset string `json:"asset"`
	// Stage (1-based) and StageID: the asset's current attack stage; 0 and "" for none.
	Stage     int         `json:"stage"`
	StageID   string      `json:"stage_id,omitempty"`
	StageAt   time.Time   `json:"stage_at,omitzero"`
	Signal    string      `json:"signal,omitempty"` // the signal in force
	Alpha     float64     `json:"alpha"`
	Beta      float64     `json:"beta"`
	Choice    *GameChoice `json:"choice,omitempty"` // at the last decision
	Live      GameLive    `json:"live"`
	DecidedAt time.Time   `json:"decided_at,omitzero"`
	DecidedIn int         `json:"decided_in_stage,omitempty"`
}

// StrategySeries is one strategy's proportion in its player's mix over an evolution's times.
type StrategySeries struct {
	ID string    `json:"id"`
	P  []float64 `json:"p"`
}

// Evolution is the answer of GET /v1/assets/{name}/evolution: from uniform mixes, the
// proportion of each attack (the attacker population) and each defense (the defender of the
// chosen type, sending the chosen signal) over time T, in the units of the stage game
// normalised to payoff range 1.
type Evolution struct {
	Asset   string `json:"asset"`
	Stage   int    `json:"stage"`
	StageID string `json:"stage_id"`
	// Current: the asset is in this stage now; false: in none, and this is the first stage.
	Current      bool             `json:"current"`
	DefenderType string           `json:"defender_type"`
	Signal       string           `json:"signal"`
	Defense      string           `json:"defense"`
	Attack       string           `json:"predicted_attack"`
	Live         GameLive         `json:"live"`
	T            []float64        `json:"t"`
	Attacks      []StrategySeries `json:"attacks"`
	Defenses     []StrategySeries `json:"defenses"`
}

// ErrNoAsset is what Game.Evolution returns (wrapped) for an asset it does not know.
var ErrNoAsset = errors.New("no such asset")

// Game is the engine's view for the dashboard (engine/agent adapts *engine.Engine).
type Game interface {
	Assets() []AssetGame
	Evolution(ctx context.Context, asset string) (Evolution, error)
}

// PeerTrust is one enclave peer.
type PeerTrust struct {
	ID         string   `json:"id"`
	Connected  bool     `json:"connected"`
	Membership string   `json:"membership"` // allowlist, certificate, pending, denied
	InTopic    bool     `json:"in_topic"`
	Trust      float64  `json:"trust"`           // the enclave's trust in its reports, 0..1
	Score      *float64 `json:"score,omitempty"` // GossipSub peer score, when known
}

// Enclave is the enclave node's view for the dashboard (engine/agent adapts *enclave.Node).
type Enclave interface {
	Self() string
	Peers() []PeerTrust
}

// PeersAnswer is the answer of GET /v1/enclave/peers.
type PeersAnswer struct {
	Self  string      `json:"self"`
	Peers []PeerTrust `json:"peers"`
}

// WithGame enables GET /v1/assets and /v1/assets/{name}/evolution.
func WithGame(g Game) Option { return func(s *Server) { s.game = g } }

// WithEnclave enables GET /v1/enclave/peers.
func WithEnclave(e Enclave) Option { return func(s *Server) { s.enclave = e } }

// EnclaveNodePrefix is where the agent serves its enclave node's control API (the node's
// /v1/status is Prefix/enclave/node/status), behind the API's token: `proteus enclave`
// subcommands reach an agent's node there.
const EnclaveNodePrefix = Prefix + "/enclave/node"

// WithEnclaveNode serves h, an enclave node's control API (enclave.Node.ControlAPI, paths
// /v1/...), under EnclaveNodePrefix.
func WithEnclaveNode(h http.Handler) Option { return func(s *Server) { s.enclaveNode = h } }

// serveEnclaveNode passes a request under EnclaveNodePrefix to the node's control API, as the
// path that API knows (/v1/...).
func (s *Server) serveEnclaveNode(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, EnclaveNodePrefix)
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = LegacyPrefix+rest, ""
	r2.URL = &u
	s.enclaveNode.ServeHTTP(w, r2)
}

// MaxPlotRequests bounds the plot endpoints' requests in progress (traffic, evolution); one
// more is refused with 503 and Retry-After, so a flood of them costs at most this many at a
// time.
const MaxPlotRequests = 4

// plotSlot takes a place among the plot requests in progress; false: refused (answered).
func (s *Server) plotSlot(w http.ResponseWriter) bool {
	select {
	case s.plots <- struct{}{}:
		return true
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("%d plot requests are in progress already; retry", MaxPlotRequests))
		return false
	}
}

func (s *Server) assets(w http.ResponseWriter, _ *http.Request) {
	if s.game == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this agent runs without the engine (engine.model is not set)"))
		return
	}
	as := s.game.Assets()
	if as == nil {
		as = []AssetGame{}
	}
	writeJSON(w, http.StatusOK, struct {
		Assets []AssetGame `json:"assets"`
	}{as})
}

func (s *Server) evolution(w http.ResponseWriter, r *http.Request) {
	if s.game == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this agent runs without the engine (engine.model is not set)"))
		return
	}
	if !s.plotSlot(w) {
		return
	}
	defer func() { <-s.plots }()
	name := r.PathValue("name")
	ev, err := s.game.Evolution(r.Context(), name)
	switch {
	case errors.Is(err, ErrNoAsset):
		writeError(w, http.StatusNotFound, fmt.Errorf("no asset %s (see /api/v1/assets)", strconv.Quote(clip(name, 80))))
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, ev)
	}
}

// clip shortens s to at most n bytes for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (s *Server) enclavePeers(w http.ResponseWriter, _ *http.Request) {
	if s.enclave == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this agent runs no enclave node (enclave.enabled is false)"))
		return
	}
	ps := s.enclave.Peers()
	if ps == nil {
		ps = []PeerTrust{}
	}
	writeJSON(w, http.StatusOK, PeersAnswer{Self: s.enclave.Self(), Peers: ps})
}
