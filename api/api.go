// Package api owns the agent's local control API: status, rotate and quarantine of executors,
// operator blocks of client addresses (through the countermeasure Manager), Prometheus
// metrics (/metrics) and a server-sent event stream of the bus (/events). Every
// endpoint requires the bearer token that the agent writes into its data directory (mode
// 0600) at start, so only a user who can read the data directory controls the agent. The
// package also holds the client the CLI uses.
//
// It imports executor (for the pool's types), countermeasure (for its Action), game (for the
// defense success β_y shown in the status), store (the audit store's decisions), bearer (the
// token), dashboard (its login-link path, for the client), bus, atomicfile and the Prometheus
// client;
// it must not import mimic, engine, enclave or cmd.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/bearer"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/store"
)

// File names in the data directory.
const (
	TokenFile = "api.token" // the bearer token, mode 0600
	AddrFile  = "api.addr"  // the address the API listens on, for CLI clients
)

// Controller is what the API controls: *executor.Pool implements it.
type Controller interface {
	Members() []executor.MemberStatus
	Rotate(ctx context.Context, id string) error
	RotateAll(ctx context.Context) error
	Quarantine(ctx context.Context, id string) error
	CStar() int
	RotationRate() float64
}

// ExecutorStatus is one executor in the status answer.
type ExecutorStatus struct {
	ID          string            `json:"id"`
	Variant     string            `json:"variant"`
	Address     string            `json:"address"`
	AgeSeconds  float64           `json:"age_s"`
	State       string            `json:"state"`
	Driver      string            `json:"driver"`
	InFlight    int64             `json:"in_flight"`
	ImageDigest string            `json:"image_digest,omitempty"`
	Traits      map[string]string `json:"traits,omitempty"`
	Isolation   string            `json:"isolation,omitempty"` // how its driver confines it (executor.Instance.Isolation)
	Vote        *ExecutorVote     `json:"vote,omitempty"`      // when the voting gateway serves the front
}

// ExecutorVote is how the voting gateway sees one executor.
type ExecutorVote struct {
	Trust        float64   `json:"trust"` // 1 - dissent frequency over the gateway's trust window
	Requests     int       `json:"requests"`
	Dissents     int       `json:"dissents"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"` // set while it is left out of the picks
	Single       uint64    `json:"single_requests"`        // requests single routes sent it, unvoted
}

// Voting is the voting gateway's view of the executors, by ID (cmd/proteus adapts the mimic
// gateway, which this package must not import).
type Voting interface {
	Votes() map[string]ExecutorVote
	// Learned is the noise learned so far per route prefix ("default": no route); ResetLearned
	// forgets it.
	Learned() map[string][]string
	ResetLearned()
}

// Status is the answer of GET /v1/status. CStar, RotationRate, AttackIntensity and
// DefenseSuccess are the MTD inputs and output of the game model's defense success
// β_y = game.DefenseSuccess(c*, a, π) = tanh(c*·a/(2π)) (docs/model.md, section 3), with a
// the measured reconfiguration rate in reconfigurations per second.
type Status struct {
	Executors       []ExecutorStatus `json:"executors"`
	CStar           int              `json:"cstar"`
	RotationRate    float64          `json:"rotation_rate"`
	AttackIntensity float64          `json:"attack_intensity"`
	DefenseSuccess  float64          `json:"defense_success"`
	// LearnedNoise is what the voting gateway learned not to compare, per route prefix.
	LearnedNoise map[string][]string `json:"learned_noise,omitempty"`
	// Vigilance is the agent's vigilance level and what it tightens now.
	Vigilance *VigilanceStatus `json:"vigilance,omitempty"`
	// Sensors are the engine's evidence sources (absent when the engine does not run).
	Sensors []SensorStatus `json:"sensors,omitempty"`
}

// VigilanceStatus is the vigilance level and its effect on the data path (level 0: the
// configured behaviour).
type VigilanceStatus struct {
	Level            int     `json:"level"`
	K                int     `json:"k"`                 // executors per voted request
	RebuildThreshold int     `json:"rebuild_threshold"` // dissents that rebuild an executor (0: never)
	RotationScale    float64 `json:"rotation_scale"`    // factor on the rotation interval
	// Rotation is the rotation policy the scheduler follows now (e.g. "every 7.5s-22.5s").
	Rotation string `json:"rotation"`
}

// SensorStatus is one sensor as the engine's supervisor sees it.
type SensorStatus struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // running, restarting, stopped
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
	// Counters are what the sensor read, by outcome (e.g. lines, events, malformed, partial),
	// for sensors that count.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// AgentState is the part of the status the agent's composition supplies (engine/agent
// implements it; this package must not import the engine).
type AgentState interface {
	Vigilance() *VigilanceStatus
	Sensors() []SensorStatus
}

// DefaultAttackIntensity is the attack intensity π the status uses unless the agent or the
// request sets another: the middle of the paper's probability scale (Table 6 ranges 0.41-0.95).
const DefaultAttackIntensity = 0.5

// Countermeasures is what the block endpoints drive: *countermeasure.Manager implements it.
type Countermeasures interface {
	Apply(ctx context.Context, a countermeasure.Action) (countermeasure.Action, error)
	Revert(ctx context.Context, id string) error
	Active() []countermeasure.Action
}

// OperatorSource is the countermeasure source of blocks made through the API, so blocking
// the same target twice extends one action instead of adding a second.
const OperatorSource = "operator"

// MaxBlockTTL bounds the TTL of a block made through the API.
const MaxBlockTTL = 365 * 24 * time.Hour

// Option configures a Server.
type Option func(*Server)

// WithCountermeasures enables GET /v1/actions, POST /v1/block and POST /v1/unblock: blocks
// go to cm through the actuator blockActuator (e.g. countermeasure.BlocklistID).
func WithCountermeasures(cm Countermeasures, blockActuator string) Option {
	return func(s *Server) { s.cm, s.blockActuator = cm, blockActuator }
}

// Decisions is the audit store the decision endpoints read, and where an early revert of a
// decision's countermeasure is recorded: *store.Store implements it.
type Decisions interface {
	List(ctx context.Context, f store.Filter) ([]store.Decision, error)
	Get(ctx context.Context, id string) (store.Decision, error)
	PutRevert(ctx context.Context, id string, r store.Revert) error
	Timeline(ctx context.Context, since, until time.Time, n, top int) (store.Timeline, error)
}

// WithDecisions enables GET /v1/decisions and GET /v1/decisions/{id} over the audit store.
func WithDecisions(d Decisions) Option { return func(s *Server) { s.decisions = d } }

// WithAgentState adds the vigilance level and the sensors to the status.
func WithAgentState(a AgentState) Option { return func(s *Server) { s.agent = a } }

// WithVoting adds the voting gateway's view of each executor to the status.
func WithVoting(v Voting) Option { return func(s *Server) { s.voting = v } }

// WithAttackIntensity sets the attack intensity π the status reports β_y for when the
// request gives none (default DefaultAttackIntensity).
func WithAttackIntensity(pi float64) Option { return func(s *Server) { s.intensity = pi } }

// Server serves the API.
type Server struct {
	ctl           Controller
	bus           *bus.Bus
	token         string
	reg           *prometheus.Registry
	log           *slog.Logger
	mux           *http.ServeMux
	cm            Countermeasures
	blockActuator string
	intensity     float64
	voting        Voting
	agent         AgentState
	decisions     Decisions
	traffic       *Traffic
	game          Game
	enclave       Enclave
	enclaveNode   http.Handler
	plots         chan struct{} // the plot requests in progress (MaxPlotRequests)
	now           func() time.Time
}

// NewServer returns the API handler. reg holds the metrics served at /metrics.
func NewServer(ctl Controller, b *bus.Bus, token string, reg *prometheus.Registry, logger *slog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{ctl: ctl, bus: b, token: token, reg: reg, log: logger.With("component", "api"), mux: http.NewServeMux(),
		intensity: DefaultAttackIntensity, now: time.Now, plots: make(chan struct{}, MaxPlotRequests)}
	for _, o := range opts {
		o(s)
	}
	s.handle("GET /status", s.status)
	s.handle("POST /rotate", s.rotate)
	s.handle("POST /quarantine", s.quarantine)
	s.handle("GET /actions", s.actions)
	s.handle("POST /block", s.block)
	s.handle("POST /unblock", s.unblock)
	s.handle("POST /gateway/learned/reset", s.resetLearned)
	s.handle("GET /decisions", s.listDecisions)
	s.handle("GET /decisions/{id}", s.getDecision)
	s.handle("POST /decisions/{id}/revert", s.revertDecision)
	s.handle("GET /timeline", s.timeline)
	s.handle("GET /traffic", s.trafficRates)
	s.handle("GET /assets", s.assets)
	s.handle("GET /assets/{name}/evolution", s.evolution)
	s.handle("GET /enclave/peers", s.enclavePeers)
	s.handle("GET /events", s.events)
	if s.enclaveNode != nil {
		s.mux.HandleFunc(EnclaveNodePrefix+"/", s.serveEnclaveNode)
	}
	s.mux.HandleFunc("GET /events", s.events) // the stream's path before the versioned prefix
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	s.mux.Handle("GET /metrics", metrics) // where Prometheus looks by default
	s.mux.Handle("GET "+Prefix+"/metrics", metrics)
	return s
}

// Prefix is the versioned API's path prefix. LegacyPrefix is the one the same endpoints had
// before the API was versioned (and /events the stream's path); they stay as aliases, served
// by the same handlers, for scripts written against them.
const (
	Prefix       = "/api/v1"
	LegacyPrefix = "/v1"
)

// handle registers h for "METHOD /path" under Prefix and under LegacyPrefix.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+Prefix+path, h)
	s.mux.HandleFunc(method+" "+LegacyPrefix+path, h)
}

// ServeHTTP checks the bearer token, then dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !bearer.Valid(r, s.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="proteus"`)
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token (see "+TokenFile+" in the data dir)"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	pi := s.intensity
	if q := r.URL.Query().Get("intensity"); q != "" {
		v, err := strconv.ParseFloat(q, 64)
		if err != nil || !validIntensity(v) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("intensity must be a number in (0, 1], got %q", q))
			return
		}
		pi = v
	}
	st := Status{Executors: []ExecutorStatus{}, CStar: s.ctl.CStar(), RotationRate: s.ctl.RotationRate(), AttackIntensity: pi}
	st.DefenseSuccess = game.DefenseSuccess(float64(st.CStar), st.RotationRate, pi)
	var votes map[string]ExecutorVote
	if s.voting != nil {
		votes = s.voting.Votes()
		st.LearnedNoise = s.voting.Learned()
	}
	if s.agent != nil {
		st.Vigilance, st.Sensors = s.agent.Vigilance(), s.agent.Sensors()
	}
	for _, m := range s.ctl.Members() {
		e := ExecutorStatus{
			ID: m.Instance.ID, Variant: m.Instance.Variant, Address: m.Instance.Address, AgeSeconds: m.Age.Seconds(),
			State: string(m.State), Driver: m.Instance.Driver, InFlight: m.InFlight, ImageDigest: m.Instance.ImageDigest, Traits: m.Instance.Traits,
			Isolation: m.Instance.Isolation,
		}
		if v, ok := votes[m.Instance.ID]; ok {
			e.Vote = &v
		}
		st.Executors = append(st.Executors, e)
	}
	writeJSON(w, http.StatusOK, st)
}

// resetLearned makes the voting gateway forget the noise it learned (POST
// /v1/gateway/learned/reset); 409 when no voting gateway serves the front.
func (s *Server) resetLearned(w http.ResponseWriter, r *http.Request) {
	if s.voting == nil {
		writeError(w, http.StatusConflict, errors.New("no voting gateway serves the front"))
		return
	}
	s.voting.ResetLearned()
	writeJSON(w, http.StatusOK, RotateResult{OK: true})
}

// RotateResult is the answer of POST /v1/rotate and /v1/quarantine.
type RotateResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) {
	id, all := r.URL.Query().Get("id"), r.URL.Query().Get("all") == "true"
	if (id == "") == !all {
		writeError(w, http.StatusBadRequest, errors.New("give exactly one of id=ID or all=true"))
		return
	}
	ctx := executor.WithReason(r.Context(), "api")
	var err error
	if all {
		err = s.ctl.RotateAll(ctx)
	} else {
		err = s.ctl.Rotate(ctx, id)
	}
	s.log.Info("rotate requested", "id", id, "all", all, "err", err)
	s.answer(w, err)
}

func (s *Server) quarantine(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		writeError(w, http.StatusBadRequest, errors.New("id=ID is required"))
		return
	}
	err := s.ctl.Quarantine(executor.WithReason(r.Context(), "api"), id)
	s.log.Warn("quarantine requested", "id", id, "err", err)
	s.answer(w, err)
}

func (s *Server) answer(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, RotateResult{OK: true})
	case errors.Is(err, executor.ErrNoInstance):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, executor.ErrBusy):
		writeError(w, http.StatusConflict, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

// validIntensity reports whether pi is an attack intensity the status accepts: (0, 1].
func validIntensity(pi float64) bool { return pi > 0 && pi <= 1 && !math.IsNaN(pi) }

// ParseTarget parses an address or a CIDR into a countermeasure target (masked, with
// IPv4-mapped IPv6 unmapped).
func ParseTarget(s string) (countermeasure.Target, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return countermeasure.Target{}, fmt.Errorf("api: target %q: want an address or a CIDR", s)
		}
		return countermeasure.PrefixTarget(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return countermeasure.Target{}, fmt.Errorf("api: target %q: want an address or a CIDR", s)
	}
	return countermeasure.AddrTarget(a), nil
}

func (s *Server) countermeasuresEnabled(w http.ResponseWriter) bool {
	if s.cm == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this agent runs without countermeasures"))
		return false
	}
	return true
}

func (s *Server) actions(w http.ResponseWriter, _ *http.Request) {
	if !s.countermeasuresEnabled(w) {
		return
	}
	writeJSON(w, http.StatusOK, s.cm.Active())
}

// block applies (or extends) the operator's block of ?target= for ?ttl=, with ?reason=.
func (s *Server) block(w http.ResponseWriter, r *http.Request) {
	if !s.countermeasuresEnabled(w) {
		return
	}
	q := r.URL.Query()
	t, err := ParseTarget(q.Get("target"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ttl, err := time.ParseDuration(q.Get("ttl"))
	if err != nil || ttl <= 0 || ttl > MaxBlockTTL {
		writeError(w, http.StatusBadRequest, fmt.Errorf("ttl must be a duration in (0, %s], got %q", MaxBlockTTL, q.Get("ttl")))
		return
	}
	reason := q.Get("reason")
	if reason == "" {
		reason = "operator block"
	}
	a, err := s.cm.Apply(r.Context(), countermeasure.Action{Actuator: s.blockActuator, Kind: countermeasure.KindBlock,
		Target: t, Reason: reason, Source: OperatorSource, Expires: s.now().Add(ttl)})
	s.log.Warn("block requested", "target", t.String(), "ttl", ttl, "reason", reason, "err", err)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, a)
	case errors.Is(err, countermeasure.ErrInvalidAction), errors.Is(err, countermeasure.ErrUnsupportedTarget):
		writeError(w, http.StatusBadRequest, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

// UnblockResult is the answer of POST /v1/unblock: the actions reverted.
type UnblockResult struct {
	Reverted []countermeasure.Action `json:"reverted"`
}

// unblock reverts every active block whose target is exactly ?target=, whatever its source
// (operator, enclave). Blocks of wider prefixes that contain it stay; the 404 names them.
func (s *Server) unblock(w http.ResponseWriter, r *http.Request) {
	if !s.countermeasuresEnabled(w) {
		return
	}
	t, err := ParseTarget(r.URL.Query().Get("target"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	res := UnblockResult{Reverted: []countermeasure.Action{}}
	var covering []string
	var errs []error
	for _, a := range s.cm.Active() {
		if a.Kind != countermeasure.KindBlock || !a.Target.IsPrefix() {
			continue
		}
		if a.Target != t {
			if a.Target.Prefix.Overlaps(t.Prefix) {
				covering = append(covering, a.Target.String())
			}
			continue
		}
		if err := s.cm.Revert(r.Context(), a.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Reverted = append(res.Reverted, a)
	}
	s.log.Warn("unblock requested", "target", t.String(), "reverted", len(res.Reverted), "err", errors.Join(errs...))
	switch {
	case len(errs) > 0:
		writeError(w, http.StatusInternalServerError, errors.Join(errs...))
	case len(res.Reverted) == 0 && len(covering) > 0:
		writeError(w, http.StatusNotFound, fmt.Errorf("no active block on exactly %s; it overlaps the active blocks %s (unblock those)", t, strings.Join(covering, ", ")))
	case len(res.Reverted) == 0:
		writeError(w, http.StatusNotFound, fmt.Errorf("no active block on %s", t))
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// heartbeat keeps idle event streams from being cut by proxies.
const heartbeat = 15 * time.Second

// events streams bus events as server-sent events: "event: <kind>" and "data: <json>".
// ?kind=PREFIX filters by kind prefix. With ?unnamed=1 the "event:" line is left out, so a
// browser's EventSource delivers every kind to its onmessage (a named event reaches only a
// listener for that name, and kinds are open-ended); the kind is in the data either way.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	var filter func(bus.Event) bool
	if k := r.URL.Query().Get("kind"); k != "" {
		filter = bus.KindPrefix(k)
	}
	named := r.URL.Query().Get("unnamed") != "1"
	ch, cancel := s.bus.Subscribe(256, filter)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": proteus events\n\n")
	fl.Flush()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case e, ok := <-ch:
			if !ok {
				return
			}
			data, err := json.Marshal(e)
			if err != nil {
				continue
			}
			if named {
				fmt.Fprintf(w, "event: %s\n", sseField(e.Kind))
			}
			fmt.Fprintf(w, "data: %s\n\n", data)
		}
		fl.Flush()
	}
}

// sseField keeps a field on its one line: a kind with a line break (none the agent makes)
// would otherwise end the field early and start another.
func sseField(v string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, RotateResult{Error: err.Error()})
}

// NewToken creates a fresh random token, writes it to dataDir/api.token with mode 0600 and
// returns it. Every agent start makes a new one, so a token never outlives its agent.
func NewToken(dataDir string) (string, error) {
	tok, err := bearer.NewToken()
	if err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	if err := writePrivate(filepath.Join(dataDir, TokenFile), tok+"\n"); err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	return tok, nil
}

// WriteAddr records where the API listens, for CLI clients.
func WriteAddr(dataDir, addr string) error {
	if err := writePrivate(filepath.Join(dataDir, AddrFile), addr+"\n"); err != nil {
		return fmt.Errorf("api: address file: %w", err)
	}
	return nil
}

// writePrivate replaces path atomically with a 0600 file.
func writePrivate(path, content string) error { return atomicfile.Write(path, []byte(content), 0o600) }
