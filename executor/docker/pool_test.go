package docker

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

var poolRotations = flag.Int("docker.pool-rotations", 0, "run TestPoolRotationLatency with this many pool rotations (bench/docker-rotation.sh)")

// newDockerPool builds an executor.Pool over the docker driver with the given variants.
func newDockerPool(t *testing.T, d *Driver, b *bus.Bus, desired int, specs ...executor.Spec) *executor.Pool {
	t.Helper()
	p, err := executor.NewPool(executor.PoolConfig{
		Variants:       specs,
		Desired:        desired,
		MaxConcurrent:  1,
		HealthInterval: 200 * time.Millisecond,
		DrainTimeout:   time.Second,
	}, map[string]executor.Driver{"docker": d}, nil, b)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	return p
}

// TestPoolWithDocker runs the pool on the docker driver: leftovers of an earlier run are
// cleaned up at start, rotation is make-before-break onto a fresh container and port, a
// quarantined container is kept and replaced, and closing the pool removes the rest.
func TestPoolWithDocker(t *testing.T) {
	_, pin := fixture(t)
	ctx := context.Background()
	dataDir := t.TempDir()

	// An earlier agent run left a container behind.
	earlier := newTestDriver(t, dataDir, nil)
	stale, err := earlier.Start(ctx, serverSpec("stale", pin))
	if err != nil {
		t.Fatalf("Start leftover: %v", err)
	}

	b := bus.New()
	events, cancel := b.Subscribe(256, nil)
	defer cancel()
	d := newTestDriver(t, dataDir, b)
	p := newDockerPool(t, d, b, 2, serverSpec("a", pin), serverSpec("b", pin))
	if err := p.Start(ctx); err != nil {
		t.Fatalf("pool Start: %v", err)
	}
	defer p.Close(context.Background())

	if _, err := d.cli.ContainerInspect(ctx, stale.Handle); err == nil {
		t.Fatal("the earlier run's container survived pool start")
	}
	before := slices.Clone(p.Healthy())
	if len(before) != 2 {
		t.Fatalf("Healthy = %d instances, want 2", len(before))
	}
	for _, inst := range before {
		if err := waitHealthy("http://"+inst.Address+"/healthz", 100); err != nil {
			t.Fatal(err)
		}
	}

	if err := p.RotateAll(ctx); err != nil {
		t.Fatalf("RotateAll: %v", err)
	}
	after := p.Healthy()
	if len(after) != 2 {
		t.Fatalf("Healthy after rotation = %d, want 2", len(after))
	}
	for _, old := range before {
		for _, nu := range after {
			if nu.ID == old.ID || nu.Address == old.Address {
				t.Fatalf("rotation kept %s at %s", old.ID, old.Address)
			}
		}
		if _, err := d.cli.ContainerInspect(ctx, old.Handle); err == nil {
			t.Fatalf("rotated-out container %s still exists", old.ID)
		}
	}

	victim := after[0]
	if err := p.Quarantine(ctx, victim.ID); err != nil {
		t.Fatalf("pool Quarantine: %v", err)
	}
	// The supervisor refills; bounded by attempts, not by time.
	refilled := false
	for range 300 {
		if h := p.Healthy(); len(h) == 2 && !slices.ContainsFunc(h, func(i *executor.Instance) bool { return i.ID == victim.ID }) {
			refilled = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !refilled {
		t.Fatalf("pool did not replace the quarantined instance: %v", p.Healthy())
	}

	p.Close(ctx)
	if l, err := d.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("List after pool Close = %v, %v: want nothing", l, err)
	}
	q, err := d.ListQuarantined(ctx)
	if err != nil || len(q) != 1 || q[0].ID != victim.ID {
		t.Fatalf("ListQuarantined = %v, %v: want the quarantined instance kept", q, err)
	}

	rotations := 0
	for len(events) > 0 {
		if ev := <-events; ev.Kind == executor.EventRotation {
			rotations++
		}
	}
	if rotations != 2 {
		t.Fatalf("%d executor.rotation events, want 2", rotations)
	}
}

// TestPoolRotationLatency measures Pool.Rotate with the docker driver (the duration_s of each
// executor.rotation event: replacement started → healthy and in service → old drained and
// removed). It runs only with -docker.pool-rotations=N.
func TestPoolRotationLatency(t *testing.T) {
	if *poolRotations <= 0 {
		t.Skip("set -docker.pool-rotations=N to measure pool rotation latency (see bench/docker-rotation.sh)")
	}
	_, pin := fixture(t)
	ctx := context.Background()
	b := bus.New()
	events, cancel := b.Subscribe(4*(*poolRotations)+16, bus.KindPrefix(executor.EventRotation))
	defer cancel()
	d := newTestDriver(t, t.TempDir(), b)
	p := newDockerPool(t, d, b, 1, serverSpec("rot", pin))
	if err := p.Start(ctx); err != nil {
		t.Fatalf("pool Start: %v", err)
	}
	defer p.Close(context.Background())
	var ds []time.Duration
	for i := range *poolRotations {
		h := p.Healthy()
		if len(h) != 1 {
			t.Fatalf("rotation %d: %d healthy instances", i, len(h))
		}
		if err := p.Rotate(ctx, h[0].ID); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		for ev := range events {
			if ev.Kind != executor.EventRotation {
				continue
			}
			s, _ := ev.Attrs["duration_s"].(float64)
			ds = append(ds, time.Duration(s*float64(time.Second)))
			break
		}
	}
	fmt.Printf("docker pool rotation latency (executor.Pool.Rotate), %d rotations\n", len(ds))
	fmt.Printf("%-28s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", "rotation (start new→old gone)",
		ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(slices.Max(ds)))
}
