package process_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

// cpuTime is the CPU time (user and system) of this process and of its children that have
// been waited for.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	var t time.Duration
	for _, tv := range []syscall.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		t += time.Duration(tv.Nano())
	}
	return t
}

// BenchmarkStart measures one executor's start: from Start (image verified and copied,
// port drawn, command started — through the sandbox helper when confined) to its first
// 200 answer on /healthz, with the Go net/http demo server, unconfined (isolation=off) and
// confined the agent's default way (isolation=full; root only). Stop is not timed.
//
//	go test -run '^$' -bench BenchmarkStart -benchtime 100x -count 3 ./executor/process/
func BenchmarkStart(b *testing.B) {
	for _, c := range []struct {
		name string
		iso  executor.Isolation
	}{
		{"isolation=off", executor.Isolation{}},
		{"isolation=full", testIsolation},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.iso.Mode != "" && os.Geteuid() != 0 {
				b.Skip("full isolation needs root")
			}
			d, err := process.New(executor.Env{DataDir: b.TempDir(), Isolation: c.iso})
			if err != nil {
				b.Fatal(err)
			}
			spec := processtest.DemoSpec("bench", processtest.Image(b), "nethttp")
			ctx := context.Background()
			durations := make([]time.Duration, 0, b.N)
			stops := make([]time.Duration, 0, b.N)
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				inst, err := d.Start(ctx, spec)
				if err != nil {
					b.Fatal(err)
				}
				for {
					resp, err := http.Get("http://" + inst.Address + "/healthz")
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
					}
					time.Sleep(time.Millisecond)
				}
				durations = append(durations, time.Since(t0))
				b.StopTimer()
				t1 := time.Now()
				if err := d.Stop(ctx, inst); err != nil {
					b.Fatal(err)
				}
				stops = append(stops, time.Since(t1))
				b.StartTimer()
			}
			b.StopTimer()
			// The agent's CPU and its waited-for children's (helper, executor), per start:
			// far less sensitive to a loaded machine than the wall-clock quantiles.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			q := func(ds []time.Duration, p float64) float64 {
				slices.Sort(ds)
				return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(q(durations, 0.50), "p50-ms")
			b.ReportMetric(q(durations, 0.99), "p99-ms")
			b.ReportMetric(q(stops, 0.50), "stop-p50-ms") // Stop is not in ns/op
		})
	}
}
