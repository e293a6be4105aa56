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
