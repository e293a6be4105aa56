package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

type noPool struct{}

func (noPool) Members() []executor.MemberStatus         { return nil }
func (noPool) Rotate(context.Context, string) error     { return nil }
func (noPool) RotateAll(context.Context) error          { return nil }
func (noPool) Quarantine(context.Context, string) error { return nil }
func (noPool) CStar() int                               { return 2 }
func (noPool) RotationRate() float64                    { return 0 }

// slowGame is a Game whose Evolution waits until released, counting the callers inside.
type slowGame struct {
	mu      sync.Mutex
	inside  int
	entered chan struct{}
	release chan struct{}
}

func (g *slowGame) Assets() []api.AssetGame {
	return []api.AssetGame{{Asset: "web", Stage: 2, StageID: "S2", Choice: &api.GameChoice{DefenderType: "t1", Defense: "d3", Signal: "s1"}}}
}

func (g *slowGame) Evolution(ctx context.Context, asset string) (api.Evolution, error) {
	if asset != "web" {
		return api.Evolution{}, fmt.Errorf("%w: %q", api.ErrNoAsset, asset)
	}
	g.mu.Lock()
	g.inside++
	g.mu.Unlock()
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return api.Evolution{Asset: "web", Stage: 2, T: []float64{0, 1}, Attacks: []api.StrategySeries{{ID: "a1", P: []float64{0.5, 1}}}}, nil
}

type peers struct{}

func (peers) Self() string { return "12D3self" }
func (peers) Peers() []api.PeerTrust {
	return []api.PeerTrust{{ID: "12D3liar", Membership: "certificate", Trust: 0.12}, {ID: "12D3good", Connected: true, Trust: 0.97}}
}

func operatorServer(t *testing.T, opts ...api.Option) (*httptest.Server, string) {
	t.Helper()
	tok := strings.Repeat("ab", 32)
	srv := httptest.NewServer(api.NewServer(noPool{}, bus.New(), tok, prometheus.NewRegistry(), nil, opts...))
	t.Cleanup(srv.Close)
	return srv, tok
}

func get(t *testing.T, url, tok string, v any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

// TestTrafficSamplesTheFrontsCounters: the sampler reads the gateway's and the DNS front's
// counters from the registry into a bounded ring, and GET /v1/traffic turns them into rates;
// hostile ranges and point counts get a 400 naming the bounds, and no token a 401.
func TestTrafficSamplesTheFrontsCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proteus_gateway_requests_total", Help: "h"}, []string{"policy", "outcome"})
	dns := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proteus_dns_requests_total", Help: "h"}, []string{"transport", "outcome"})
	dis := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proteus_gateway_dissent_total", Help: "h"}, []string{"backend", "kind"})
	nc := prometheus.NewCounter(prometheus.CounterOpts{Name: "proteus_gateway_no_consensus_total", Help: "h"})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "proteus_other_requests_total", Help: "h"})
	reg.MustRegister(reqs, dns, dis, nc, other)

	tr := api.NewTraffic(reg, time.Second, 5)
	t0 := time.Now().Add(-12 * time.Second)
	tr.Sample(t0)
	reqs.WithLabelValues("vote", "ok").Add(18)
	reqs.WithLabelValues("vote", "blocked").Add(2)
	dns.WithLabelValues("udp", "ok").Add(10)
	dis.WithLabelValues("go-raw", "content").Add(3)
	dis.WithLabelValues("go-nethttp", "availability").Add(1)
	nc.Add(1)
	other.Add(1000)
	tr.Sample(t0.Add(2 * time.Second))
	ss := tr.Samples(time.Time{})
	if len(ss) != 2 || ss[1].Requests != 30 || ss[1].Blocked != 2 || ss[1].Dissents != 4 || ss[1].NoConsensus != 1 {
		t.Fatalf("samples %+v", ss)
	}
	ps := api.Rates(ss)
	if len(ps) != 1 || ps[0].Requests != 15 || ps[0].Dissents != 2 || ps[0].Blocked != 1 || ps[0].NoConsensus != 0.5 || ps[0].DissentRate != 4.0/30 {
		t.Fatalf("rates %+v", ps)
	}
	// Bounded: ten more samples leave the last five.
	for i := range 10 {
		reqs.WithLabelValues("vote", "ok").Inc()
		tr.Sample(t0.Add(time.Duration(3+i) * time.Second))
	}
	ss = tr.Samples(time.Time{})
	if len(ss) != 5 || !ss[0].Time.Equal(t0.Add(8*time.Second)) || !ss[4].Time.Equal(t0.Add(12*time.Second)) || ss[4].Requests != 40 {
		t.Fatalf("ring after 12 samples: %+v", ss)
	}
	if ps := api.Rates(ss); len(ps) != 4 || ps[3].Requests != 1 {
		t.Fatalf("rates %+v", ps)
	}

	srv, tok := operatorServer(t, api.WithTraffic(tr))
	var ans api.TrafficAnswer
	if code, body := get(t, srv.URL+"/api/v1/traffic", tok, &ans); code != http.StatusOK || ans.IntervalSeconds != 1 || ans.Last == nil || ans.Last.Requests != 40 {
		t.Fatalf("traffic: %d %s", code, body)
	}
	for _, q := range []string{"since=-1h", "since=0s", "since=6s", "since=100000h", "since=1e9", "since=" + strings.Repeat("9", 5000),
		"points=0", "points=-5", "points=2001", "points=x"} {
		code, body := get(t, srv.URL+"/api/v1/traffic?"+q, tok, nil)
		if code != http.StatusBadRequest || !(strings.Contains(body, "since must be a duration in (0, 5s]") || strings.Contains(body, "points must be an integer in [1, 2000]")) || len(body) > 300 {
			t.Errorf("%s: %d %q", q, code, body)
		}
	}
	for _, p := range []string{"/api/v1/traffic", "/api/v1/assets", "/api/v1/assets/web/evolution", "/api/v1/enclave/peers"} {
		if code, _ := get(t, srv.URL+p, "", nil); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d", p, code)
		}
	}
	// Without the engine or the enclave: 503 saying why.
	if code, body := get(t, srv.URL+"/api/v1/assets", tok, nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "without the engine") {
		t.Errorf("assets without the engine: %d %s", code, body)
	}
	if code, body := get(t, srv.URL+"/api/v1/enclave/peers", tok, nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "no enclave") {
		t.Errorf("peers without the enclave: %d %s", code, body)
	}
}

// TestThinKeepsThePointsBounded: a span of many samples comes back as at most ?points=
// intervals whose rates are the averages over what they span.
func TestThinKeepsThePointsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounter(prometheus.CounterOpts{Name: "proteus_gateway_requests_total", Help: "h"})
	reg.MustRegister(reqs)
	tr := api.NewTraffic(reg, time.Second, 1000)
	t0 := time.Now().Add(-999 * time.Second)
	for i := range 1000 {
		reqs.Add(float64(i % 7))
		tr.Sample(t0.Add(time.Duration(i) * time.Second))
	}
	srv, tok := operatorServer(t, api.WithTraffic(tr))
	var ans api.TrafficAnswer
	if code, body := get(t, srv.URL+"/api/v1/traffic?points=10", tok, &ans); code != http.StatusOK || len(ans.Points) == 0 || len(ans.Points) > 10 {
		t.Fatalf("%d points: %d %.200s", len(ans.Points), code, body)
	}
	var total float64
	prev := ans.Since
	for _, p := range ans.Points {
		total += p.Requests * p.Time.Sub(prev).Seconds()
		prev = p.Time
	}
	if ans.Last == nil || total < float64(ans.Last.Requests)*0.95 || total > float64(ans.Last.Requests)*1.05 {
		t.Fatalf("the thinned rates add up to %.0f requests of %+v", total, ans.Last)
	}
}

// TestPlotRequestsBounded: a flood of evolution requests runs at most MaxPlotRequests at a
// time; the rest are refused at once with 503 and Retry-After. An unknown asset is a 404 that
// does not echo a huge name.
func TestPlotRequestsBounded(t *testing.T) {
	g := &slowGame{entered: make(chan struct{}, 64), release: make(chan struct{})}
	srv, tok := operatorServer(t, api.WithGame(g), api.WithEnclave(peers{}))
	var once sync.Once
	release := func() { once.Do(func() { close(g.release) }) }
	t.Cleanup(release) // before the server's Close, which waits for the handlers
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for range api.MaxPlotRequests {
		wg.Add(1)
		go func() { defer wg.Done(); c, _ := get(t, srv.URL+"/api/v1/assets/web/evolution", tok, nil); codes <- c }()
	}
	for range api.MaxPlotRequests {
		<-g.entered
	}
	refused := 0
	flood := &http.Client{Timeout: 5 * time.Second} // an admitted one would wait for the release
	for range 16 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/assets/web/evolution", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := flood.Do(req)
		if err != nil {
			t.Fatalf("a request over the bound was not refused at once: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
			refused++
		}
	}
	if code, _ := get(t, srv.URL+"/api/v1/assets", tok, nil); code != http.StatusOK {
		t.Errorf("the assets table is not a plot: %d while plots are busy", code)
	}
	release()
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("an admitted evolution: %d", c)
		}
	}
	if refused != 16 || g.inside != api.MaxPlotRequests {
		t.Fatalf("refused %d of 16 over the bound; %d computed", refused, g.inside)
	}
	var ev api.Evolution
	if code, body := get(t, srv.URL+"/api/v1/assets/web/evolution", tok, &ev); code != http.StatusOK || len(ev.Attacks) != 1 {
		t.Fatalf("after the flood: %d %s", code, body)
	}
	code, body := get(t, srv.URL+"/api/v1/assets/"+strings.Repeat("x", 4000)+"/evolution", tok, nil)
	if code != http.StatusNotFound || len(body) > 300 {
		t.Fatalf("unknown asset: %d %.300s", code, body)
	}
	var pa api.PeersAnswer
	if code, body := get(t, srv.URL+"/api/v1/enclave/peers", tok, &pa); code != http.StatusOK || pa.Self != "12D3self" || len(pa.Peers) != 2 || pa.Peers[0].Trust != 0.12 {
		t.Fatalf("peers: %d %s", code, body)
	}
}
