package kubernetes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/kubernetes/k8stest"
)

// flakyProxy stands between the driver and the real API server and misbehaves on chosen
// requests: it answers 429 or 409 without passing them on, or passes a request on and then
// answers 503, as if the response was lost. holdWatches cuts the watch streams and keeps new
// watch requests waiting (a partition of the watch alone) until releaseWatches.
type flakyProxy struct {
	mu     sync.Mutex
	faults map[string][]int // "POST pods" -> status codes for the next requests; 0: pass on
	lost   map[string]int   // "POST pods" -> how many requests to pass on and answer 503 to
	seen   map[string]int

	held     chan struct{}            // non-nil while watches are held; closed on release
	waiting  int                      // watch requests that have waited on a hold
	watching map[*http.Request]func() // open watch streams -> cut
}

// holdWatches cuts every open watch stream and holds new watch requests.
func (f *flakyProxy) holdWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = make(chan struct{})
	}
	for _, cut := range f.watching {
		cut()
	}
}

// releaseWatches lets held watch requests through to the API server.
func (f *flakyProxy) releaseWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
}

// watchesWaiting is how many watch requests have waited on a hold.
func (f *flakyProxy) watchesWaiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

func (f *flakyProxy) serveWatch(w http.ResponseWriter, r *http.Request, rp http.Handler) {
	f.mu.Lock()
	for f.held != nil {
		held := f.held
		f.waiting++
		f.mu.Unlock()
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
	}
	ctx, cut := context.WithCancel(r.Context())
	defer cut()
	f.watching[r] = cut
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watching, r)
		f.mu.Unlock()
	}()
	rp.ServeHTTP(w, r.WithContext(ctx))
}

func (f *flakyProxy) key(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	res := parts[len(parts)-1]
	if r.Method != http.MethodPost && len(parts) >= 2 {
		res = parts[len(parts)-2] // .../pods/NAME
	}
	return r.Method + " " + res
}

func startFlakyProxy(t *testing.T, c *k8stest.Cluster) (*flakyProxy, *rest.Config) {
	f := &flakyProxy{faults: map[string][]int{}, lost: map[string]int{}, seen: map[string]int{}, watching: map[*http.Request]func(){}}
	target, _ := url.Parse(c.Config.Host)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Config.CAData)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	rp.FlushInterval = -1 // watch streams pass at once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := f.key(r)
		f.mu.Lock()
		f.seen[k]++
		var code int
		if q := f.faults[k]; len(q) > 0 {
			code, f.faults[k] = q[0], q[1:]
		}
		lose := code == 0 && f.lost[k] > 0
		if lose {
			f.lost[k]--
		}
		f.mu.Unlock()
		status := func(code int, reason string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":%q,"message":"injected by the test proxy","code":%d}`, reason, code)
		}
		switch {
		case code == http.StatusTooManyRequests:
			status(code, "TooManyRequests")
		case code == http.StatusConflict:
			status(code, "Conflict")
		case code != 0:
			status(code, "InternalError")
		case lose:
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			status(http.StatusServiceUnavailable, "ServiceUnavailable")
		case r.URL.Query().Get("watch") == "true":
			f.serveWatch(w, r, rp)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL, BearerToken: c.Config.BearerToken}
	return f, cfg
}

// Throttling, conflicts, server errors and a create whose answer was lost are retried; the
// driver ends with exactly one pod per executor.
func testFlakyAPI(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	f, cfg := startFlakyProxy(t, c)
	d := newTestDriver(t, cfg, ns, Options{MinAvailable: 1})
	ctx := ctxT(t, 3*time.Minute)
	f.mu.Lock()
	f.faults["POST poddisruptionbudgets"] = []int{http.StatusTooManyRequests, http.StatusInternalServerError}
	f.faults["POST pods"] = []int{http.StatusTooManyRequests}
	f.lost["POST pods"] = 1 // the second create reaches the server, its answer is lost
	f.faults["PATCH pods"] = []int{http.StatusConflict, http.StatusTooManyRequests}
	f.faults["DELETE pods"] = []int{http.StatusConflict}
	f.mu.Unlock()
	inst, err := d.Start(ctx, testSpec("nginx"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(ps.Items) != 1 || ps.Items[0].Name != inst.Handle {
		t.Fatalf("pods after a lost create answer: %v %d", err, len(ps.Items))
	}
	if err := d.Quarantine(executor.WithReason(ctx, "test"), inst); err != nil {
		t.Fatal(err)
	}
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, inst.Handle, metav1.GetOptions{})
	if err != nil || p.Labels[LabelRole] != RoleQuarantined {
		t.Fatalf("quarantine through conflicts: %v %v", err, p.Labels)
	}
	// A rotation-style stop of a second executor goes through a conflict on delete.
	inst2, err := d.Start(ctx, testSpec("go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(ctx, inst2); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, min := range map[string]int{"POST pods": 4, "POST poddisruptionbudgets": 3, "PATCH pods": 3, "DELETE pods": 2} {
		if f.seen[k] < min {
			t.Errorf("%s sent %d times, want at least %d (the retries)", k, f.seen[k], min)
		}
	}
	t.Logf("requests through the proxy: %v", f.seen)
}
