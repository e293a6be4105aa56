package kubernetes

import (
	"context"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/proteus-defense/proteus/executor"
)

// timedDriver times each Start (create to Ready as the driver's watch sees it).
type timedDriver struct {
	*Driver
	mu     sync.Mutex
	starts map[string]time.Duration // pod -> Start duration
}

func (d *timedDriver) Start(ctx context.Context, spec executor.Spec) (*executor.Instance, error) {
	t0 := time.Now()
	inst, err := d.Driver.Start(ctx, spec)
	if err == nil {
		d.mu.Lock()
		d.starts[inst.Handle] = time.Since(t0)
		d.mu.Unlock()
	}
	return inst, err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestFiftyExecutors measures, with 50 executors, the API requests per rotation and the
// driver's own time from "start" to "new pod Ready" with the scheduler's and kwok's part (pod
// seen created to pod seen Ready, by a separate watch) subtracted. Figures go to
// docs/benchmarks.md; run with PROTEUS_K8S_BENCH=1 (it is a measurement, not a check).
func TestFiftyExecutors(t *testing.T) {
	if os.Getenv("PROTEUS_K8S_BENCH") == "" {
		t.Skip("a measurement: PROTEUS_K8S_BENCH=1 go test -run TestFiftyExecutors -v ./executor/kubernetes/")
	}
	c := cluster(t)
	const n, cstar = 50, 5
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	var mu sync.Mutex
	added, readyAt := map[string]time.Time{}, map[string]time.Time{}
	f := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	h := func(o any) {
		p, ok := o.(*corev1.Pod)
		if !ok {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if _, ok := added[p.Name]; !ok {
			added[p.Name] = now
		}
		if _, ok := readyAt[p.Name]; !ok && ready(p) {
			readyAt[p.Name] = now
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: h, UpdateFunc: func(_, o any) { h(o) }})
	stop := make(chan struct{})
	defer close(stop)
	f.Start(stop)
	cache.WaitForCacheSync(stop, inf.HasSynced)

	d := &timedDriver{Driver: newTestDriver(t, c.Config, ns, Options{MinAvailable: n - cstar}), starts: map[string]time.Duration{}}
	var specs []executor.Spec
	for _, v := range []string{"nginx", "lighttpd", "go", "caddy", "envoy"} {
		specs = append(specs, testSpec(v))
	}
	pool, err := executor.NewPool(executor.PoolConfig{Variants: specs, Desired: n, Min: n, MaxConcurrent: cstar, Redraw: true,
		StartTimeout: 5 * time.Minute, HealthInterval: time.Second, DrainTimeout: 5 * time.Second}, map[string]executor.Driver{ID: d}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Minute)
	t0 := time.Now()
	if err := pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	t.Logf("50 executors Ready and healthy in %v", time.Since(t0).Round(time.Millisecond))
	d.mu.Lock()
	clear(d.starts)
	d.mu.Unlock()
	calls0, cpu0, wall0 := d.Calls(), cpuTime(), time.Now()
	if err := pool.RotateAll(executor.WithReason(ctx, "bench")); err != nil {
		t.Fatal(err)
	}
	wall, cpu, calls1 := time.Since(wall0), cpuTime()-cpu0, d.Calls()
	var total int64
	per := map[string]float64{}
	for k, v := range calls1 {
		if dv := v - calls0[k]; dv > 0 {
			per[k] = float64(dv) / n
			total += dv
		}
	}
	d.mu.Lock()
	mu.Lock()
	var own, outer []time.Duration
	for pod, s := range d.starts {
		a, r := added[pod], readyAt[pod]
		if a.IsZero() || r.IsZero() {
			continue
		}
		kw := r.Sub(a)
		outer = append(outer, kw)
		own = append(own, max(s-kw, 0))
	}
	mu.Unlock()
	d.mu.Unlock()
	pct := func(ds []time.Duration, q float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[min(int(q*float64(len(ds))), len(ds)-1)].Round(100 * time.Microsecond)
	}
	t.Logf("rotated %d executors (c*=%d) in %v wall, test process CPU %v (%.1f ms per rotation, driver + pool + the test's watch and fake containers)",
		n, cstar, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(cpu.Milliseconds())/n)
	t.Logf("API requests per rotation: %.2f in all, by verb %v", float64(total)/n, per)
	t.Logf("start to Ready, driver's own part (scheduler + kwok subtracted), %d samples: median %v, p90 %v, max %v", len(own), pct(own, 0.5), pct(own, 0.9), pct(own, 1))
	t.Logf("scheduler + kwok part (pod seen created to seen Ready): median %v, p90 %v, max %v", pct(outer, 0.5), pct(outer, 0.9), pct(outer, 1))
	if len(own) < n*9/10 {
		t.Fatalf("only %d of %d rotations timed", len(own), n)
	}
}
