package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/sensor/eve"
	"github.com/proteus-defense/proteus/store"
)

const modelFile = "../examples/mttegdm-paper.yaml"

func paperModel(t testing.TB) *game.Model {
	t.Helper()
	data, err := os.ReadFile(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := game.ParseModel(modelFile, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testConfig is an engine config for a three-stage attack on the web asset: a scan (S1),
// an exploit attempt (S2), command and control (S3).
const testConfig = `version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
engine:
  model: m.yaml
  assets: [{name: web, device: web, ports: [8080]}]
  rules:
    - {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.5}
    - {name: exploit, sensor: eve, signature: "^ET EXPLOIT", stage: S2, attack: a3, weight: 0.6}
    - {name: c2, sensor: eve, category: A Network Trojan was detected, stage: S3, attack: a4, weight: 0.7}
    - {name: dissent, sensor: gateway, kind: dissent, stage: S1, attack: a2, weight: 0.45}
  strategies:
    d1: [{kind: exec, command: [/bin/true, "{source}"]}]
    d2: [{kind: vigilance, level: 2}]
    d3: [{kind: rotate}]
    d4: [{kind: rotate}, {kind: vigilance, level: 2}]
    d5: [{kind: rotate}]
    d6: [{kind: block}, {kind: rotate}]
    d7: [{kind: block}]
    d8: [{kind: vigilance, level: 3}]
    d9: [{kind: vigilance, level: 3}]
`

func engineConfig(t testing.TB, yaml string) config.Engine {
	t.Helper()
	c, err := config.Parse("engine.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c.Engine
}

type fakePool struct {
	mu      sync.Mutex
	log     []string
	cstar   int
	rate    float64
	rotated chan struct{}
}

func (p *fakePool) CStar() int            { return p.cstar }
func (p *fakePool) RotationRate() float64 { return p.rate }
func (p *fakePool) Quarantine(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, "quarantine "+id)
	return nil
}

func (p *fakePool) Rotate(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, "rotate "+id)
	return nil
}
func (p *fakePool) RotateAll(context.Context) error {
	select {
	case p.rotated <- struct{}{}:
	default:
	}
	return nil
}

type rig struct {
	e     *Engine
	bl    *countermeasure.Blocklist
	vig   *countermeasure.Vigilance
	mgr   *countermeasure.Manager
	st    *store.Store
	pool  *fakePool
	clock *time.Time
	bus   *bus.Bus
}

// clockMu guards the test clocks: the engine's audit writer reads them from its goroutine.
var clockMu sync.Mutex

func advance(t *time.Time, d time.Duration) {
	clockMu.Lock()
	defer clockMu.Unlock()
	*t = t.Add(d)
}

func newRig(t testing.TB, dir string, now *time.Time) *rig {
	t.Helper()
	r := &rig{bl: countermeasure.NewBlocklist(), bus: bus.New(), clock: now,
		pool: &fakePool{cstar: 2, rate: 0.05, rotated: make(chan struct{}, 16)}}
	r.vig = countermeasure.NewVigilance(r.bus)
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return *r.clock }
	var err error
	r.mgr, err = countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dir, Actuators: []countermeasure.Actuator{r.bl, r.vig}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.st, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	r.e, err = New(Options{Config: engineConfig(t, testConfig), Model: paperModel(t), Manager: r.mgr,
		BlockActuators: []string{countermeasure.BlocklistID}, VigilanceActuator: countermeasure.VigilanceID,
		Pool: r.pool, Store: r.st, Bus: r.bus, Now: clock, Exec: func(context.Context, []string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) close() {
	r.e.wg.Wait()
	r.e.writer.Close()
	r.mgr.Close()
	r.st.Close()
}

func eveLine(src, sig, category string, sev int) string {
	return fmt.Sprintf(`{"timestamp":"2026-01-02T03:04:05.000000+0000","flow_id":1,"event_type":"alert","src_ip":%q,"src_port":40000,"dest_ip":"192.0.2.10","dest_port":8080,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":1,"rev":1,"signature":%q,"category":%q,"severity":%d},"app_proto":"http"}`, src, sig, category, sev)
}

func parse(t testing.TB, line string) sensor.Event {
	t.Helper()
	e, err := eve.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// wantChoice is the game's choice for a stage with the parameters the engine recorded,
// computed here straight from the game package.
func wantChoice(t *testing.T, m *game.Model, d store.Decision) (Choice, Detail) {
	t.Helper()
	var det Detail
	if err := json.Unmarshal(d.Detail, &det); err != nil {
		t.Fatal(err)
	}
	sol, err := game.Solve(liveModel(m, det.Live))
	if err != nil {
		t.Fatal(err)
	}
	sr := sol.Stages[d.Stage-1]
	return choose(&sr, ""), det
}

func TestMultiStageAttackMovesStagesAndActsOnTheGamesChoice(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, dir, &now)
	ctx := context.Background()
	m := paperModel(t)
	attacker := "203.0.113.7"
	steps := []struct {
		line  string
		stage int
	}{
		{eveLine(attacker, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2), 1},
		{eveLine(attacker, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2), 1},
		{eveLine(attacker, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2), 1},
		{eveLine(attacker, "ET EXPLOIT Apache Struts RCE attempt", "Attempted Administrator Privilege Gain", 1), 2},
		{eveLine(attacker, "ET EXPLOIT Apache Struts RCE attempt", "Attempted Administrator Privilege Gain", 1), 2},
		{eveLine(attacker, "ET MALWARE Cobalt Strike Beacon", "A Network Trojan was detected", 1), 3},
	}
	var decided []store.Decision
	for i, s := range steps {
		advance(&now, time.Second)
		d := r.e.Handle(ctx, parse(t, s.line))
		if d == nil {
			continue
		}
		if err := <-d.Stored; err != nil {
			t.Fatal(err)
		}
		if d.Stage != s.stage {
			t.Fatalf("step %d: stage %d, want %d (%+v)", i, d.Stage, s.stage, d.Decision)
		}
		t.Logf("step %d: %s stage %d p=%.3f α=%.2f β=%.2f strategy %s signal %s cms %+v", i, d.Verdict, d.Stage, d.Probability, d.Alpha, d.Beta, d.Strategy, d.Signal, d.Countermeasures)
		decided = append(decided, d.Decision)
	}
	var stages []int
	acted := 0
	for _, d := range decided {
		stages = append(stages, d.Stage)
		if d.Source != attacker || d.Asset != "web" || d.Alpha <= d.Beta {
			t.Fatalf("decision %+v", d)
		}
		ch, det := wantChoice(t, m, d)
		if d.Strategy != ch.Defense || d.Signal != ch.Signal || det.Live.CStar != 2 {
			t.Fatalf("stage %d: strategy %s signal %s, the game chose %s %s (live %+v)", d.Stage, d.Strategy, d.Signal, ch.Defense, ch.Signal, det.Live)
		}
		if d.Verdict != Act {
			continue
		}
		acted++
		// The countermeasures are exactly the configured ones of the chosen strategy.
		var kinds []string
		for _, c := range d.Countermeasures {
			kinds = append(kinds, c.Kind)
			if c.Error != "" {
				t.Fatalf("countermeasure error %+v", c)
			}
		}
		var want []string
		for _, c := range r.e.cfg.Strategies[d.Strategy] {
			want = append(want, c.Kind)
		}
		if strings.Join(kinds, ",") != strings.Join(want, ",") {
			t.Fatalf("stage %d strategy %s: countermeasures %v, want %v", d.Stage, d.Strategy, kinds, want)
		}
	}
	if fmt.Sprint(stages[len(stages)-1]) != "3" || stages[0] != 1 || acted == 0 {
		t.Fatalf("stages %v, acted %d", stages, acted)
	}
	// Everything is in the store, with the evidence.
	ds, err := r.st.List(ctx, store.Filter{Source: attacker})
	if err != nil || len(ds) != len(decided) {
		t.Fatalf("stored %d, decided %d (%v)", len(ds), len(decided), err)
	}
	n := 0
	for _, d := range ds {
		n += len(d.Evidence)
	}
	if n != len(steps) || !strings.Contains(ds[0].Evidence[0].Excerpt, `"event_type":"alert"`) {
		t.Fatalf("%d evidence for %d events; first %+v", n, len(steps), ds[0].Evidence)
	}
	r.close()

	// A restart keeps the asset at its stage: a new scan does not take it back to S1.
	advance(&now, time.Minute)
	r2 := newRig(t, dir, &now)
	defer r2.close()
	d := r2.e.Handle(ctx, parse(t, eveLine("198.51.100.9", "ET SCAN x", "Attempted Information Leak", 2)))
	if d == nil || d.Stage != 3 {
		t.Fatalf("after restart: %+v", d)
	}
}

func TestVerdictFollowsThresholds(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, t.TempDir(), &now)
	defer r.close()
	ctx := context.Background()
	// One dissent (w = 0.45) lies between β and α of the web device: defer, vigilance raised.
	// Repeated by the same client it crosses α: act, and the client is blocked.
	client := netip.MustParseAddr("198.51.100.23")
	var verdicts []string
	for i := 0; i < 4; i++ {
		advance(&now, time.Second)
		ev, ok := FromGateway(bus.Event{Time: now, Kind: "gateway.dissent", Attrs: map[string]any{"client": client.String(),
			"method": "POST", "path": "/login", "request": fmt.Sprintf("req-%d", i), "kind": "content", "executor": "e1", "variant": "a"}})
		if !ok {
			t.Fatal("not a gateway event")
		}
		if d := r.e.Handle(ctx, ev); d != nil {
			verdicts = append(verdicts, d.Verdict)
			if d.Verdict == Act {
				if !r.bl.Blocked(client) {
					t.Fatalf("act on dissent without a block: %+v", d.Countermeasures)
				}
				if !strings.Contains(d.Evidence[0].Summary, "POST /login") {
					t.Fatalf("evidence %+v", d.Evidence)
				}
			}
		}
	}
	if strings.Join(verdicts, ",") != "defer,act" {
		t.Fatalf("verdicts %v", verdicts)
	}
	if r.vig.Level() < 1 {
		t.Fatal("defer raised no vigilance")
	}
	// The block is reverted after its TTL.
	advance(&now, r.e.cfg.BlockTTL+time.Second)
	if _, err := r.mgr.RevertExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if r.bl.Blocked(client) {
		t.Fatal("block outlived its TTL")
	}
}

func TestIntentMath(t *testing.T) {
	h := 10 * time.Minute
	t0 := time.Unix(0, 0)
	var in intent
	in.add(t0, 0.5, h, true)
	in.add(t0, 0.5, h, false) // a peer's: in p, not in local
	if math.Abs(in.p-0.75) > 1e-12 || math.Abs(in.local-0.5) > 1e-12 {
		t.Fatalf("noisy-OR of two 0.5: %v", in.p)
	}
	if got := in.probability(t0.Add(h), h); math.Abs(got-0.375) > 1e-12 {
		t.Fatalf("after one half-life: %v", got)
	}
	if got := in.localProbability(t0.Add(h), h); math.Abs(got-0.25) > 1e-12 {
		t.Fatalf("own evidence after one half-life: %v", got)
	}
	in.add(t0.Add(h), 0.5, h, true)
	if math.Abs(in.p-(1-(1-0.375)*0.5)) > 1e-12 || math.Abs(in.local-(1-(1-0.25)*0.5)) > 1e-12 {
		t.Fatalf("faded then combined: %v %v", in.p, in.local)
	}
	if pi := in.intensity(60); pi < minIntensity || pi > 1 {
		t.Fatalf("intensity %v", pi)
	}
}

func TestChainMoves(t *testing.T) {
	c := newChain(paperModel(t))
	for _, tc := range []struct {
		cur, to, want int
	}{
		{-1, 2, 2}, // first evidence places the asset
		{0, 1, 1},  // S1 -> S2: η = 0.6
		{0, 2, 2},  // S1 -> S3 through S2: 0.6 · 0.85/1.55 ≈ 0.33
		{0, 4, 0},  // S1 -> S5: too unlikely, stays
		{2, 0, 2},  // back to S1: stays
		{3, 3, 3},
	} {
		if got, p := c.move(tc.cur, tc.to, 0.3); got != tc.want {
			t.Errorf("move(%d, %d) = %d (path %v), want %d", tc.cur, tc.to, got, p, tc.want)
		}
	}
}

func TestConfigReferencesCheckedAgainstModel(t *testing.T) {
	cfg := engineConfig(t, strings.NewReplacer("stage: S3", "stage: S9", "attack: a3", "attack: a7", "device: web", "device: mainframe",
		"d9:", "d99:").Replace(testConfig))
	_, err := New(Options{Config: cfg, Model: paperModel(t)})
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"engine.rules[2].stage: unknown stage \"S9\"", "engine.rules[1].attack: attack \"a7\" is not one of stage S2's",
		"engine.assets[0].device: unknown device \"mainframe\"", "engine.strategies.d99: unknown defense"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in %s", want, msg)
		}
	}
	located := config.LocateProblems("engine.yaml", []byte(testConfig), ce.Problems)
	if located == nil || !strings.Contains(located.Error(), "engine.yaml:10:") {
		t.Fatalf("located: %v", located)
	}
}

func TestQueueDropsWhenFull(t *testing.T) {
	cfg := engineConfig(t, testConfig)
	cfg.Queue = 16
	e, err := New(Options{Config: cfg, Model: paperModel(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		e.Submit(sensor.Event{Sensor: "eve"})
	}
	if s := e.Stats(); s.Dropped != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestUnmatchedAndNoModelChange(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, t.TempDir(), &now)
	defer r.close()
	if d := r.e.Handle(context.Background(), parse(t, eveLine("203.0.113.1", "GPL ICMP PING", "Misc activity", 3))); d != nil {
		t.Fatalf("unmatched event decided: %+v", d)
	}
	if r.e.Stats().Unmatched != 1 {
		t.Fatal("not counted")
	}
}

func TestFromEnclave(t *testing.T) {
	ev, ok := FromEnclave(bus.Event{Kind: "enclave.decision", Subject: "203.0.113.9/32", Attrs: map[string]any{
		"decision": "act", "evidence": 0.91, "reporter": "12D3KooWpeer", "indicator": "indicator--1"}})
	if !ok || ev.Sensor != "enclave" || ev.Kind != "sighting" || ev.Category != "act" || ev.Source.String() != "203.0.113.9" ||
		!strings.Contains(ev.Summary, "0.910") || ev.Strength != 0.91 {
		t.Fatalf("%+v", ev)
	}
	if ev, _ := FromEnclave(bus.Event{Kind: "enclave.decision", Subject: "198.51.100.0/24"}); ev.Source.IsValid() {
		t.Fatalf("a /24 named a source: %+v", ev)
	}
	if _, ok := FromEnclave(bus.Event{Kind: "gateway.dissent"}); ok {
		t.Fatal("not an enclave event")
	}
	// Through the bus into a decision.
	cfg := engineConfig(t, strings.Replace(testConfig, "  strategies:\n",
		"    - {name: peer, sensor: enclave, kind: sighting, category: act, stage: S1, attack: a1, weight: 0.99}\n  strategies:\n", 1))
	b := bus.New()
	e, err := New(Options{Config: cfg, Model: paperModel(t), Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	decided, cancelSub := b.Subscribe(4, bus.KindPrefix(EventDecision))
	defer cancelSub()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { e.Run(ctx); done <- struct{}{} }()
	go func() { e.FollowBus(ctx, b); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	for n := 0; ; n++ {
		if n == 500 {
			t.Fatalf("no decision on the sighting; stats %+v", e.Stats())
		}
		b.Publish(bus.Event{Kind: "enclave.decision", Subject: "203.0.113.9/32", Attrs: map[string]any{"decision": "act", "evidence": 0.91}})
		select {
		case d := <-decided:
			if d.Attrs["verdict"] != Act || d.Attrs["source"] != "203.0.113.9" {
				t.Fatalf("%+v", d)
			}
			return
		case <-time.After(20 * time.Millisecond): // FollowBus may not have subscribed yet
		}
	}
}

// A tampered executor is quarantined until engine.max_quarantined are, then rotated: the
// frozen copies an attacker can cause are bounded.
func TestQuarantineBounded(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := engineConfig(t, strings.Replace(testConfig, "  strategies:\n",
		"    - {name: tamper, sensor: fim, stage: S2, attack: a3, weight: 0.95}\n  strategies:\n", 1)+"  max_quarantined: 2\n")
	pool := &fakePool{cstar: 2, rate: 0.05}
	e, err := New(Options{Config: cfg, Model: paperModel(t), Pool: pool, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("e%d", i)
		d := e.Handle(context.Background(), sensor.Event{Sensor: "fim", Kind: "file.changed", Path: "/x", Attrs: map[string]string{"executor": id}})
		if d == nil { // coalesced with the previous decision: the executor would stay in service
			t.Fatalf("event %d coalesced; the tampered executor %s stays in service", i, id)
		}
	}
	if got := strings.Join(pool.log, ","); got != "quarantine e0,quarantine e1,rotate e2,rotate e3" {
		t.Fatalf("pool calls %s", got)
	}
}

// A flood of distinct (spoofed) source addresses keeps the pairs bounded.
func TestIntentsBounded(t *testing.T) {
	defer func(n int) { maxIntents = n }(maxIntents)
	maxIntents = 2000
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e, err := New(Options{Config: engineConfig(t, testConfig), Model: paperModel(t), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ev := parse(t, eveLine("198.18.0.1", "ET SCAN x", "Attempted Information Leak", 2))
	for i := 0; i < maxIntents+maxIntents/2; i++ {
		ev.Source = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		e.Handle(context.Background(), ev)
		if len(e.intents) > maxIntents {
			t.Fatalf("%d pairs after %d sources", len(e.intents), i+1)
		}
	}
}

// Blocks are bounded by engine.max_blocks; an expired one frees its place.
func TestBlocksBounded(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, t.TempDir(), &now)
	defer r.close()
	r.e.cfg.MaxBlocks = 2
	a := &asset{Asset: config.Asset{Name: "web"}}
	blockOf := func(src string) store.Countermeasure {
		return r.e.block(context.Background(), a, sensor.Event{Source: netip.MustParseAddr(src)}, "d", time.Minute, *r.clock)[0]
	}
	for _, src := range []string{"198.18.0.1", "198.18.0.2", "198.18.0.1"} {
		if c := blockOf(src); c.Error != "" {
			t.Fatalf("%s: %+v", src, c)
		}
	}
	if c := blockOf("198.18.0.3"); !strings.Contains(c.Error, "max_blocks") || r.bl.Blocked(netip.MustParseAddr("198.18.0.3")) {
		t.Fatalf("third address: %+v", c)
	}
	advance(&now, 2*time.Minute)
	if c := blockOf("198.18.0.3"); c.Error != "" {
		t.Fatalf("after expiry: %+v", c)
	}
}

func TestTightenFor(t *testing.T) {
	v := config.Vigilance{RotationFactor: 0.5, MinInterval: 10 * time.Second, MinRebuildThreshold: 2}
	for _, c := range []struct {
		level, maxK, k, thr int
		want                Tightening
	}{
		{0, 0, 3, 5, Tightening{0, 3, 5, 1}},
		{1, 0, 3, 5, Tightening{1, 4, 3, 0.5}},
		{2, 0, 3, 5, Tightening{2, 5, 2, 0.25}},
		{5, 0, 3, 5, Tightening{5, 5, 2, 0.03125}}, // k capped at k+2, threshold at the minimum
		{3, 4, 3, 0, Tightening{3, 4, 0, 0.125}},   // never rebuilds stays never
		{2, 2, 3, 1, Tightening{2, 3, 1, 0.25}},    // max_k below k: k stays
	} {
		v.MaxK = c.maxK
		if got := TightenFor(c.level, v, c.k, c.thr); got != c.want {
			t.Errorf("level %d max_k %d k %d t %d: %+v, want %+v", c.level, c.maxK, c.k, c.thr, got, c.want)
		}
	}
}

// Peer sightings are evidence weighted by the reporters' reputation (the enclave's combined
// evidence scales the rule's weight); without the enclave's quorum (its verdict defer) they
// alone never make an act, however many arrive, but with this agent's own evidence they do.
// A block on own evidence is shared with the enclave, once per source within half its TTL,
// and the enclave's echo of that sighting is not taken for new evidence.
func TestEnclaveEvidenceAndSharing(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := engineConfig(t, strings.Replace(testConfig, "  strategies:\n",
		"    - {name: peer, sensor: enclave, kind: sighting, stage: S1, attack: a1, weight: 0.99}\n  strategies:\n", 1))
	var mu sync.Mutex
	var shared []Sighting
	bl := countermeasure.NewBlocklist()
	mgr, err := countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: t.TempDir(), Actuators: []countermeasure.Actuator{bl},
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer mgr.Close() // its journal writes end before the temporary dir goes
	e, err := New(Options{Config: cfg, Model: paperModel(t), Manager: mgr, BlockActuators: []string{countermeasure.BlocklistID},
		Now: func() time.Time { return now }, Share: func(_ context.Context, s Sighting) error {
			mu.Lock()
			defer mu.Unlock()
			shared = append(shared, s)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	peer := func(src, verdict string, evidence float64) sensor.Event {
		ev, ok := FromEnclave(bus.Event{Kind: "enclave.decision", Subject: src + "/32", Attrs: map[string]any{
			"decision": verdict, "evidence": evidence, "reporter": "12D3KooWliar", "event": "sighting"}})
		if !ok {
			t.Fatal("not evidence")
		}
		return ev
	}
	ctx := context.Background()
	// A low-trust reporter: evidence 0.3 counts 0.297.
	d := e.Handle(ctx, peer("203.0.113.40", "defer", 0.3))
	if d == nil || d.Verdict != Defer || math.Abs(d.Probability-0.297) > 1e-9 {
		t.Fatalf("low-trust sighting: %+v", d)
	}
	// Colluders below the quorum: Pr(attack) passes α on their reports alone, still defer.
	for i := 0; i < 10; i++ {
		now = now.Add(time.Second)
		d = e.Handle(ctx, peer("203.0.113.40", "defer", 0.9))
		if d != nil && d.Verdict == Act {
			t.Fatalf("peer reports without the quorum acted: %+v", d)
		}
	}
	if bl.Blocked(netip.MustParseAddr("203.0.113.40")) {
		t.Fatal("blocked on peer reports alone")
	}
	// This agent's own alert on the same source: now it acts, and shares the detection (the
	// evidence that triggered the block is its own).
	now = now.Add(time.Second)
	d = e.Handle(ctx, parse(t, eveLine("203.0.113.40", "ET MALWARE C2 beacon", "A Network Trojan was detected", 1)))
	if d == nil || d.Verdict != Act || !bl.Blocked(netip.MustParseAddr("203.0.113.40")) {
		t.Fatalf("own evidence with the peers': %+v", d)
	}
	// The enclave's quorum (its act) lets peer reports act alone.
	now = now.Add(time.Second)
	d = e.Handle(ctx, peer("203.0.113.41", "act", 0.95))
	if d == nil || d.Verdict != Act || !bl.Blocked(netip.MustParseAddr("203.0.113.41")) {
		t.Fatalf("quorum sighting: %+v", d)
	}
	e.wg.Wait()
	mu.Lock()
	if len(shared) != 1 || shared[0].Source.String() != "203.0.113.40" || shared[0].Confidence < 86 || shared[0].TTL != 10*time.Minute {
		t.Fatalf("shared %+v, want one sighting of 203.0.113.40 (never the peers' 203.0.113.41)", shared)
	}
	mu.Unlock()
	var kinds []string
	for _, c := range d.Countermeasures {
		kinds = append(kinds, c.Kind)
	}
	if slices.Contains(kinds, "share") {
		t.Fatalf("a block on peer evidence was shared: %v", kinds)
	}
	// The enclave's echo of our own sighting is not new evidence; an operator's own
	// publish (not shared by the engine) is.
	echo := peer("203.0.113.40", "act", 1)
	echo.Attrs["event"] = "local"
	if !e.ownSighting(echo) {
		t.Fatal("the echo of a shared sighting counts as evidence")
	}
	op := peer("203.0.113.99", "act", 1)
	op.Attrs["event"] = "local"
	if e.ownSighting(op) {
		t.Fatal("an operator's publish was taken for the engine's own")
	}
	// Half the block's TTL later, a new own act on the source renews the sighting.
	now = now.Add(6 * time.Minute)
	if d := e.Handle(ctx, parse(t, eveLine("203.0.113.40", "ET MALWARE C2 beacon", "A Network Trojan was detected", 1))); d == nil || d.Verdict != Act {
		t.Fatalf("renewed act: %+v", d)
	}
	e.wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(shared) != 2 || shared[1].Source.String() != "203.0.113.40" {
		t.Fatalf("not shared again after half the TTL: %+v", shared)
	}
}

// An executor.denied event (as the process driver publishes it) is evidence about that
// executor: with a rule for it, the engine acts and quarantines exactly that executor, and
// the decision records the refusal.
func TestExecutorDeniedIsEvidence(t *testing.T) {
	cfg := engineConfig(t, strings.Replace(testConfig, "  strategies:\n",
		"    - {name: refused, sensor: executor, kind: denied, stage: S2, attack: a3, weight: 0.95}\n  strategies:\n", 1))
	pool := &fakePool{cstar: 2, rate: 0.05, rotated: make(chan struct{}, 16)}
	b := bus.New()
	e, err := New(Options{Config: cfg, Model: paperModel(t), Pool: pool, Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	be := bus.Event{Kind: executor.EventDenied, Source: "executor/process", Subject: "go-raw-0123456789ab",
		Attrs: executor.Denial{Variant: "go-raw", Reason: executor.DeniedFile, Attempted: "open /var/lib/proteus/api.token for read",
			RefusedBy: "fanotify", Extra: map[string]any{"path": "/var/lib/proteus/api.token", "access": "read"}}.Attrs()}
	ev, ok := FromExecutor(be)
	if !ok || ev.Sensor != "executor" || ev.Kind != "denied" || ev.Category != "file" || ev.Attrs["executor"] != "go-raw-0123456789ab" ||
		ev.Path != "/var/lib/proteus/api.token" || !strings.Contains(ev.Summary, "open /var/lib/proteus/api.token for read (refused by fanotify; confidentiality)") ||
		!strings.Contains(ev.Excerpt, "access=read") {
		t.Fatalf("%+v", ev)
	}
	if _, ok := FromExecutor(bus.Event{Kind: "executor.denied"}); ok {
		t.Fatal("an event naming no executor is evidence")
	}
	decided, cancelSub := b.Subscribe(4, bus.KindPrefix(EventDecision))
	defer cancelSub()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { e.Run(ctx); done <- struct{}{} }()
	go func() { e.FollowBus(ctx, b); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	for n := 0; ; n++ {
		if n == 500 {
			t.Fatalf("no decision on the refusal; stats %+v", e.Stats())
		}
		b.Publish(be)
		select {
		case d := <-decided:
			if d.Attrs["verdict"] != Act {
				t.Fatalf("%+v", d)
			}
			pool.mu.Lock()
			defer pool.mu.Unlock()
			if len(pool.log) == 0 || pool.log[0] != "quarantine go-raw-0123456789ab" {
				t.Fatalf("pool calls %v", pool.log)
			}
			return
		case <-time.After(20 * time.Millisecond): // FollowBus may not have subscribed yet
		}
	}
}

// The DNS front's dissent is evidence about the executor, never about the client who asked:
// a poisoned resolver dissents on every client's query, and blocking those clients would
// punish the victims. However many such dissents arrive, no client is blocked.
func TestDNSDissentBlocksNoClient(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newRig(t, t.TempDir(), &now)
	defer r.close()
	ctx := context.Background()
	acted := false
	for i := range 8 {
		advance(&now, time.Second)
		client := netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 10+i%2))
		ev, ok := FromGateway(bus.Event{Time: now, Kind: "gateway.dissent", Source: "dns", Attrs: map[string]any{
			"client": client.String(), "method": "QUERY", "path": "www.proteus.lab. A", "request": fmt.Sprintf("dns-%d", i),
			"kind": "content", "executor": "unbound-1", "variant": "unbound"}})
		if !ok {
			t.Fatal("not a gateway event")
		}
		if ev.Source.IsValid() {
			t.Fatalf("DNS dissent names the client %s as its source", ev.Source)
		}
		if ev.Attrs["executor"] != "unbound-1" || ev.Attrs["client"] != client.String() || !strings.Contains(ev.Summary, "by unbound-1") {
			t.Fatalf("evidence does not name the executor and the asking client: %+v", ev)
		}
		d := r.e.Handle(ctx, ev)
		if d != nil && d.Verdict == Act {
			acted = true
		}
		for _, c := range []string{"198.51.100.10", "198.51.100.11"} {
			if r.bl.Blocked(netip.MustParseAddr(c)) {
				t.Fatalf("client %s blocked for a DNS executor's dissent (decision %+v)", c, d)
			}
		}
	}
	if !acted {
		t.Fatal("no act decision: the dissents stayed below α, so the test shows nothing")
	}
	// The HTTP gateway's dissent still names its client.
	ev, _ := FromGateway(bus.Event{Kind: "gateway.dissent", Source: "gateway", Attrs: map[string]any{"client": "198.51.100.7"}})
	if ev.Source != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("HTTP dissent's source %v", ev.Source)
	}
}
