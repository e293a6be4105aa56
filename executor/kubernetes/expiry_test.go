package kubernetes

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/kubernetes/k8stest"
)

// Must show (issue 16, "survives a watch expiring (410 Gone) by resyncing"): the driver's pod
// watch is cut (only the watch: its other calls go through), and meanwhile someone else deletes
// one of the pool's pods, a rotation creates its new pod, and etcd is compacted to its current
// revision. The watch resumes from a compacted resource version and the API server answers
// 410 Gone; client-go lists again, and the driver sees the deletion it missed (the executor's
// Exited closes, it leaves the cache), the rotation in flight completes, the pool refills and
// keeps rotating, and no pod is left behind.
//
// The API server runs with its watch cache off, so it serves watches from etcd and the
// compaction decides: with the cache on (the default), a resumed watch is served from the
// cache's own window of events, and 410 comes only once the cache has dropped the events the
// watch missed (a long partition with much churn) or after an API server restart.
func TestWatchExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Kubernetes control plane (not in -short)")
	}
	c := k8stest.StartWith(t, k8stest.Options{APIServerArgs: []string{"--watch-cache=false"}})
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	f, cfg := startFlakyProxy(t, c)
	d := newTestDriver(t, cfg, ns, Options{MinAvailable: 2})
	const desired = 3
	pool := newTestPool(t, d, desired, 2, 2, "nginx", "lighttpd", "go")
	ctx := ctxT(t, 8*time.Minute)
	before := d.Watch()
	if before.Lists < 1 || before.Expired != 0 {
		t.Fatalf("watch stats after the first sync: %+v", before)
	}
	members := pool.Healthy()
	known := map[string]bool{}
	for _, in := range members {
		known[in.Handle] = true
	}
	victim, rotated := members[0], members[1]
	victimExited := d.Exited(victim)

	f.holdWatches()
	eventually(t, "the driver's watch to be cut and to wait to resume", func() bool { return f.watchesWaiting() > 0 })
	// Unseen by the driver: someone else deletes a pod...
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, victim.Handle, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted pod to be gone from the API", func() bool {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, victim.Handle, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// ...and a rotation creates a pod that kwok reports Ready.
	rotation := make(chan error, 1)
	go func() { rotation <- pool.Rotate(executor.WithReason(ctx, "test"), rotated.ID) }()
	eventually(t, "a new pod Ready in the API", func() bool {
		ps, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range ps.Items {
			if !known[ps.Items[i].Name] && ready(&ps.Items[i]) {
				return true
			}
		}
		return false
	})
	rev := c.CompactEtcd()
	select {
	case <-victimExited:
		t.Fatal("the driver saw the deletion while its watch was held: the test proves nothing")
	default:
	}
	if d.podByID(victim.ID) == nil {
		t.Fatal("the deleted pod left the driver's cache while its watch was held")
	}
	f.releaseWatches()

	select {
	case <-victimExited:
	case <-ctx.Done():
		t.Fatalf("the driver never saw the deletion of %s (watch %+v)", victim.Handle, d.Watch())
	}
	after := d.Watch()
	t.Logf("etcd compacted at revision %d; watch before %+v, after %+v", rev, before, after)
	if after.Expired < 1 {
		t.Errorf("no watch ended in 410 Gone after the compaction: %+v", after)
	}
	if after.Lists <= before.Lists {
		t.Errorf("client-go did not list again after the expiry: %+v", after)
	}
	if d.podByID(victim.ID) != nil {
		t.Errorf("the deleted pod %s is still in the driver's cache", victim.Handle)
	}
	if err := <-rotation; err != nil {
		t.Fatalf("the rotation in flight across the expiry: %v", err)
	}
	eventually(t, "the pool back to its size without the deleted or rotated executors", func() bool {
		hs := pool.Healthy()
		for _, in := range hs {
			if in.ID == victim.ID || in.ID == rotated.ID {
				return false
			}
		}
		return len(hs) == desired
	})
	// The pool keeps rotating on the resumed watch.
	if err := pool.RotateAll(executor.WithReason(ctx, "test")); err != nil {
		t.Fatalf("rotation after the expiry: %v", err)
	}
	// No leak: once deleted pods are gone, exactly the pool's members have pods.
	var left []string
	eventually(t, "only the pool's members to have pods", func() bool {
		left = podsLeft(t, c, ns)
		return len(left) == desired && len(pool.Healthy()) == desired
	})
	members2 := map[string]bool{}
	for _, in := range pool.Healthy() {
		members2[in.Handle] = true
	}
	for _, n := range left {
		if !members2[n] {
			t.Errorf("pod %s is not in the pool: leaked", n)
		}
	}
	pool.Close(context.Background())
	waitNoPods(t, c, ns)
}

// eventually waits until cond holds; the two minutes are a hang guard for a loaded machine,
// not a bound on how fast the driver is.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
