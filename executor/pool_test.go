package executor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

func TestMain(m *testing.M) { processtest.Main(m) }

type fixture struct {
	pool *executor.Pool
	bus  *bus.Bus
	data string
}

func testLogger(testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func newPool(t *testing.T, cfg executor.PoolConfig) *fixture { return newPoolB(t, cfg) }

func newPoolB(t testing.TB, cfg executor.PoolConfig) *fixture {
	t.Helper()
	return newPoolIsolated(t, cfg, executor.Isolation{})
}

// newPoolIsolated is newPoolB with the process driver confining executors as iso says.
func newPoolIsolated(t testing.TB, cfg executor.PoolConfig, iso executor.Isolation) *fixture {
	t.Helper()
	f := &fixture{bus: bus.New(), data: t.TempDir()}
	d, err := process.New(executor.Env{DataDir: f.data, Bus: f.bus, StopGrace: 2 * time.Second, Isolation: iso})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 50 * time.Millisecond
	}
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = 500 * time.Millisecond
	}
	cfg.BackoffMin = 20 * time.Millisecond
	cfg.StartTimeout = 30 * time.Second
	p, err := executor.NewPool(cfg, map[string]executor.Driver{process.ID: d}, testLogger(t), f.bus)
	if err != nil {
		t.Fatal(err)
	}
	f.pool = p
	t.Cleanup(func() { p.Close(context.Background()) })
	return f
}

func demoVariants(t *testing.T) []executor.Spec {
	img := processtest.Image(t)
	return []executor.Spec{
		processtest.DemoSpec("go-nethttp", img, "nethttp"),
		processtest.DemoSpec("go-fasthttp", img, "fasthttp"),
		processtest.DemoSpec("go-raw", img, "raw"),
	}
}

// eventually polls cond; the bound only guards against a hang, it is not a performance check.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func ids(insts []*executor.Instance) map[string]bool {
	out := map[string]bool{}
	for _, i := range insts {
		out[i.ID] = true
	}
	return out
}

func TestPoolStartRotateClose(t *testing.T) {
	f := newPool(t, executor.PoolConfig{Variants: demoVariants(t), Desired: 3, Min: 3, MaxConcurrent: 1, Redraw: true})
	rot, cancel := f.bus.Subscribe(16, bus.KindPrefix(executor.EventRotation))
	defer cancel()
	ctx := context.Background()
	if err := f.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := f.pool.Healthy()
	if len(h) != 3 {
		t.Fatalf("healthy = %d", len(h))
	}
	variants := map[string]bool{}
	for _, i := range h {
		variants[i.Variant] = true
	}
	if len(variants) != 3 {
		t.Errorf("initial set not heterogeneous: %v", variants)
	}
	old := h[0]
	if err := f.pool.Rotate(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	after := f.pool.Healthy()
	if len(after) != 3 || ids(after)[old.ID] {
		t.Fatalf("after rotation: %v", after)
	}
	for _, i := range after {
		if i.Address == old.Address {
			t.Errorf("new instance reuses address %s", i.Address)
		}
	}
	e := <-rot
	if e.Attrs["old"] != old.ID || e.Attrs["duration_s"].(float64) <= 0 {
		t.Errorf("rotation event %+v", e)
	}
	if r := f.pool.RotationRate(); r <= 0 {
		t.Errorf("rotation rate %v", r)
	}
	if f.pool.CStar() != 1 {
		t.Errorf("c* = %d", f.pool.CStar())
	}
	if err := f.pool.Rotate(ctx, old.ID); !errors.Is(err, executor.ErrNoInstance) {
		t.Errorf("rotating a retired instance: %v", err)
	}
	f.pool.Close(ctx)
	if len(f.pool.Members()) != 0 {
		t.Errorf("members after Close: %v", f.pool.Members())
	}
	d, _ := process.New(executor.Env{DataDir: f.data})
	if left, _ := d.List(ctx); len(left) != 0 {
		t.Errorf("records after Close: %v", left)
	}
}

// At most c* reconfigurations run at once: the number of instances alive never exceeds
// Desired + c*, however many rotations are requested together.
func TestRotationsRespectCStar(t *testing.T) {
	const desired, cstar = 3, 2
	f := newPool(t, executor.PoolConfig{Variants: demoVariants(t), Desired: desired, MaxConcurrent: cstar, Redraw: true})
	ctx := context.Background()
	if err := f.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	events, cancel := f.bus.Subscribe(4096, bus.KindPrefix(executor.EventTransition))
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		alive := map[string]bool{}
		for _, i := range f.pool.Healthy() {
			alive[i.ID] = true
		}
		for e := range events {
			if e.Attrs["to"] == string(executor.StateStopped) {
				delete(alive, e.Subject)
			} else if e.Attrs["to"] == string(executor.StateStarting) {
				alive[e.Subject] = true
			}
			peak.Store(max(peak.Load(), int64(len(alive))))
		}
	}()
	if err := f.pool.RotateAll(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if p := peak.Load(); p > desired+cstar || p <= desired {
		t.Fatalf("peak alive instances %d, want in (%d, %d]", p, desired, desired+cstar)
	}
	if f.bus.Dropped() != 0 {
		t.Fatalf("bus dropped %d events; the peak is not reliable", f.bus.Dropped())
	}
}

func TestRotationDrainsInFlight(t *testing.T) {
	f := newPool(t, executor.PoolConfig{Variants: demoVariants(t)[:1], Desired: 1, DrainTimeout: time.Minute})
	ctx := context.Background()
	if err := f.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	old := f.pool.Healthy()[0]
	if !f.pool.Acquire(old.ID) {
		t.Fatal("Acquire refused a healthy instance")
	}
	rotated := make(chan error, 1)
	go func() { rotated <- f.pool.Rotate(ctx, old.ID) }()
	// The replacement goes into service while the old one waits for its request.
	eventually(t, "replacement in service", func() bool {
		h := f.pool.Healthy()
		return len(h) == 1 && h[0].ID != old.ID
	})
	if f.pool.Acquire(old.ID) {
		t.Fatal("Acquire accepted a draining instance")
	}
	var state executor.State
	for _, m := range f.pool.Members() {
		if m.Instance.ID == old.ID {
			state = m.State
		}
	}
	if state != executor.StateDraining {
		t.Fatalf("old instance state %q, want draining", state)
	}
	select {
	case err := <-rotated:
		t.Fatalf("rotation finished with a request in flight: %v", err)
	default:
	}
	resp, err := http.Get("http://" + old.Address + "/healthz") // the draining instance still serves
	if err != nil {
		t.Fatalf("draining instance stopped early: %v", err)
	}
	resp.Body.Close()
	f.pool.Release(old.ID)
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
}

func TestFaultyExecutorsAreReplaced(t *testing.T) {
	cases := []struct {
		mode, trigger string
	}{
		{processtest.Crash, "/crash"},
		{processtest.Hang, "/hang"},
		{processtest.Unhealthy, "/sick"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			img := processtest.Image(t)
			f := newPool(t, executor.PoolConfig{
				Variants: []executor.Spec{processtest.Spec("faulty", img, c.mode)}, Desired: 2, Min: 2,
				HealthTimeout: 200 * time.Millisecond, HealthFailures: 2,
			})
			failed, cancel := f.bus.Subscribe(16, bus.KindPrefix(executor.EventFailed))
			defer cancel()
			ctx := context.Background()
			if err := f.pool.Start(ctx); err != nil {
				t.Fatal(err)
			}
			victim := f.pool.Healthy()[0]
			client := &http.Client{Timeout: 300 * time.Millisecond}
			if resp, err := client.Get("http://" + victim.Address + c.trigger); err == nil {
				resp.Body.Close()
			}
			e := <-failed
			if e.Subject != victim.ID {
				t.Fatalf("failed event for %s, want %s", e.Subject, victim.ID)
			}
			eventually(t, "two healthy executors without the victim", func() bool {
				h := f.pool.Healthy()
				return len(h) == 2 && !ids(h)[victim.ID]
			})
			if r := f.pool.RotationRate(); r <= 0 {
				t.Errorf("replacement not counted as a reconfiguration: rate %v", r)
			}
		})
	}
}

func TestQuarantineTakesOutOfServiceAndReplaces(t *testing.T) {
	f := newPool(t, executor.PoolConfig{Variants: demoVariants(t), Desired: 2, Redraw: true})
	ctx := context.Background()
	if err := f.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	victim := f.pool.Healthy()[0]
	if err := f.pool.Quarantine(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	if ids(f.pool.Healthy())[victim.ID] || f.pool.Acquire(victim.ID) {
		t.Fatal("quarantined instance still in service")
	}
	eventually(t, "replacement", func() bool { return len(f.pool.Healthy()) == 2 })
	found := false
	for _, m := range f.pool.Members() {
		if m.Instance.ID == victim.ID {
			found = m.State == executor.StateQuarantined
		}
	}
	if !found {
		t.Fatal("quarantined instance not listed as quarantined")
	}
	if err := f.pool.Quarantine(ctx, victim.ID); !errors.Is(err, executor.ErrNoInstance) {
		t.Errorf("second quarantine: %v", err)
	}
	f.pool.Close(ctx)
	if _, err := os.Stat(victim.WorkDir); err != nil {
		t.Errorf("forensic work dir gone after Close: %v", err)
	}
}

func TestTamperedImageFailsStart(t *testing.T) {
	vs := demoVariants(t)
	if err := os.WriteFile(vs[0].Image+"/site/index.html", []byte("defaced"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newPool(t, executor.PoolConfig{Variants: vs, Desired: 2})
	tampered, cancel := f.bus.Subscribe(8, bus.KindPrefix(executor.EventTamperedImage))
	defer cancel()
	err := f.pool.Start(context.Background())
	if !errors.Is(err, executor.ErrTamperedImage) {
		t.Fatalf("Start = %v, want ErrTamperedImage", err)
	}
	select {
	case <-tampered:
	default:
		t.Fatal("no tampered-image event")
	}
	if len(f.pool.Members()) != 0 {
		t.Fatalf("members after refused start: %v", f.pool.Members())
	}
}

// Requests through the proxy never fail while every executor is rotated repeatedly, and all
// variants answer with the same bytes.
func TestProxyDuringRotationHasNoErrors(t *testing.T) {
	f := newPool(t, executor.PoolConfig{Variants: demoVariants(t), Desired: 3, MaxConcurrent: 3, Redraw: true})
	ctx := context.Background()
	if err := f.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	px := executor.NewProxy(f.pool, nil)
	defer px.Close()
	srv := httptest.NewServer(px)
	defer srv.Close()
	want := get(t, srv.URL+"/about.html")
	var stop atomic.Bool
	var bad, total atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := http.Get(srv.URL + "/about.html")
				total.Add(1)
				if err != nil {
					bad.Add(1)
					t.Errorf("request: %v", err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != want {
					bad.Add(1)
					t.Errorf("status %d body %q", resp.StatusCode, b)
				}
			}
		}()
	}
	for range 2 {
		if err := f.pool.RotateAll(ctx); err != nil {
			t.Error(err)
		}
	}
	// Kill one executor behind the pool's back: the proxy's retry hides it.
	victim := f.pool.Healthy()[0]
	if pid := victim.Handle; pid != "" {
		var n int
		for _, c := range pid {
			n = n*10 + int(c-'0')
		}
		_ = syscall.Kill(-n, syscall.SIGKILL)
	}
	eventually(t, "victim replaced", func() bool {
		h := f.pool.Healthy()
		return len(h) == 3 && !ids(h)[victim.ID]
	})
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 || total.Load() == 0 {
		t.Fatalf("%d of %d requests failed", bad.Load(), total.Load())
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "About") {
		t.Fatalf("GET %s: %d %q", url, resp.StatusCode, b)
	}
	return string(b)
}

func TestProxyWithoutExecutorsIs503(t *testing.T) {
	f := newPool(t, executor.PoolConfig{Variants: demoVariants(t), Desired: 1})
	srv := httptest.NewServer(executor.NewProxy(f.pool, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// With redraw and spare variants, every rotation switches implementation; without redraw it
// never does.
func TestRedrawChangesVariant(t *testing.T) {
	for _, redraw := range []bool{true, false} {
		f := newPool(t, executor.PoolConfig{Variants: demoVariants(t), Desired: 1, Redraw: redraw})
		ctx := context.Background()
		if err := f.pool.Start(ctx); err != nil {
			t.Fatal(err)
		}
		prev := f.pool.Healthy()[0].Variant
		for range 3 {
			if err := f.pool.Rotate(ctx, f.pool.Healthy()[0].ID); err != nil {
				t.Fatal(err)
			}
			cur := f.pool.Healthy()[0].Variant
			if (cur != prev) != redraw {
				t.Fatalf("redraw=%v: variant %s -> %s", redraw, prev, cur)
			}
			prev = cur
		}
		f.pool.Close(ctx)
	}
}

// closingDriver counts the calls of its Close.
type closingDriver struct {
	executor.Driver
	closed atomic.Int32
}

func (c *closingDriver) Close() error { c.closed.Add(1); return nil }

// The pool closes its drivers once, after every instance has stopped: what a driver set up
// for all its executors (the docker driver's audit rules) goes with the agent.
func TestPoolClosesDrivers(t *testing.T) {
	d, err := process.New(executor.Env{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c := &closingDriver{Driver: d}
	img := processtest.Image(t)
	p, err := executor.NewPool(executor.PoolConfig{Variants: []executor.Spec{processtest.DemoSpec("go-nethttp", img, "nethttp")},
		Desired: 1, Min: 1, MaxConcurrent: 1, HealthInterval: 50 * time.Millisecond, HealthTimeout: 500 * time.Millisecond,
		StartTimeout: 30 * time.Second}, map[string]executor.Driver{process.ID: c}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.closed.Load(); n != 0 {
		t.Fatalf("closed %d times while running", n)
	}
	p.Close(ctx)
	p.Close(ctx)
	if n := c.closed.Load(); n != 1 {
		t.Fatalf("closed %d times, want once", n)
	}
	if left, _ := d.List(ctx); len(left) != 0 {
		t.Fatalf("instances left after Close: %v", left)
	}
}
