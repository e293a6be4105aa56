package executor_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

// BenchmarkRotation measures, with the process driver and a Go (net/http) demo server, the
// time from the start of a rotation to the old instance stopped: copy and verify the image,
// start the replacement on a fresh port, wait until it is healthy, put it in service, drain
// and stop the old one (SIGTERM, graceful exit). It reports p50 and p99 in milliseconds,
// with the executor unconfined (isolation=off) and confined the agent's default way
// (isolation=full: own uid, namespaces, cgroups, nftables, Landlock, seccomp; root only).
//
//	go test -run '^$' -bench BenchmarkRotation -benchtime 200x -count 3 ./executor/
func BenchmarkRotation(b *testing.B) {
	for _, c := range []struct {
		name string
		iso  executor.Isolation
	}{
		{"isolation=off", executor.Isolation{}},
		{"isolation=full", executor.Isolation{Mode: executor.IsolationAuto, UIDFirst: 600000, UIDCount: 1000,
			Memory: 512 << 20, Processes: 256, OpenFiles: 4096, CPU: 1}},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.iso.Mode != "" && os.Geteuid() != 0 {
				b.Skip("full isolation needs root")
			}
			benchRotation(b, c.iso)
		})
	}
}

func benchRotation(b *testing.B, iso executor.Isolation) {
	img := processtest.Image(b)
	f := newPoolIsolated(b, executor.PoolConfig{
		Variants: []executor.Spec{processtest.DemoSpec("go-nethttp", img, "nethttp")}, Desired: 1, MaxConcurrent: 1,
	}, iso)
	ctx := context.Background()
	if err := f.pool.Start(ctx); err != nil {
		b.Fatal(err)
	}
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		id := f.pool.Healthy()[0].ID
		t0 := time.Now()
		if err := f.pool.Rotate(ctx, id); err != nil {
			b.Fatal(err)
		}
		durations = append(durations, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(durations)
	q := func(p float64) float64 {
		return float64(durations[min(len(durations)-1, int(p*float64(len(durations))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(durations[len(durations)-1])/float64(time.Millisecond), "max-ms")
}
