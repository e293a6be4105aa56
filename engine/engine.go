// Package engine is the inference engine: it turns evidence from every sensor (Suricata EVE
// alerts, file integrity, gateway dissent, peer sightings) into decisions. For each event it
// finds the matching rule (the model's attack strategy and stage the evidence stands for),
// combines the evidence per source address and asset into Pr(attack), decides act / defer /
// ignore with the asset's three-way thresholds α, β (from the MTTEGDM loss table of its
// device), moves the asset through the model's attack stages with the model's transition
// probabilities η, solves the stage game with live parameters (c* and the measured
// reconfiguration rate from the pool, the attack intensity from the event rate), maps the
// chosen defense strategy to countermeasures by config, publishes the chosen signal on the
// bus and stores every decision with its evidence in the audit store.
//
// It also owns the agent's countermeasure stack (StartCountermeasures: blocklist, vigilance,
// nftables, the Manager); its sub-package engine/agent composes the whole running agent.
//
// It imports bus, config, countermeasure, executor (the pool's types), game, sensor and its
// sources, store and the Prometheus client; the agent's wiring imports it. It must not import cmd/proteus or api.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/store"
	"github.com/proteus-defense/proteus/strictyaml"
)

// Bus event kinds published by the engine.
const (
	EventDecision = "engine.decision" // attrs: id, verdict, asset, source, stage, strategy, signal, probability
	EventSignal   = "engine.signal"   // the deception signal for an asset changed; attrs: asset, signal, previous, stage
	// EventSensorState: a sensor started, failed (restarting, with last_error) or stopped;
	// subject is the sensor's name; attrs: state, restarts, last_error.
	EventSensorState = "sensor.state"
)

// Verdicts of the three-way decision.
const (
	Act    = "act"
	Defer  = "defer"
	Ignore = "ignore"
)

// Pool is what the engine needs from the executor pool.
type Pool interface {
	CStar() int
	RotationRate() float64 // reconfigurations per second
	RotateAll(ctx context.Context) error
	Quarantine(ctx context.Context, id string) error
	Rotate(ctx context.Context, id string) error
}

// DecoyExecutor is the decoy executor's own pool (pool.decoy), outside the vote.
type DecoyExecutor interface {
	Pool
	Members
}

// Options configure an Engine.
type Options struct {
	Config config.Engine
	Model  *game.Model
	// Manager applies blocks and vigilance; BlockActuators are the actuator IDs a block goes
	// to (the gateway blocklist, and nftables when it runs); VigilanceActuator raises the level.
	Manager           *countermeasure.Manager
	BlockActuators    []string
	VigilanceActuator string
	// RedirectActuators, with engine.redirect, serve a deferred source from a decoy: the
	// gateway's decoy executor (countermeasure.redirect) and nftables' redirected ports
	// (countermeasure.nftables with engine.redirect.ports); none: defer verdicts redirect
	// nobody (said in the decision).
	RedirectActuators []string
	Pool              Pool // may be nil: rotate countermeasures are then skipped
	// Decoy, when set, is the decoy executor's pool: evidence accusing one of its executors
	// takes that one out of service through it instead of Pool.
	Decoy  DecoyExecutor
	Store  *store.Store // may be nil (no audit, tests)
	Bus    *bus.Bus
	Logger *slog.Logger
	Now    func() time.Time
	// Exec runs an exec countermeasure; nil means run the program with a 30 s timeout.
	Exec func(ctx context.Context, argv []string) error
	// Share publishes a confident local detection (an act on this agent's own evidence that
	// blocks source) to the enclave as a signed sighting; nil: no enclave. It runs in the
	// background, at most once per source within half the block's TTL.
	Share func(ctx context.Context, s Sighting) error
}

// Sighting is a local detection the engine shares with the enclave.
type Sighting struct {
	Source     netip.Addr
	Confidence int // 1..100: Pr(attack) in percent
	TTL        time.Duration
	// Description says what was seen (rule, stage, decision ID).
	Description string
}

// Stats are the engine's counters.
type Stats struct {
	Events     uint64 `json:"events"`
	Dropped    uint64 `json:"dropped"`   // queue full
	Unmatched  uint64 `json:"unmatched"` // no rule matched
	Decisions  uint64 `json:"decisions"`
	Coalesced  uint64 `json:"coalesced"` // evidence kept for the pair's next decision
	StoreDrops uint64 `json:"store_dropped"`
}

// Engine decides on evidence. Submit and Push feed it; Run consumes.
type Engine struct {
	o      Options
	cfg    config.Engine
	log    *slog.Logger
	now    func() time.Time
	rules  []rule
	chain  *chain
	solver *solver
	assets map[string]*asset
	byPort map[uint16]string
	deflt  string
	queue  chan sensor.Event
	writer *store.Writer

	events, dropped, unmatched, decisions, coalesced atomic.Uint64

	mu        sync.Mutex // guards the state below (Run is one goroutine; Status reads)
	intents   map[pairKey]*intent
	nextPrune int // the map size at which pruneLocked sweeps next
	seq       uint64
	// quarantined counts the executors this engine quarantined (bounded by
	// engine.max_quarantined).
	quarantined int
	// blocked holds the expiry of every address this engine blocks (bounded by
	// engine.max_blocks).
	blocked map[netip.Addr]time.Time
	// shared holds, per source shared with the enclave, until when it is not shared again
	// (bounded like blocked).
	shared map[netip.Addr]time.Time
	wg     sync.WaitGroup

	// evoSem lets one Evolution compute at a time; evoCache holds what they computed.
	evoSem   chan struct{}
	evoCache map[evoKey]Evolution
}

type asset struct {
	config.Asset
	alpha, beta float64
	stage       int // −1: none
	stageAt     time.Time
	signal      string
	cooldown    map[string]time.Time // rotate/exec: not again before
	// The last decision's game choice (nil: none, or the solve failed), the parameters it
	// was solved with, when, and in which stage (1-based), for Assets.
	choice    *Choice
	live      Live
	decidedAt time.Time
	decidedIn int
}

type pairKey struct {
	source netip.Addr
	asset  string
}

type evidence struct {
	ev   sensor.Event
	rule string
}

// ConfigError is New's refusal of a config whose model references do not resolve; its
// problems carry config field paths (config.LocateProblems adds file, line and column).
type ConfigError struct{ Problems strictyaml.Problems }

func (e *ConfigError) Error() string { return e.Problems.Err("engine config").Error() }

// Unwrap exposes strictyaml.ErrInvalid.
func (e *ConfigError) Unwrap() error { return e.Problems.Err("engine config") }

// New builds an engine. A config whose references do not resolve in the model is refused
// with problems naming the config fields (locate them with config.LocateProblems).
func New(o Options) (*Engine, error) {
	if o.Model == nil {
		return nil, fmt.Errorf("engine: no model")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Exec == nil {
		o.Exec = runProgram
	}
	rules, probs := compileRules(o.Config, o.Model)
	if len(probs) > 0 {
		return nil, &ConfigError{Problems: probs}
	}
	e := &Engine{o: o, cfg: o.Config, log: o.Logger.With("component", "engine"), now: o.Now, rules: rules,
		chain: newChain(o.Model), solver: newSolver(o.Model), assets: map[string]*asset{}, byPort: map[uint16]string{},
		queue: make(chan sensor.Event, o.Config.Queue), intents: map[pairKey]*intent{},
		blocked: map[netip.Addr]time.Time{}, shared: map[netip.Addr]time.Time{},
		evoSem: make(chan struct{}, 1), evoCache: map[evoKey]Evolution{}}
	devices := map[string]game.Device{}
	for _, d := range o.Model.Devices {
		devices[d.ID] = d
	}
	for _, a := range o.Config.Assets {
		st := &asset{Asset: a, stage: -1, cooldown: map[string]time.Time{}}
		st.alpha, st.beta = game.ThreeWayLosses(devices[a.Device].Values()).Thresholds()
		e.assets[a.Name] = st
		for _, p := range a.Ports {
			e.byPort[uint16(p)] = a.Name
		}
		if a.Default || len(o.Config.Assets) == 1 {
			e.deflt = a.Name
		}
	}
	for _, d := range o.Model.Defenses {
		if _, ok := o.Config.Strategies[d.ID]; !ok {
			e.log.Warn("defense has no countermeasures in engine.strategies; acting on it raises vigilance only", "defense", d.ID, "name", d.Name)
		}
	}
	if o.Store != nil {
		e.restore() // before the writer's first retention sweep
		e.restoreSignals()
		e.writer = store.NewWriter(o.Store, store.WriterOptions{Retention: o.Config.Retention, Logger: o.Logger, Now: o.Now})
	}
	return e, nil
}

// restore takes each asset's stage from its latest decision within the stage TTL, so a
// restart does not forget where an attacker stands.
func (e *Engine) restore() {
	now := e.now()
	ds, err := e.o.Store.List(context.Background(), store.Filter{Since: now.Add(-e.cfg.StageTTL), Limit: 10000})
	if err != nil {
		e.log.Error("restore stages from the audit store", "err", err)
		return
	}
	for _, d := range ds {
		a := e.assets[d.Asset]
		if a == nil || d.Stage < 1 || d.Stage > e.chain.n {
			continue
		}
		if a.stage < d.Stage-1 || d.Time.After(a.stageAt) {
			a.stage, a.stageAt = d.Stage-1, d.Time
		}
		if n, err := strconv.ParseUint(d.ID[lastDash(d.ID)+1:], 10, 64); err == nil && n > e.seq {
			e.seq = n
		}
	}
}

// restoreSignals takes each asset's signal from its latest decision that sent one (act or
// defer: an ignore sends none), however old, so a restart does not switch what the decoys
// and the gateway present back to the config's start signal: an attacker who fingerprinted
// the agent before the restart sees the same stack after it.
func (e *Engine) restoreSignals() {
	for _, a := range e.assets {
		var at time.Time
		for _, v := range []string{Act, Defer} {
			ds, err := e.o.Store.List(context.Background(), store.Filter{Asset: a.Name, Verdict: v, Limit: 1})
			if err != nil {
				e.log.Error("restore signals from the audit store", "err", err)
				return
			}
			if len(ds) == 1 && ds[0].Signal != "" && ds[0].Time.After(at) {
				a.signal, at = ds[0].Signal, ds[0].Time
			}
		}
	}
}

// signals returns each asset's signal in force ("" for none yet); call it before Run.
func (e *Engine) signals() map[string]string {
	out := map[string]string{}
	for name, a := range e.assets {
		if a.signal != "" {
			out[name] = a.signal
		}
	}
	return out
}

func lastDash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '-' {
			return i
		}
	}
	return -1
}

// Submit queues ev without blocking; a full queue drops it (counted). The gateway's and the
// bus's events come in here: nothing on the data path waits for the engine.
func (e *Engine) Submit(ev sensor.Event) bool {
	select {
	case e.queue <- ev:
		return true
	default:
		e.dropped.Add(1)
		return false
	}
}

// Push queues ev, waiting while the queue is full, until ctx ends. Log sensors come in here:
// the log keeps what the engine has not read.
func (e *Engine) Push(ctx context.Context, ev sensor.Event) bool {
	select {
	case e.queue <- ev:
		return true
	case <-ctx.Done():
		e.dropped.Add(1)
		return false
	}
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := Stats{Events: e.events.Load(), Dropped: e.dropped.Load(), Unmatched: e.unmatched.Load(),
		Decisions: e.decisions.Load(), Coalesced: e.coalesced.Load()}
	if e.writer != nil {
		s.StoreDrops = e.writer.Dropped()
	}
	return s
}

// Run decides on queued events until ctx ends, then waits for its background work and
// flushes the audit writer.
func (e *Engine) Run(ctx context.Context) {
	defer func() {
		e.wg.Wait()
		if e.writer != nil {
			e.writer.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-e.queue:
			e.Handle(ctx, ev)
		}
	}
}

// Decision is what Handle decided, as stored (with its done channel for tests and
// benchmarks: it reports when the decision is committed).
type Decision struct {
	store.Decision
	Stored <-chan error
}

// Detail is the JSON under a stored decision's "detail".
type Detail struct {
	Rule   string `json:"rule"`
	Events int    `json:"events"` // events of this pair so far
	Live   Live   `json:"live"`
	// Reading is how the game read the paper's open cost definitions for this solution
	// (the model's reading: field, game.EngineReading by default; docs/model.md).
	Reading      game.Reading       `json:"reading"`
	Transition   *Transition        `json:"transition,omitempty"`
	Choice       *Choice            `json:"choice,omitempty"`
	Solution     *game.StageResult  `json:"solution,omitempty"`
	Discounted   map[string]float64 `json:"discounted,omitempty"`
	Unmapped     bool               `json:"unmapped_strategy,omitempty"`
	ObservedRate float64            `json:"observed_rate_per_minute"`
	// PeerOnly: Pr(attack) reached α on peer sightings without the enclave's quorum and
	// without enough own evidence, so the act became a defer.
	PeerOnly bool `json:"peer_only,omitempty"`
}

// Transition is a stage change a decision made, with the η-path probability behind it.
type Transition struct {
	From string  `json:"from,omitempty"`
	To   string  `json:"to"`
	Path float64 `json:"path_probability"`
}

// Handle decides on one event; it returns the decision taken, or nil when the event only
// added evidence (no rule matched, or nothing changed since the pair's last decision).
func (e *Engine) Handle(ctx context.Context, ev sensor.Event) *Decision {
	e.events.Add(1)
	var r *rule
	for i := range e.rules {
		if e.rules[i].match(&ev) {
			r = &e.rules[i]
			break
		}
	}
	if r == nil {
		e.unmatched.Add(1)
		return nil
	}
	now := e.now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	a := e.assetFor(&ev)
	e.mu.Lock()
	defer e.mu.Unlock()
	key := pairKey{source: ev.Source, asset: a.Name}
	in := e.intents[key]
	if in == nil {
		e.pruneLocked(now)
		in = &intent{}
		e.intents[key] = in
	}
	w := r.Weight
	if ev.Strength > 0 {
		w *= min(ev.Strength, 1)
	}
	peer := ev.Sensor == "enclave"
	in.add(now, w, e.cfg.HalfLife, !peer)
	if peer {
		in.peerAct = ev.Category == enclaveAct
	}
	in.pending = append(in.pending, evidence{ev: ev, rule: r.name})
	if len(in.pending) > maxPending {
		in.pending = in.pending[len(in.pending)-maxPending:]
	}
	p := in.probability(now, e.cfg.HalfLife)
	verdict := Ignore
	switch game.Classify(p, a.alpha, a.beta) {
	case game.WeightPOS:
		verdict = Act
	case game.WeightBND:
		verdict = Defer
	}
	// Peer reports alone act only when the enclave's own rule let them (a quorum of
	// independent established reporters: its act); otherwise this agent's own evidence must
	// be more than ignorable too. A coalition of liars below the quorum raises vigilance here,
	// it does not block.
	peerOnly := false
	if verdict == Act && !in.peerAct && in.localProbability(now, e.cfg.HalfLife) <= a.beta {
		verdict, peerOnly = Defer, true
	}

	// Stage: an ignored event does not move the asset (it is not believed).
	if a.stage >= 0 && now.Sub(a.stageAt) > e.cfg.StageTTL {
		a.stage = -1
	}
	var tr *Transition
	if verdict != Ignore {
		to, path := e.chain.move(a.stage, r.stage, e.cfg.MinTransition)
		if to != a.stage {
			tr = &Transition{To: e.chain.id[to], Path: path}
			if a.stage >= 0 {
				tr.From = e.chain.id[a.stage]
			}
			a.stage = to
		}
		a.stageAt = now
	}
	stage := a.stage
	if stage < 0 {
		stage = r.stage
	}

	live := Live{Intensity: in.intensity(e.cfg.IntensityRate)}
	if e.o.Pool != nil {
		live.CStar = e.o.Pool.CStar()
		live.Rate = e.o.Pool.RotationRate() * e.cfg.RateUnit.Seconds()
	}
	det := Detail{Rule: r.name, Events: in.events, Transition: tr, ObservedRate: in.rate, PeerOnly: peerOnly}
	var ch Choice
	sol, used, err := e.solver.solve(live)
	det.Live = used
	if err != nil {
		e.log.Error("stage game", "err", err)
	} else {
		sr := sol.Stages[stage]
		det.Reading = sol.Reading
		ch = choose(&sr, e.cfg.DefenderType)
		det.Choice, det.Solution = &ch, &sr
		det.Discounted = map[string]float64{"attack": sr.DiscountedAttackGain, "defense": sr.DiscountedDefenseGain}
	}

	// Coalesce: nothing new since this pair's last decision (same verdict, stage and
	// strategy, within the half-life) adds evidence for the next one instead.
	// A tampered executor is its own target: its act is never coalesced into another's.
	ownTarget := verdict == Act && executorEvidence(ev)
	if !ownTarget && in.decided && in.verdict == verdict && in.stage == stage && in.strategy == ch.Defense && now.Sub(in.decidedAt) < e.cfg.HalfLife/2 {
		e.coalesced.Add(1)
		return nil
	}
	e.seq++
	d := store.Decision{
		ID: fmt.Sprintf("%s-%d", now.UTC().Format("20060102T150405"), e.seq), Time: now, Asset: a.Name, Source: addrString(ev.Source),
		Verdict: verdict, Probability: p, Alpha: a.alpha, Beta: a.beta, Stage: stage + 1, StageID: e.chain.id[stage],
		Attack: r.Attack, Strategy: ch.Defense, Signal: ch.Signal, Countermeasures: []store.Countermeasure{},
	}
	for _, pe := range in.pending {
		d.Evidence = append(d.Evidence, store.Evidence{Sensor: pe.ev.Sensor, Time: pe.ev.Time, Kind: pe.ev.Kind, Summary: pe.ev.Summary, Excerpt: pe.ev.Excerpt})
	}
	in.pending = in.pending[:0]
	in.decided, in.verdict, in.stage, in.strategy, in.decidedAt = true, verdict, stage, ch.Defense, now
	a.choice, a.live, a.decidedAt, a.decidedIn = nil, used, now, stage+1
	if det.Choice != nil {
		c := ch
		a.choice = &c
	}

	switch verdict {
	case Act:
		d.Countermeasures, det.Unmapped = e.act(ctx, a, ev, d.ID, ch.Defense, p, now)
	case Defer:
		d.Countermeasures = append(d.Countermeasures, e.vigilance(ctx, a, d.ID, 1, e.cfg.VigilanceTTL, now))
		if e.cfg.Redirect != nil && ev.Source.IsValid() {
			d.Countermeasures = append(d.Countermeasures, e.redirect(ctx, a, d.ID, ev.Source, now)...)
		}
	}
	if raw, err := json.Marshal(det); err == nil {
		d.Detail = raw
	}
	e.decisions.Add(1)
	if verdict != Ignore && ch.Signal != "" && ch.Signal != a.signal {
		e.o.Bus.Publish(bus.Event{Kind: EventSignal, Source: "engine", Subject: a.Name,
			Attrs: map[string]any{"asset": a.Name, "signal": ch.Signal, "previous": a.signal, "stage": d.StageID}})
		a.signal = ch.Signal
	}
	e.o.Bus.Publish(bus.Event{Kind: EventDecision, Source: "engine", Subject: d.ID, Attrs: map[string]any{
		"id": d.ID, "verdict": verdict, "asset": a.Name, "source": d.Source, "stage": d.StageID, "strategy": d.Strategy,
		"signal": d.Signal, "probability": p}})
	e.log.Info("decision", "id", d.ID, "verdict", verdict, "asset", a.Name, "source", d.Source, "p", p, "alpha", a.alpha,
		"beta", a.beta, "stage", d.StageID, "strategy", d.Strategy, "signal", d.Signal, "countermeasures", len(d.Countermeasures))
	out := &Decision{Decision: d}
	if e.writer != nil {
		done, ok := e.writer.Submit(d)
		if !ok {
			e.log.Error("audit store queue full; decision not stored", "id", d.ID)
		}
		out.Stored = done
	}
	return out
}

// maxIntents bounds the (source, asset) pairs held; the stalest are forgotten first. A
// variable so that the test can use a small bound.
var maxIntents = 65536

// pruneLocked runs when a new pair is added. A full sweep happens only when the map has grown
// by a tenth of maxIntents since the last one (so a flood of new, perhaps spoofed, source
// addresses costs amortised O(log n) per event, not a scan of every pair): it forgets pairs
// whose evidence has faded (older than four half-lives, P below 1/16 of what it was) and,
// past nine tenths of maxIntents, the stalest until that is met.
func (e *Engine) pruneLocked(now time.Time) {
	if len(e.intents) < max(e.nextPrune, maxIntents/2) {
		return
	}
	for k, in := range e.intents {
		if now.Sub(in.last) > 4*e.cfg.HalfLife {
			delete(e.intents, k)
		}
	}
	if keep := maxIntents * 9 / 10; len(e.intents) > keep {
		type aged struct {
			k    pairKey
			last time.Time
		}
		all := make([]aged, 0, len(e.intents))
		for k, in := range e.intents {
			all = append(all, aged{k, in.last})
		}
		slices.SortFunc(all, func(a, b aged) int { return a.last.Compare(b.last) })
		for _, a := range all[:len(all)-keep] {
			delete(e.intents, a.k)
		}
	}
	e.nextPrune = len(e.intents) + maxIntents/10
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// assetFor maps an event to an asset: the one it names, else the one owning its
// destination port, else the default.
func (e *Engine) assetFor(ev *sensor.Event) *asset {
	if a, ok := e.assets[ev.Asset]; ok {
		return a
	}
	if n, ok := e.byPort[ev.DestPort]; ok && ev.DestPort != 0 {
		return e.assets[n]
	}
	return e.assets[e.deflt]
}
