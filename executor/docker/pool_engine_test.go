package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

// engineForwarder is a Unix-socket forwarder between the driver and the real engine socket
// that the test can cut (listener and every forwarded connection closed, so the engine is
// unreachable while its containers keep running) and restore.
type engineForwarder struct {
	sock, target string

	mu    sync.Mutex
	l     net.Listener // nil while cut
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newEngineForwarder(t *testing.T, target string) *engineForwarder {
	t.Helper()
	dir, err := os.MkdirTemp("", "proteus-fwd-") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &engineForwarder{sock: filepath.Join(dir, "engine.sock"), target: target, conns: map[net.Conn]struct{}{}}
	f.restore(t)
	t.Cleanup(f.cut)
	return f
}

func (f *engineForwarder) host() string { return "unix://" + f.sock }

func (f *engineForwarder) restore(t *testing.T) {
	t.Helper()
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatalf("forwarder listen: %v", err)
	}
	f.mu.Lock()
	f.l = l
	f.mu.Unlock()
	f.wg.Add(1)
	go f.serve(l)
}

func (f *engineForwarder) serve(l net.Listener) {
	defer f.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		if f.l != l { // cut meanwhile
			f.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		f.conns[c], f.conns[up] = struct{}{}, struct{}{}
		f.wg.Add(2)
		f.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer f.wg.Done()
			_, _ = io.Copy(dst, src)
			c.Close()
			up.Close()
			f.mu.Lock()
			delete(f.conns, c)
			delete(f.conns, up)
			f.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// cut closes the listener (which removes the socket file) and every forwarded connection,
// in-flight ones (the driver's container waits) included.
func (f *engineForwarder) cut() {
	f.mu.Lock()
	l := f.l
	f.l = nil
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	if l != nil {
		l.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	f.wg.Wait()
}

// countingDriver records every Start the pool makes, with its time and result.
type countingDriver struct {
	*Driver
	mu     sync.Mutex
	starts []startAttempt
}

type startAttempt struct {
	at  time.Time
	err error
}

func (c *countingDriver) Start(ctx context.Context, spec executor.Spec) (*executor.Instance, error) {
	at := time.Now()
	inst, err := c.Driver.Start(ctx, spec)
	c.mu.Lock()
	c.starts = append(c.starts, startAttempt{at: at, err: err})
	c.mu.Unlock()
	return inst, err
}

func (c *countingDriver) attempts() []startAttempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.starts)
}

// inServiceWatch samples pool.Healthy() until stopped and reports, per instance, how many
// samples lacked it and what the first such sample held.
func inServiceWatch(p *executor.Pool, ids []string) (stop func() []string) {
	done := make(chan struct{})
	first := map[string][]string{}
	count := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			h := p.Healthy()
			for _, id := range ids {
				if !slices.ContainsFunc(h, func(i *executor.Instance) bool { return i.ID == id }) {
					if count[id] == 0 {
						first[id] = instanceIDs(h)
					}
					count[id]++
				}
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		close(done)
		wg.Wait()
		var missing []string
		for _, id := range ids {
			if count[id] > 0 {
				missing = append(missing, fmt.Sprintf("%s missing from %d samples of Healthy(), first %v", id, count[id], first[id]))
			}
		}
		return missing
	}
}

func instanceIDs(insts []*executor.Instance) []string {
	out := make([]string, 0, len(insts))
	for _, i := range insts {
		out = append(out, i.ID)
	}
	slices.Sort(out)
	return out
}

// serveRounds sends rounds GETs to each instance over fresh connections and wants 200 and the
// variant's greeting every time.
func serveRounds(t *testing.T, insts []*executor.Instance, rounds int) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	for r := range rounds {
		for _, inst := range insts {
			resp, err := c.Get("http://" + inst.Address + "/")
			if err != nil {
				t.Fatalf("round %d: GET %s (%s): %v", r, inst.Address, inst.ID, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != "hello from "+inst.Variant+"\n" {
				t.Fatalf("round %d: GET %s (%s) = %s %q %v, want 200 from %s", r, inst.Address, inst.ID, resp.Status, body, err, inst.Variant)
			}
		}
	}
}

// waitFor polls cond every 10 ms, at most tries times; the bound only keeps a broken pool
// from hanging the test.
func waitFor(tries int, cond func() bool) bool {
	for range tries {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// TestPoolEngineUnreachable runs a pool of three docker executors through a forwarder to the
// real engine, cuts the engine off while the containers keep running, and checks issue 3:
// rotations fail with an error wrapping ErrEngineUnreachable that names the engine address,
// every running executor stays in service and keeps answering, a container that dies meanwhile
// is taken out and replaced with backed-off attempts (never a tight loop, never at the cost of
// the healthy ones), and once the engine is back the pool refills and rotates again.
func TestPoolEngineUnreachable(t *testing.T) {
	cli, pin := fixture(t)
	_, target := engineHost()
	if target == "" {
		t.Skip("DOCKER_HOST is not a unix socket; the engine forwarder needs one")
	}
	ctx := context.Background()
	fwd := newEngineForwarder(t, target)
	d, err := New(Options{Host: fwd.host(), DataDir: t.TempDir(), StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		removeAgentContainers(t, cli, d.agent) // through the real socket
		d.Close()
	})
	cd := &countingDriver{Driver: d}

	b := bus.New()
	failedRot, cancelSub := b.Subscribe(64, bus.KindPrefix(executor.EventRotationFailed))
	defer cancelSub()
	const (
		backoffMin = 50 * time.Millisecond
		backoffMax = 800 * time.Millisecond
	)
	p, err := executor.NewPool(executor.PoolConfig{
		Variants:       []executor.Spec{serverSpec("a", pin), serverSpec("b", pin), serverSpec("c", pin)},
		Desired:        3,
		MaxConcurrent:  1,
		HealthInterval: 100 * time.Millisecond,
		HealthTimeout:  time.Second,
		HealthFailures: 3,
		DrainTimeout:   time.Second,
		BackoffMin:     backoffMin,
		BackoffMax:     backoffMax,
	}, map[string]executor.Driver{"docker": cd}, nil, b)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("pool Start: %v", err)
	}
	defer p.Close(context.Background())
	before := slices.Clone(p.Healthy())
	if len(before) != 3 {
		t.Fatalf("Healthy = %v, want 3 instances", instanceIDs(before))
	}
	serveRounds(t, before, 2)
	initialStarts := len(cd.attempts())
	t0 := time.Now()
	t.Logf("pool healthy: %v", instanceIDs(before))

	// ---- the engine goes away; the containers keep running ----
	fwd.cut()
	watch := inServiceWatch(p, instanceIDs(before))

	// (a) Rotations fail with a clear error naming the engine; the old instances stay.
	for _, inst := range before {
		err := p.Rotate(executor.WithReason(ctx, "test"), inst.ID)
		if err == nil {
			t.Fatalf("Rotate %s with the engine cut: nil error", inst.ID)
		}
		if !errors.Is(err, ErrEngineUnreachable) || !strings.Contains(err.Error(), "engine unreachable at "+fwd.host()) {
			t.Fatalf("Rotate %s error = %v, want one wrapping ErrEngineUnreachable and naming %s", inst.ID, err, fwd.host())
		}
	}
	if err := p.RotateAll(ctx); !errors.Is(err, ErrEngineUnreachable) {
		t.Fatalf("RotateAll with the engine cut = %v, want ErrEngineUnreachable", err)
	}
	for range 2 * len(before) {
		select {
		case ev := <-failedRot:
			if s, _ := ev.Attrs["err"].(string); !strings.Contains(s, fwd.host()) {
				t.Fatalf("executor.rotation-failed event %+v does not name the engine", ev)
			}
		default:
			t.Fatalf("fewer than %d executor.rotation-failed events", 2*len(before))
		}
	}

	t.Logf("%v: rotations failed as expected", time.Since(t0))
	// (b) Everything that runs stays in service and keeps answering.
	serveRounds(t, before, 20)
	// Let the supervisor probe and refill for well over HealthFailures intervals.
	time.Sleep(time.Duration(3*p.Config().HealthFailures) * p.Config().HealthInterval)
	serveRounds(t, before, 5)
	if missing := watch(); len(missing) > 0 {
		t.Fatalf("running executors left service while the engine was cut:\n%s", strings.Join(missing, "\n"))
	}
	if got := instanceIDs(p.Healthy()); !slices.Equal(got, instanceIDs(before)) {
		t.Fatalf("Healthy() with the engine cut = %v, want the same %v", got, instanceIDs(before))
	}
	// (c) Nothing was missing, so nothing but the 2×3 rotations tried to start anything.
	if n := len(cd.attempts()) - initialStarts; n != 2*len(before) {
		t.Fatalf("%d Start attempts while the engine was cut, want exactly the %d rotations", n, 2*len(before))
	}

	// A container dies while the engine is cut (killed through the real socket). The driver
	// cannot see the exit, so health checks find it; the pool takes it out and retries the
	// replacement with backoff while the other two keep serving.
	victim, survivors := before[0], before[1:]
	watch = inServiceWatch(p, instanceIDs(survivors))
	if err := cli.ContainerKill(ctx, victim.Handle, "KILL"); err != nil {
		t.Fatalf("kill %s: %v", victim.ID, err)
	}
	if !waitFor(3000, func() bool {
		return !slices.ContainsFunc(p.Healthy(), func(i *executor.Instance) bool { return i.ID == victim.ID })
	}) {
		t.Fatalf("the pool kept the dead %s in service: %v", victim.ID, instanceIDs(p.Healthy()))
	}
	t.Logf("%v: dead %s out of service", time.Since(t0), victim.ID)
	fromStart := initialStarts + 2*len(before)
	const wantRetries = 5
	if !waitFor(6000, func() bool { return len(cd.attempts())-fromStart >= wantRetries }) {
		t.Fatalf("%d replacement attempts, want at least %d: the pool gave up replacing", len(cd.attempts())-fromStart, wantRetries)
	}
	serveRounds(t, survivors, 10)
	retries := cd.attempts()[fromStart:]
	for i, a := range retries {
		if !errors.Is(a.err, ErrEngineUnreachable) || !strings.Contains(a.err.Error(), fwd.host()) {
			t.Fatalf("replacement attempt %d error = %v, want ErrEngineUnreachable naming %s", i, a.err, fwd.host())
		}
		if i == 0 {
			continue
		}
		// Attempt i comes no earlier than the backoff after failure i-1: min·2^(i-1), capped.
		want := min(backoffMin<<(i-1), backoffMax)
		if gap := a.at.Sub(retries[i-1].at); gap < want {
			t.Fatalf("replacement attempt %d came %v after the previous one, want at least the %v backoff (%d attempts in %v)",
				i, gap, want, len(retries), retries[len(retries)-1].at.Sub(retries[0].at))
		}
	}
	if missing := watch(); len(missing) > 0 {
		t.Fatalf("running executors left service while replacements failed:\n%s", strings.Join(missing, "\n"))
	}
	if got := instanceIDs(p.Healthy()); !slices.Equal(got, instanceIDs(survivors)) {
		t.Fatalf("Healthy() = %v, want the survivors %v", got, instanceIDs(survivors))
	}

	// ---- (d) the engine comes back: the pool refills and rotation works again ----
	t.Logf("%v: %d replacement attempts, all engine unreachable; restoring the engine", time.Since(t0), len(retries))
	fwd.restore(t)
	if !waitFor(3000, func() bool { return len(p.Healthy()) == 3 }) {
		t.Fatalf("the pool did not refill after the engine came back: %v (last start error %v)", instanceIDs(p.Healthy()), cd.attempts()[len(cd.attempts())-1].err)
	}
	for _, s := range survivors {
		if !slices.ContainsFunc(p.Healthy(), func(i *executor.Instance) bool { return i.ID == s.ID }) {
			t.Fatalf("survivor %s lost during refill: %v", s.ID, instanceIDs(p.Healthy()))
		}
	}
	t.Logf("%v: refilled: %v", time.Since(t0), instanceIDs(p.Healthy()))
	old := survivors[0]
	if err := p.Rotate(ctx, old.ID); err != nil {
		t.Fatalf("Rotate after the engine came back: %v", err)
	}
	after := slices.Clone(p.Healthy())
	if len(after) != 3 || slices.ContainsFunc(after, func(i *executor.Instance) bool { return i.ID == old.ID }) {
		t.Fatalf("Healthy after rotation = %v, want 3 without %s", instanceIDs(after), old.ID)
	}
	if _, err := cli.ContainerInspect(ctx, old.Handle); !cerrdefs.IsNotFound(err) {
		t.Fatalf("rotated-out container %s still exists (inspect error %v)", old.ID, err)
	}
	serveRounds(t, after, 3)
	t.Logf("%v: rotated %s after the engine came back", time.Since(t0), old.ID)

	// The container that died while the engine was cut could not be stopped then; the pool
	// retries the stop once the engine answers, so nothing it took out of service is left behind.
	if !waitFor(3000, func() bool {
		_, err := cli.ContainerInspect(ctx, victim.Handle)
		return cerrdefs.IsNotFound(err)
	}) {
		t.Fatalf("the container of %s, which died while the engine was cut, was never removed", victim.ID)
	}
}
