package mimic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"hash/maphash"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/bus"
)

// countingBackends starts n net/http servers; handler i answers with h(i, w, r).
func countingBackends(t *testing.T, n int, h func(i int, w http.ResponseWriter, r *http.Request)) (Static, []*atomic.Int64) {
	t.Helper()
	var s Static
	var hits []*atomic.Int64
	for i := range n {
		c := new(atomic.Int64)
		hits = append(hits, c)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.Add(1)
			h(i, w, r)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		s = append(s, Backend{ID: fmt.Sprintf("b%d", i+1), Variant: fmt.Sprintf("v%d", i+1), Addr: "http://" + ln.Addr().String()})
	}
	return s, hits
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNoiseIsLearnedOnline(t *testing.T) {
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", fmt.Sprint(time.Now().UnixNano(), i))
		fmt.Fprintf(w, `{"data":"same","ts":"%d-%d"}`, time.Now().UnixNano(), i)
	})
	b := bus.New()
	evs, cancel := b.Subscribe(100, bus.KindPrefix(EventNoiseLearned))
	defer cancel()
	g, err := New(Options{Backends: bes, Bus: b, Learn: true, LearnMinSamples: 5})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + startGateway(t, g, ServerOptions{}) + "/api"
	c := &http.Client{}
	if code, _ := get(t, c, base); code != http.StatusBadGateway {
		t.Fatalf("before learning: %d, want 502 (every executor differs)", code)
	}
	g.Wait()
	for i := 0; ; i++ {
		code, body := get(t, c, fmt.Sprintf("%s/%d", base, i)) // distinct paths: one path alone never teaches
		g.Wait()
		if code == 200 {
			if !strings.Contains(body, `"data":"same"`) {
				t.Fatalf("body %q", body)
			}
			break
		}
		if i > 10 {
			t.Fatalf("never learned: %v", g.Learned())
		}
	}
	want := []string{"header:X-Request-Id", "json:/ts"}
	if got := g.Learned()["default"]; !slices.Equal(got, want) {
		t.Fatalf("learned %v, want %v", got, want)
	}
	if len(evs) != 2 {
		t.Fatalf("%d noise-learned events, want 2", len(evs))
	}
}

func TestOddOneOutIsNeverLearned(t *testing.T) {
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		role := "user"
		if i == 2 {
			role = "admin" // the compromised executor, consistently
			w.Header().Set("X-Backdoor", "1")
		}
		fmt.Fprintf(w, `{"role":%q,"n":1}`, role)
	})
	g, err := New(Options{Backends: bes, Learn: true, LearnMinSamples: 3})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	for range 30 {
		code, body := get(t, http.DefaultClient, url)
		if code != 200 || body != `{"role":"user","n":1}` {
			t.Fatalf("client got %d %q", code, body)
		}
	}
	g.Wait()
	if l := g.Learned()["default"]; len(l) != 0 {
		t.Fatalf("learned %v from one executor", l)
	}
	if s := g.Trust().Score("b3"); s > 0 {
		t.Fatalf("trust of b3 = %v", s)
	}
}

func TestLearnerCannotBePoisoned(t *testing.T) {
	mk := func(id, k, v string) *response {
		return &response{backend: Backend{ID: id}, status: 200, header: http.Header{k: {v}}}
	}
	seed := maphash.MakeSeed()
	base := newNoiseSet(nil, nil)
	// A different executor the odd one out on each path: what a probe of two files served
	// differently produces, and what a compromised executor produces. Never noise.
	l := newLearner(base, true, 6)
	for i := range 60 {
		rs := []*response{mk("a", "X-V", "1"), mk("b", "X-V", "1"), mk("c", "X-V", "1")}
		rs[i%3].header.Set("X-V", "2")
		l.observe(fmt.Sprintf("/f%d", i), seed, rs, base)
	}
	if got := l.learned(); len(got) != 0 {
		t.Fatalf("rotating odd one out: learned %v", got)
	}
	// Every executor different from every other: true noise, but only on enough distinct
	// paths (the same path again and again does not count twice).
	l = newLearner(base, true, 6)
	for i := range 20 {
		l.observe("/same", seed, []*response{mk("a", "X-Id", fmt.Sprint(3*i)), mk("b", "X-Id", fmt.Sprint(3*i+1)), mk("c", "X-Id", fmt.Sprint(3*i+2))}, base)
	}
	if got := l.learned(); len(got) != 0 {
		t.Fatalf("one path: learned %v", got)
	}
	for i := range 6 {
		l.observe(fmt.Sprintf("/p%d", i), seed, []*response{mk("a", "X-Id", "a"), mk("b", "X-Id", "b"), mk("c", "X-Id", "c")}, base)
	}
	if got := l.learned(); !slices.Equal(got, []string{"header:X-Id"}) {
		t.Fatalf("all distinct on 6 paths: learned %v", got)
	}
	// A security header is never learned, even when every executor differs on every path.
	for _, k := range []string{"Content-Type", "Set-Cookie", "Location", "Content-Security-Policy", "Access-Control-Allow-Origin"} {
		l = newLearner(base, true, 2)
		for i := range 10 {
			l.observe(fmt.Sprintf("/p%d", i), seed, []*response{mk("a", k, "1"), mk("b", k, "2"), mk("c", k, "3")}, base)
		}
		if got := l.learned(); len(got) != 0 {
			t.Errorf("%s: learned %v", k, got)
		}
		if l.restore(headerFieldPrefix + k) {
			t.Errorf("%s restored from a learned-noise file", k)
		}
	}
	// Disabled: nothing.
	l = newLearner(base, false, 1)
	l.observe("/", seed, []*response{mk("a", "X-V", "1"), mk("b", "X-V", "2"), mk("c", "X-V", "3")}, base)
	if len(l.learned()) != 0 {
		t.Fatal("disabled learner learned")
	}
}

func TestPoliciesAndRoutes(t *testing.T) {
	bes, hits := countingBackends(t, 3, hello2)
	g, err := New(Options{Backends: bes, Routes: []Route{
		{Prefix: "/state", Methods: []string{"POST"}, Policy: PolicyVoteAll},
		{Prefix: "/static", Policy: PolicySingle},
		{Prefix: "/static/voted", Policy: PolicyVote},
		{Prefix: "/upload/", Methods: []string{"PUT", "FOO"}, Policy: PolicySingle},
		{Prefix: "/api/", Methods: []string{"GET", "OPTIONS"}, Policy: PolicyVote},
	}})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	total := func() int64 {
		g.Wait()
		var n int64
		for _, h := range hits {
			n += h.Swap(0)
		}
		return n
	}
	tests := []struct {
		method, path string
		status       int
		want         int64
	}{
		{"GET", "/", 200, 3},
		{"POST", "/", 405, 0}, // no route names it: refused, never sent to one executor
		{"PUT", "/x", 405, 0},
		{"DELETE", "/state/x", 405, 0},
		{"FOO", "/x", 501, 0},
		{"TRACE", "/upload/x", 405, 0},
		{"POST", "/state/x", 200, 3},
		{"PUT", "/upload/x", 200, 1},
		{"FOO", "/upload/x", 200, 1},
		{"GET", "/upload/x", 200, 3}, // a route with methods covers only those
		{"GET", "/static/a", 200, 1},
		{"HEAD", "/static/a", 200, 1},
		{"POST", "/static/a", 405, 0}, // a route without methods covers the read methods
		{"GET", "/static/voted/a", 200, 3},
		{"GET", "/static/../x", 200, 3}, // canonical: /x, not the single route
		{"GET", "/static/%2e%2e/x", 200, 3},
		{"GET", "/static//a", 200, 1},
		{"GET", "/./static/a", 200, 1},
		{"OPTIONS", "/", 200, 0}, // the gateway answers OPTIONS itself...
		{"OPTIONS", "/upload/x", 200, 0},
		{"OPTIONS", "/api/x", 200, 3}, // ... unless a route names it
	}
	allowAt := map[string]string{"/": "GET, HEAD, OPTIONS", "/upload/x": "GET, HEAD, OPTIONS, PUT, FOO"}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, url, strings.NewReader("body"))
		req.URL.Opaque = tc.path // sent as written, dot segments and all
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if allow, want := resp.Header.Get("Allow"), allowAt[tc.path]; tc.method == "OPTIONS" && tc.want == 0 && allow != want {
			t.Errorf("OPTIONS %s: Allow %q, want %q", tc.path, allow, want)
		}
		if n := total(); n != tc.want {
			t.Errorf("%s %s reached %d executors, want %d", tc.method, tc.path, n, tc.want)
		}
	}
}

func hello2(i int, w http.ResponseWriter, r *http.Request) { hello(w, r) }

func TestRebuildHookAfterThreshold(t *testing.T) {
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 1 {
			io.WriteString(w, "defaced\n")
			return
		}
		io.WriteString(w, "fine\n")
	})
	rebuilt := make(chan string, 10)
	g, err := New(Options{Backends: bes, RebuildThreshold: 3, RebuildWindow: time.Hour,
		Rebuild: func(id string) { rebuilt <- id }})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	for range 2 {
		get(t, http.DefaultClient, url)
	}
	g.Wait()
	select {
	case id := <-rebuilt:
		t.Fatalf("rebuild of %s before the threshold", id)
	default:
	}
	get(t, http.DefaultClient, url)
	if id := <-rebuilt; id != "b2" {
		t.Fatalf("rebuilt %s, want b2", id)
	}
}

func TestNoConsensusFailsClosed(t *testing.T) {
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "version %d\n", i)
	})
	b := bus.New()
	evs, cancel := b.Subscribe(10, bus.KindPrefix(EventNoConsensus))
	defer cancel()
	reg := prometheus.NewRegistry()
	g, err := New(Options{Backends: bes, Bus: b, FailStatus: 503, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	code, body := get(t, http.DefaultClient, url)
	if code != 503 || strings.Contains(body, "version") {
		t.Fatalf("got %d %q", code, body)
	}
	e := <-evs
	if votes, _ := e.Attrs["votes"].([]map[string]any); len(votes) != 3 {
		t.Fatalf("event %v", e.Attrs)
	}
	g.Wait()
	if v := metricValue(t, reg, "proteus_gateway_no_consensus_total", nil); v != 1 {
		t.Fatalf("no_consensus_total = %v", v)
	}
	if v := metricValue(t, reg, "proteus_gateway_requests_total", map[string]string{"policy": "vote", "outcome": "no-consensus"}); v != 1 {
		t.Fatalf("requests_total = %v", v)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestDissentMetricsByKind(t *testing.T) {
	release := make(chan struct{})
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		switch i {
		case 1:
			io.WriteString(w, "other\n")
		case 2:
			<-release
		default:
			io.WriteString(w, "ok\n")
		}
	})
	defer close(release)
	reg := prometheus.NewRegistry()
	g, err := New(Options{Backends: bes, Metrics: NewMetrics(reg), Quorum: 1, UpstreamTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	get(t, http.DefaultClient, url)
	g.Wait()
	content := metricValue(t, reg, "proteus_gateway_dissent_total", map[string]string{"kind": DissentContent})
	avail := metricValue(t, reg, "proteus_gateway_dissent_total", map[string]string{"backend": "v3", "kind": DissentAvailability})
	if content != 1 || avail != 1 {
		t.Fatalf("content %v availability %v, want 1 and 1", content, avail)
	}
}

func TestWaitAllHoldsTheAnswer(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 3)
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		if i == 2 {
			<-release
		}
		io.WriteString(w, "ok\n")
	})
	g, err := New(Options{Backends: bes, WaitAll: true, Jitter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	done := make(chan int)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for range 3 {
		<-arrived
	}
	select {
	case code := <-done:
		t.Fatalf("answered (%d) before the slow executor", code)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("status %d", code)
	}
}

func TestHTTP2OverTLSAndH2C(t *testing.T) {
	bes, _ := countingBackends(t, 3, hello2)
	g, err := New(Options{Backends: bes})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := selfSigned(t)
	srv, err := NewServer(g, ServerOptions{TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("TLS: %d %s", resp.StatusCode, resp.Proto)
	}

	addr := startGateway(t, g, ServerOptions{H2C: true})
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	resp, err = (&http.Client{Transport: h2c}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("h2c: %d %s", resp.StatusCode, resp.Proto)
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proteus-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestNewRejectsBadOptions(t *testing.T) {
	bes := Static{{ID: "a", Addr: "http://127.0.0.1:1"}}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no backends", Options{}, "no backends"},
		{"quorum", Options{Backends: bes, K: 3, Quorum: 4}, "quorum"},
		{"fail status", Options{Backends: bes, FailStatus: 200}, "fail status"},
		{"scheduler", Options{Backends: bes, Scheduler: "fastest"}, "unknown scheduler"},
		{"policy", Options{Backends: bes, Routes: []Route{{Prefix: "/", Policy: "all"}}}, "unknown policy"},
		{"prefix", Options{Backends: bes, Routes: []Route{{Prefix: "api", Policy: PolicyVote}}}, "must start with /"},
	}
	for _, tc := range tests {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mimic: ") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestStaticFromURLs(t *testing.T) {
	s, err := StaticFromURLs([]string{"http://127.0.0.1:8081", "http://127.0.0.1:8082/"})
	if err != nil || len(s) != 2 || s[1].Addr != "http://127.0.0.1:8082" || s[0].ID != "b1" {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range [][]string{{"127.0.0.1:80"}, {"ftp://x"}, {"http://x/path"}, {"http://a:1", "http://a:1"}} {
		if _, err := StaticFromURLs(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

func TestClientGoneIsNotDissent(t *testing.T) {
	cancelled := make(chan struct{}, 3)
	bes, hits := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // only the gateway cancelling the fan-out ends this
		cancelled <- struct{}{}
	})
	b := bus.New()
	evs, cancelSub := b.Subscribe(10, nil)
	defer cancelSub()
	g, err := New(Options{Backends: bes, Bus: b, UpstreamTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// Wait until the request reached all executors, then hang up.
	for _, h := range hits {
		for h.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	c.Close()
	for range 3 {
		<-cancelled
	}
	g.Wait()
	select {
	case e := <-evs:
		t.Fatalf("event after the client left: %s %v", e.Kind, e.Attrs)
	default:
	}
}

// countedSet is a Backends source that counts in-flight requests, like the executor pool.
type countedSet struct {
	Static
	mu       sync.Mutex
	inFlight map[string]int
	acquired map[string]int
}

func (d *countedSet) OnAcquire(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight[id]++
	d.acquired[id]++
}

func (d *countedSet) OnRelease(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight[id]--
}

func TestInFlightHooks(t *testing.T) {
	bes, _ := countingBackends(t, 3, hello2)
	ds := &countedSet{Static: bes, inFlight: map[string]int{}, acquired: map[string]int{}}
	g, err := New(Options{Backends: ds})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	for range 5 {
		if code, _ := get(t, http.DefaultClient, url); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	g.Wait()
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for _, id := range []string{"b1", "b2", "b3"} {
		if ds.acquired[id] != 5 || ds.inFlight[id] != 0 {
			t.Fatalf("acquired %v in flight %v", ds.acquired, ds.inFlight)
		}
	}
}

func TestStragglerBudgetBoundsWaiting(t *testing.T) {
	release := make(chan struct{})
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 2 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok\n")
	})
	b := bus.New()
	evs, cancel := b.Subscribe(10, bus.KindPrefix(EventDissent))
	defer cancel()
	g, err := New(Options{Backends: bes, Bus: b, MaxInFlight: 1, UpstreamTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	// The first answered request keeps waiting for the hung executor (the one straggler slot).
	if code, _ := get(t, http.DefaultClient, url); code != 200 {
		t.Fatal(code)
	}
	// The second finds no slot: it stops waiting, and the hung executor counts as unavailable.
	if code, _ := get(t, http.DefaultClient, url); code != 200 {
		t.Fatal(code)
	}
	e := <-evs
	if e.Subject != "b3" || e.Attrs["kind"] != DissentAvailability {
		t.Fatalf("event %s %v", e.Subject, e.Attrs)
	}
	close(release)
	g.Wait()
}
