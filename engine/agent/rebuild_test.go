package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

// gatedDriver starts instances that all answer on one HTTP server; the start it is told to
// hold waits for release, then fails.
type gatedDriver struct {
	addr    string
	n       atomic.Int64
	hold    atomic.Bool
	holding chan struct{} // closed when a held start is waiting
	release chan struct{}
	once    sync.Once
}

func (d *gatedDriver) Start(ctx context.Context, spec executor.Spec) (*executor.Instance, error) {
	if d.hold.Load() {
		d.once.Do(func() { close(d.holding) })
		<-d.release
		return nil, errors.New("held start failed")
	}
	return &executor.Instance{ID: fmt.Sprintf("%s-%d", spec.Variant, d.n.Add(1)), Variant: spec.Variant, Driver: "gated",
		Address: d.addr, Started: time.Now()}, nil
}
func (d *gatedDriver) Stop(context.Context, *executor.Instance) error       { return nil }
func (d *gatedDriver) Quarantine(context.Context, *executor.Instance) error { return nil }
func (d *gatedDriver) List(context.Context) ([]*executor.Instance, error)   { return nil, nil }

// A rebuild asked while its executor is busy in a reconfiguration is not dropped: the hook
// asks again, and once the executor is free (here: its scheduled rotation failed, so it
// stays) it is rotated for the dissent. Without the retry the executor would keep serving.
func TestRebuildOnDissentWaitsForABusyExecutor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	d := &gatedDriver{addr: strings.TrimPrefix(srv.URL, "http://"), holding: make(chan struct{}), release: make(chan struct{})}
	b := bus.New()
	events, cancel := b.Subscribe(256, func(e bus.Event) bool { return e.Kind == executor.EventRotation })
	defer cancel()
	p, err := executor.NewPool(executor.PoolConfig{
		Variants: []executor.Spec{{Variant: "v", Driver: "gated", HealthPath: "/"}}, Desired: 1, MaxConcurrent: 2,
		HealthInterval: 50 * time.Millisecond, DrainTimeout: 100 * time.Millisecond, StartTimeout: 5 * time.Second,
	}, map[string]executor.Driver{"gated": d}, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	old := p.Members()[0].Instance.ID

	d.hold.Store(true)
	scheduled := make(chan error, 1)
	go func() { scheduled <- p.Rotate(executor.WithReason(ctx, "interval"), old) }()
	<-d.holding // old is busy: its replacement is starting
	var isolate atomic.Pointer[func(string)]
	asked := make(chan struct{})
	go func() { rebuildOnDissent(ctx, p, &isolate)(old); close(asked) }()
	// Time for the hook to meet the busy executor; were it later, it would find it free and
	// the test would pass without the retry, never fail with it.
	time.Sleep(300 * time.Millisecond)
	d.hold.Store(false)
	close(d.release)
	if err := <-scheduled; err == nil {
		t.Fatal("the held rotation succeeded")
	}
	<-asked
	for {
		select {
		case e := <-events:
			if e.Attrs["old"] == old && e.Attrs["reason"] == "dissent" {
				return
			}
		default:
			t.Fatalf("%s was not rotated for its dissent (members %v)", old, p.Members())
		}
	}
}
