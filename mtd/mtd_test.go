package mtd_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
	"github.com/proteus-defense/proteus/mtd"
	"github.com/proteus-defense/proteus/strictyaml"
)

func TestMain(m *testing.M) { processtest.Main(m) }

func TestPolicyFromConfig(t *testing.T) {
	cases := []struct {
		name string
		rot  config.Rotation
		want string // substring of the error, or of String() when valid
	}{
		{"interval", config.Rotation{Every: "30s-90s"}, "every 30s-1m30s"},
		{"all three", config.Rotation{Every: "1m", Cron: "0 * * * *", MaxLifetime: time.Hour}, `cron "0 * * * *"`},
		{"descriptor", config.Rotation{Cron: "@every 10m"}, "cron"},
		{"none", config.Rotation{}, "on request only"},
		{"bad cron value", config.Rotation{Cron: "61 * * * *"}, "pool.rotation.cron"},
		{"bad every", config.Rotation{Every: "x"}, "pool.rotation.every"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := mtd.PolicyFromConfig("a.yaml", c.rot)
			if strings.HasPrefix(c.want, "pool.") {
				if !errors.Is(err, strictyaml.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want ErrInvalid about %s", err, c.want)
				}
				return
			}
			if err != nil || !strings.Contains(p.String(), c.want) {
				t.Fatalf("policy %q, %v; want %q", p.String(), err, c.want)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name   string
		p      mtd.Policy
		lo, hi time.Duration // bounds of deadline-start; both 0 = never
	}{
		{"never", mtd.Policy{}, 0, 0},
		{"fixed", mtd.Policy{EveryMin: time.Minute, EveryMax: time.Minute}, time.Minute, time.Minute},
		{"jitter", mtd.Policy{EveryMin: 30 * time.Second, EveryMax: 90 * time.Second}, 30 * time.Second, 90 * time.Second},
		{"lifetime only", mtd.Policy{MaxLifetime: 10 * time.Minute}, 10 * time.Minute, 10 * time.Minute},
		{"lifetime caps interval", mtd.Policy{EveryMin: time.Hour, EveryMax: 2 * time.Hour, MaxLifetime: time.Minute}, time.Minute, time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			distinct := map[time.Time]bool{}
			for range 200 {
				d := c.p.Deadline(start, rng)
				if c.hi == 0 {
					if !d.IsZero() {
						t.Fatalf("deadline %v, want never", d)
					}
					continue
				}
				if off := d.Sub(start); off < c.lo || off > c.hi {
					t.Fatalf("offset %v outside [%v,%v]", off, c.lo, c.hi)
				}
				distinct[d] = true
			}
			if c.name == "jitter" && len(distinct) < 150 {
				t.Errorf("only %d distinct draws in 200: no jitter", len(distinct))
			}
		})
	}
}

func TestNextCron(t *testing.T) {
	p, err := mtd.PolicyFromConfig("a.yaml", config.Rotation{Cron: "*/15 * * * *"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 10, 7, 30, 0, time.UTC)
	if got, want := p.NextCron(at), time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("next %v, want %v", got, want)
	}
	if !(mtd.Policy{}).NextCron(at).IsZero() {
		t.Fatal("no cron must mean never")
	}
}

func newPool(t *testing.T, desired int) (*executor.Pool, *bus.Bus) {
	t.Helper()
	b := bus.New()
	d, err := process.New(executor.Env{DataDir: t.TempDir(), Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	img := processtest.Image(t)
	p, err := executor.NewPool(executor.PoolConfig{
		Variants: []executor.Spec{processtest.DemoSpec("a", img, "nethttp"), processtest.DemoSpec("b", img, "raw")},
		Desired:  desired, MaxConcurrent: 1, Redraw: true, HealthInterval: 100 * time.Millisecond, StartTimeout: 30 * time.Second,
	}, map[string]executor.Driver{process.ID: d}, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// The scheduler rotates every instance again and again; the metrics see each rotation.
func TestSchedulerRotatesAndMetricsCount(t *testing.T) {
	pool, b := newPool(t, 2)
	reg := prometheus.NewRegistry()
	m, err := mtd.NewMetrics(pool, reg)
	if err != nil {
		t.Fatal(err)
	}
	follow, stopFollow := context.WithCancel(context.Background())
	defer stopFollow()
	m.Follow(follow, b)
	ctx, cancel := context.WithCancel(context.Background())
	rotations, unsub := b.Subscribe(64, bus.KindPrefix(executor.EventRotation))
	defer unsub()
	first := map[string]bool{}
	for _, i := range pool.Healthy() {
		first[i.ID] = true
	}
	policy := mtd.Policy{EveryMin: 200 * time.Millisecond, EveryMax: 400 * time.Millisecond}
	done := make(chan struct{})
	go func() { mtd.NewScheduler(policy, pool, nil, 7).Run(ctx); close(done) }()
	rotated := map[string]bool{}
	for n := 0; n < 4; n++ {
		e := <-rotations
		if e.Attrs["reason"] != "interval" {
			t.Errorf("reason %v", e.Attrs["reason"])
		}
		rotated[e.Subject] = true
	}
	cancel()
	<-done
	for id := range first {
		if !rotated[id] {
			t.Errorf("initial instance %s never rotated", id)
		}
	}
	// The metrics follow the bus in their own goroutine: wait until they have seen the four
	// rotations this test saw (the bound only guards against a hang).
	var got map[string]float64
	for range 500 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]float64{}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue() + float64(mt.GetHistogram().GetSampleCount())
				got[mf.GetName()] += v
			}
		}
		if got["proteus_mtd_rotations_total"] >= 4 && got["proteus_mtd_rotation_duration_seconds"] >= 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got["proteus_mtd_cstar"] != 1 || got["proteus_mtd_reconfiguration_rate"] <= 0 || got["proteus_mtd_rotations_total"] < 4 ||
		got["proteus_mtd_rotation_duration_seconds"] < 4 || got["proteus_executor_age_seconds"] <= 0 || got["proteus_executor_transitions_total"] < 12 {
		t.Fatalf("metrics: %v", got)
	}
}

func TestMaxLifetimeReason(t *testing.T) {
	pool, b := newPool(t, 1)
	rotations, unsub := b.Subscribe(8, bus.KindPrefix(executor.EventRotation))
	defer unsub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go mtd.NewScheduler(mtd.Policy{MaxLifetime: 300 * time.Millisecond}, pool, nil, 1).Run(ctx)
	if e := <-rotations; e.Attrs["reason"] != "max_lifetime" {
		t.Fatalf("reason %v", e.Attrs["reason"])
	}
}

// Policy.Scaled shortens the interval within its floor; SetPolicy makes a scheduler that
// would rotate in an hour rotate within the scaled interval, with deadlines drawn again.
func TestSetPolicyScaledRotatesSooner(t *testing.T) {
	base := mtd.Policy{EveryMin: time.Hour, EveryMax: 2 * time.Hour, MaxLifetime: 5 * time.Hour}
	for _, c := range []struct {
		f          float64
		floor      time.Duration
		lo, hi, ml time.Duration
	}{
		{1, time.Second, time.Hour, 2 * time.Hour, 5 * time.Hour},
		{0.5, time.Second, 30 * time.Minute, time.Hour, 5 * time.Hour},
		{0.25, 45 * time.Minute, 45 * time.Minute, 45 * time.Minute, 5 * time.Hour},
		{0, time.Second, time.Hour, 2 * time.Hour, 5 * time.Hour}, // not a factor: unchanged
	} {
		got := base.Scaled(c.f, c.floor)
		if got.EveryMin != c.lo || got.EveryMax != c.hi || got.MaxLifetime != c.ml {
			t.Errorf("Scaled(%v, %v) = %v", c.f, c.floor, got)
		}
	}
	if got := (mtd.Policy{EveryMin: time.Second, EveryMax: time.Second}).Scaled(0.5, time.Minute); got.EveryMin != time.Second {
		t.Errorf("an interval already below the floor was lengthened: %v", got)
	}

	pool, b := newPool(t, 2)
	rotations, unsub := b.Subscribe(64, bus.KindPrefix(executor.EventRotation))
	defer unsub()
	ctx, cancel := context.WithCancel(context.Background())
	s := mtd.NewScheduler(base, pool, nil, 3)
	if s.Policy() != base {
		t.Errorf("policy before Run %v", s.Policy())
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	s.SetPolicy(base.Scaled(1e-4, 100*time.Millisecond)) // 0.36-0.72 s
	for n := 0; n < 2; n++ {
		select {
		case e := <-rotations:
			if p := s.Policy(); p.EveryMax != 720*time.Millisecond {
				t.Errorf("policy in effect after a rotation %v", p)
			}
			if e.Attrs["reason"] != "interval" {
				t.Errorf("reason %v", e.Attrs["reason"])
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("no rotation after the interval was scaled down from an hour")
		}
	}
}
