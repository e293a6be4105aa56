package docker

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"
)

var rotations = flag.Int("docker.rotations", 0, "run TestRotationLatency with this many make-before-break cycles (bench/docker-rotation.sh)")

// TestRotationLatency measures make-before-break rotations with the docker driver: start the
// replacement, wait until it answers HTTP, stop and remove the old instance. The figure is
// the time from the start of the replacement to the old instance removed. It only runs when
// -docker.rotations is set, and reports p50/p99; it fails only if a rotation fails.
func TestRotationLatency(t *testing.T) {
	if *rotations <= 0 {
		t.Skip("set -docker.rotations=N to measure rotation latency (see bench/docker-rotation.sh)")
	}
	_, pin := fixture(t)
	d := newTestDriver(t, t.TempDir(), nil)
	ctx := context.Background()
	spec := serverSpec("rot", pin)

	old, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start first instance: %v", err)
	}
	if err := waitHealthy("http://"+old.Address+spec.HealthPath, 1000); err != nil {
		t.Fatal(err)
	}
	var total, starts, healths, stops []time.Duration
	for i := range *rotations {
		t0 := time.Now()
		next, err := d.Start(ctx, spec)
		if err != nil {
			t.Fatalf("rotation %d: start: %v", i, err)
		}
		t1 := time.Now()
		if err := waitHealthy("http://"+next.Address+spec.HealthPath, 1000); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		t2 := time.Now()
		if err := d.Stop(ctx, old); err != nil {
			t.Fatalf("rotation %d: stop old: %v", i, err)
		}
		t3 := time.Now()
		total = append(total, t3.Sub(t0))
		starts = append(starts, t1.Sub(t0))
		healths = append(healths, t2.Sub(t1))
		stops = append(stops, t3.Sub(t2))
		old = next
	}
	if err := d.Stop(ctx, old); err != nil {
		t.Fatalf("stop last: %v", err)
	}
	report := func(name string, ds []time.Duration) string {
		return fmt.Sprintf("%-28s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms", name,
			ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(slices.Max(ds)))
	}
	fmt.Printf("docker rotation latency, %d make-before-break cycles, engine %s\n", len(total), d.Host())
	fmt.Println(report("rotation (start new→old gone)", total))
	fmt.Println(report("  start (create+start)", starts))
	fmt.Println(report("  new healthy (HTTP 200)", healths))
	fmt.Println(report("  stop+remove old", stops))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile p (0..100] of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {1, 1}}
	for _, tt := range tests {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}
