package enclave

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/stix"
)

// BenchmarkStateFlush is one flush of the state journal after one new report, with 1,000
// reports already held (about what a node of the 50-peer bench holds after a few minutes):
// the cost the sweep pays once a second while sightings arrive.
func BenchmarkStateFlush(b *testing.B) {
	e := newTestEnclave(b, "lab")
	n := e.start(b.TempDir(), nil, e.baseConfig())
	defer func() { _ = n.Close(); n.stop() }()
	addr := func(i int) stix.Target {
		return stix.AddrTarget(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := range 1000 {
		if _, err := n.Witness(addr(i), "bench", time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	if err := n.saveState(true); err != nil {
		b.Fatal(err)
	}
	i := 1000
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := n.Witness(addr(i), "bench", time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
		if err := n.saveState(true); err != nil {
			b.Fatal(fmt.Errorf("flush: %w", err))
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
