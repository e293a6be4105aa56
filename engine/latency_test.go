package engine

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/countermeasure/nfttest"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/sensor/eve"
	"github.com/proteus-defense/proteus/sensor/fim"
	"github.com/proteus-defense/proteus/store"
)

// latencyConfig acts on the first event (weight above every α of the model) and maps every
// defense to a block, so each new source address is one detection and one nftables rule.
const latencyConfig = `version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
engine:
  model: m.yaml
  assets: [{name: web, device: web}]
  rules:
    - {name: exploit, sensor: eve, category: Attempted Administrator Privilege Gain, stage: S3, attack: a4, weight: 0.95}
    - {name: dissent, sensor: gateway, kind: dissent, stage: S3, attack: a6, weight: 0.95}
  strategies:
    d1: [{kind: block}]
    d2: [{kind: block}]
    d3: [{kind: block}]
    d4: [{kind: block}]
    d5: [{kind: block}]
    d6: [{kind: block}]
    d7: [{kind: block}]
    d8: [{kind: block}]
    d9: [{kind: block}]
`

// latencyRig is the whole detection path with real parts: the EVE sensor tailing a file,
// the engine with the audit store, the countermeasure Manager with the nftables actuator in
// a throwaway network namespace and the gateway blocklist.
type latencyRig struct {
	eveFile string
	bus     *bus.Bus
	applied <-chan bus.Event
	ns      string
}

func newLatencyRig(b *testing.B) *latencyRig {
	ns, fd := nfttest.NetNS(b)
	dir := b.TempDir()
	nft, err := countermeasure.NewNFTables(countermeasure.NFTablesOptions{NetNS: fd})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nft.Close() })
	r := &latencyRig{eveFile: filepath.Join(dir, "eve.json"), bus: bus.New(), ns: ns}
	if err := os.WriteFile(r.eveFile, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	mgr, err := countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dir, Bus: r.bus,
		Actuators: []countermeasure.Actuator{countermeasure.NewBlocklist(), nft}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := mgr.Start(ctx); err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(Options{Config: engineConfig(b, latencyConfig), Model: paperModel(b), Manager: mgr,
		BlockActuators: []string{countermeasure.BlocklistID, countermeasure.NFTablesID}, Store: st, Bus: r.bus,
		Pool: &fakePool{cstar: 2, rate: 0.05}})
	if err != nil {
		b.Fatal(err)
	}
	var cancelSub func()
	r.applied, cancelSub = r.bus.Subscribe(1024, func(ev bus.Event) bool {
		return ev.Kind == countermeasure.EventApplied && ev.Attrs["actuator"] == countermeasure.NFTablesID
	})
	sup := sensor.NewSupervisor([]sensor.Source{eve.New(eve.Options{Path: r.eveFile})}, 256, sensor.Backoff{}, nil)
	done := make(chan struct{}, 4)
	go func() { e.Run(ctx); done <- struct{}{} }()
	go func() { sup.Run(ctx); done <- struct{}{} }()
	go func() {
		for ev := range sup.Events() {
			e.Push(ctx, ev)
		}
		done <- struct{}{}
	}()
	go func() { e.FollowBus(ctx, r.bus); done <- struct{}{} }()
	b.Cleanup(func() {
		cancel()
		for range 4 {
			<-done
		}
		cancelSub()
		mgr.Close()
		st.Close()
	})
	// Wait for the sensor to have opened the file (its first poll), then warm up once.
	time.Sleep(100 * time.Millisecond)
	return r
}

func (r *latencyRig) wait(b *testing.B, target string) {
	for {
		select {
		case ev := <-r.applied:
			if ev.Attrs["target"] == target {
				return
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("no nftables block for %s", target)
		}
	}
}

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}

func srcAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
}

// BenchmarkDetectionToBlock measures, per sensor, the time from the evidence being written
// (an EVE line appended to the file; a dissent event published by the gateway) to the
// nftables rule for its source being in place (the Manager's countermeasure.applied event
// for the nftables actuator, published after the kernel accepted the set update).
//
//	go test -run '^$' -bench DetectionToBlock -benchtime 300x ./engine/
func BenchmarkDetectionToBlock(b *testing.B) {
	b.Run("eve", func(b *testing.B) {
		r := newLatencyRig(b)
		f, err := os.OpenFile(r.eveFile, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			src := srcAddr(i)
			line := eveLine(src.String(), "ET EXPLOIT Apache Struts OGNL injection", "Attempted Administrator Privilege Gain", 1) + "\n"
			t0 := time.Now()
			if _, err := f.WriteString(line); err != nil {
				b.Fatal(err)
			}
			r.wait(b, src.String())
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		report(b, lat)
		if listing := nfttest.List(b, r.ns, countermeasure.NFTable); !strings.Contains(listing, srcAddr(0).String()) {
			b.Fatalf("the first block is not in the kernel:\n%s", listing)
		}
	})
	b.Run("gateway", func(b *testing.B) {
		r := newLatencyRig(b)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			src := srcAddr(i)
			t0 := time.Now()
			r.bus.Publish(bus.Event{Kind: "gateway.dissent", Source: "gateway", Attrs: map[string]any{"client": src.String(),
				"method": "GET", "path": "/api/items", "request": fmt.Sprint(i), "kind": "content", "executor": "e1"}})
			r.wait(b, src.String())
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		report(b, lat)
	})
}

// BenchmarkHandle is the engine's own share of the path: one EVE alert from a new source
// decided (rule, Pr(attack), verdict, stage, cached live solve) and blocked at the gateway
// blocklist, the audit record queued. No kernel.
//
//	go test -run '^$' -bench 'Handle$' ./engine/
func BenchmarkHandle(b *testing.B) {
	dir := b.TempDir()
	bl := countermeasure.NewBlocklist()
	mgr, err := countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: dir, Actuators: []countermeasure.Actuator{bl}})
	if err != nil {
		b.Fatal(err)
	}
	if err := mgr.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer mgr.Close()
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e, err := New(Options{Config: engineConfig(b, latencyConfig), Model: paperModel(b), Manager: mgr,
		BlockActuators: []string{countermeasure.BlocklistID}, Store: st, Pool: &fakePool{cstar: 2, rate: 0.05}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.writer.Close()
	evs := make([]sensor.Event, b.N)
	for i := range evs {
		evs[i] = parse(b, eveLine(srcAddr(i%60000).String(), "ET EXPLOIT x", "Attempted Administrator Privilege Gain", 1))
	}
	e.Handle(context.Background(), evs[0]) // the first solve fills the cache
	b.ResetTimer()
	for i := 1; i < b.N; i++ {
		if d := e.Handle(context.Background(), evs[i]); d == nil || d.Verdict != Act {
			b.Fatalf("event %d: %+v", i, d)
		}
	}
}

// integrityConfig acts on every file-integrity event (weight above every α of the model) at
// S2; half_life 1ms keeps evidence from one iteration from coalescing with the next (the
// AIDE events name no source, so they are one pair).
const integrityConfig = `version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
engine:
  model: m.yaml
  half_life: 1ms
  assets: [{name: web, device: web}]
  rules:
    - {name: tamper, sensor: fim, stage: S2, attack: a3, weight: 0.95}
    - {name: aide, sensor: aide, stage: S2, attack: a3, weight: 0.95}
  strategies:
    d3: [{kind: vigilance}]
    d4: [{kind: vigilance}]
`

// integrityRig runs the engine over real file-integrity sources: the FIM sensor watching one
// executor work dir against its manifest, and the AIDE report source.
func integrityRig(b *testing.B, src sensor.Source) (*Engine, <-chan bus.Event) {
	bs := bus.New()
	e, err := New(Options{Config: engineConfig(b, integrityConfig), Model: paperModel(b), Bus: bs,
		Pool: &fakePool{cstar: 2, rate: 0.05, rotated: make(chan struct{}, 1)}})
	if err != nil {
		b.Fatal(err)
	}
	decided, cancelSub := bs.Subscribe(1024, bus.KindPrefix(EventDecision))
	sup := sensor.NewSupervisor([]sensor.Source{src}, 256, sensor.Backoff{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { e.Run(ctx); done <- struct{}{} }()
	go func() { sup.Run(ctx); done <- struct{}{} }()
	go func() {
		for ev := range sup.Events() {
			e.Push(ctx, ev)
		}
		done <- struct{}{}
	}()
	b.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
		cancelSub()
	})
	time.Sleep(100 * time.Millisecond) // the sources open their watches
	return e, decided
}

func waitDecision(b *testing.B, decided <-chan bus.Event) {
	select {
	case <-decided:
	case <-time.After(10 * time.Second):
		b.Fatal("no decision")
	}
}

// settle waits until the engine has handled n events in all, then drops the decisions
// published meanwhile, so the next iteration waits for its own.
func settle(b *testing.B, e *Engine, decided <-chan bus.Event, n uint64) {
	for i := 0; e.Stats().Events < n; i++ {
		if i == 10000 {
			b.Fatalf("engine handled %d events, want %d", e.Stats().Events, n)
		}
		time.Sleep(time.Millisecond)
	}
	for len(decided) > 0 {
		<-decided
	}
}

// BenchmarkIntegrityDetection measures the time from the evidence being on disk to the
// engine's decision on it (engine.decision on the bus; for an executor's file the quarantine
// call has been made by then): fim, a file of a running executor's work dir rewritten (the
// sensor waits fim.Settle, 20 ms, for the write to finish before it hashes); aide, a new
// AIDE report (the real aide 0.18.3 format of sensor/fim/testdata) renamed into place
// (the source also waits Settle). How soon aide --check runs after a change is the
// operator's schedule, not measured here.
//
//	go test -run '^$' -bench IntegrityDetection -benchtime 200x ./engine/
func BenchmarkIntegrityDetection(b *testing.B) {
	b.Run("fim", func(b *testing.B) {
		dir := b.TempDir()
		page := filepath.Join(dir, "site", "index.html")
		if err := os.MkdirAll(filepath.Dir(page), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(page, []byte("hello\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		f := fim.New(fim.Options{})
		f.SetExecutors([]fim.Executor{{ID: "e1", Variant: "a", Dir: dir, Manifest: map[string]string{
			"site/index.html": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}}})
		e, decided := integrityRig(b, f)
		stage := b.TempDir() // the same file system, outside the watched tree
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			// The new content is renamed into place, as a deployment (or an intruder's
			// tool) would: one state of the file, one event.
			tmp := filepath.Join(stage, "index.html")
			if err := os.WriteFile(tmp, []byte(fmt.Sprintf("defaced %d\n", i)), 0o644); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := os.Rename(tmp, page); err != nil {
				b.Fatal(err)
			}
			waitDecision(b, decided)
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			settle(b, e, decided, uint64(i+1))
			b.StartTimer()
		}
		b.StopTimer()
		report(b, lat)
	})
	b.Run("aide", func(b *testing.B) {
		tmpl, err := os.ReadFile("../sensor/fim/testdata/aide-0.18.3-report.txt")
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		reportFile := filepath.Join(dir, "report.txt")
		e, decided := integrityRig(b, fim.NewAIDE(fim.AIDEOptions{Report: reportFile, Poll: time.Hour}))
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			// A distinct report each time (its paths name the iteration): one change, one
			// addition and one removal, three events (the later two may be coalesced into
			// the first decision's pair).
			rep := strings.ReplaceAll(string(tmpl), "/tmp/aidet/w/", fmt.Sprintf("/srv/www/%d/", i))
			tmp := reportFile + ".tmp"
			if err := os.WriteFile(tmp, []byte(rep), 0o600); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := os.Rename(tmp, reportFile); err != nil {
				b.Fatal(err)
			}
			waitDecision(b, decided) // on the first of the report's entries
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			settle(b, e, decided, uint64(3*(i+1)))
			b.StartTimer()
		}
		b.StopTimer()
		report(b, lat)
	})
}
