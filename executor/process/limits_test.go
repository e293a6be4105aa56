package process_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/mimic"
)

// servingThroughout asks the gateway for the demo site's index page in a loop until the
// returned stop is called, which fails the test if any answer was not the voted page or
// none came at all.
func (f *hostileFixture) servingThroughout(t *testing.T) (stop func()) {
	t.Helper()
	var (
		wg     sync.WaitGroup
		quit   = make(chan struct{})
		ok     atomic.Int64
		mu     sync.Mutex
		failed []string
	)
	wg.Go(func() {
		for {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := http.Get(f.gw.URL + "/")
			if err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "Proteus demo shop") {
				mu.Lock()
				failed = append(failed, resp.Status)
				mu.Unlock()
				continue
			}
			ok.Add(1)
		}
	})
	return func() {
		t.Helper()
		close(quit)
		wg.Wait()
		if len(failed) > 0 {
			t.Errorf("the gateway failed %d of %d requests while the executor hit its limit: %v", len(failed), int(ok.Load())+len(failed), failed)
		}
		if ok.Load() == 0 {
			t.Error("no voted answer while the executor hit its limit")
		}
		t.Logf("%d voted answers while the executor hit its limit and was replaced", ok.Load())
	}
}

// waitEvent waits for an event of ch about subject that match accepts. The bound only turns
// a missing event into a failure that says so instead of the test binary's timeout.
func waitEvent(t *testing.T, ch <-chan bus.Event, subject string, what string, match func(bus.Event) bool) bus.Event {
	t.Helper()
	guard := time.NewTimer(2 * time.Minute)
	defer guard.Stop()
	for {
		select {
		case e := <-ch:
			if e.Subject == subject && match(e) {
				return e
			}
		case <-guard.C:
			t.Fatalf("no %s about %s", what, subject)
		}
	}
}

// An executor that hits a resource limit while it serves a voted request fails that request
// (an availability dissent of the gateway's) and is replaced by the pool from its image,
// while the gateway keeps answering with the voted page. Memory: the cgroup's OOM killer
// ends it mid-request and the kernel's count is the evidence (executor.denied, reason
// memory, category availability). Open files: its RLIMIT_NOFILE leaves it unable to accept a
// connection, which nothing counts, so it is the health checks' failures that replace it.
func TestExecutorHittingALimitIsReplaced(t *testing.T) {
	for _, c := range []struct {
		name, what, needs string
		denied            bool // the kernel counted it: executor.denied, reason memory
	}{
		{"memory", "alloc", "cgroup v1 memory", true},
		{"open files", "files", "rlimit nofile", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newHostileFixture(t, false)
			if !strings.Contains(f.isolation, "memory") && c.name == "memory" || !strings.Contains(f.isolation, "nofile") && c.name == "open files" {
				t.Skipf("no %s here (%s)", c.needs, f.isolation)
			}
			dissent, _ := f.bus.Subscribe(256, bus.KindPrefix(mimic.EventDissent))
			failed, _ := f.bus.Subscribe(64, bus.KindPrefix(executor.EventFailed))
			inst := f.member(t, "hostile", "")
			stop := f.servingThroughout(t)
			// Through the gateway, as a client would: every executor gets it, the demo ones
			// answer 404, the hostile one tries to take more than it may.
			resp, err := http.Get(f.gw.URL + "/attack?what=" + c.what)
			if err != nil {
				t.Fatalf("gateway: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("voted answer %d %.80q, want the demo servers' 404", resp.StatusCode, body)
			}
			if c.denied {
				e := f.evidence(t, inst)
				if e.Attrs["reason"] != executor.DeniedMemory || e.Attrs["category"] != "availability" {
					t.Errorf("evidence %v, want reason memory, category availability", e.Attrs)
				}
				checkEvidenceShape(t, e)
				d := waitEvent(t, dissent, inst.ID, "availability dissent", func(e bus.Event) bool { return e.Attrs["kind"] == mimic.DissentAvailability })
				t.Logf("dissent: %v", d.Attrs)
			} else {
				// No kernel counter: the pool's health checks fail (it accepts no connection).
				e := waitEvent(t, failed, inst.ID, executor.EventFailed, func(bus.Event) bool { return true })
				t.Logf("failed: %v", e.Attrs)
			}
			next := f.member(t, "hostile", inst.ID)
			t.Logf("replaced %s by %s", inst.ID, next.ID)
			stop()
			if report := f.attack(t, next, "benign", "path", next.WorkDir+"/site/index.html"); !strings.HasPrefix(report, "ok: ") {
				t.Errorf("the replacement: %q", report)
			}
		})
	}
}
