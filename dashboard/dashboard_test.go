package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/dashboard"
	"github.com/proteus-defense/proteus/engine"
	"github.com/proteus-defense/proteus/engine/agent"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process/processtest"
	"github.com/proteus-defense/proteus/game"
	"github.com/proteus-defense/proteus/mimic"
	"github.com/proteus-defense/proteus/store"
)

func TestMain(m *testing.M) { processtest.Main(m) }

// hostile is markup an attacker can put into evidence (a request path, an EVE signature).
const hostile = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`

// syncBuffer is a log sink the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type env struct {
	srv    *httptest.Server
	client *api.Client
	token  string
	bus    *bus.Bus
	pool   *executor.Pool
	logs   *syncBuffer
	cm     *countermeasure.Manager
	store  *store.Store
	action string           // the active block of decision d-xss, which its page can revert
	gw     *httptest.Server // the voting gateway over the pool (its counters feed the traffic plot)
	engine *engine.Engine   // the engine (web asset), on the same store and bus
	peers  *fakePeers
}

// fakePeers stands in for the enclave node's trust table; one peer's ID carries markup.
type fakePeers struct {
	mu sync.Mutex
	ps []api.PeerTrust
}

func (f *fakePeers) Self() string { return "12D3KooWSelf" }
func (f *fakePeers) Peers() []api.PeerTrust {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.PeerTrust(nil), f.ps...)
}
func (f *fakePeers) set(ps ...api.PeerTrust) { f.mu.Lock(); f.ps = ps; f.mu.Unlock() }

// poolBackends shows the pool's healthy executors to the voting gateway.
type poolBackends struct{ p *executor.Pool }

func (b poolBackends) Backends() []mimic.Backend {
	var out []mimic.Backend
	for _, inst := range b.p.Healthy() {
		out = append(out, mimic.Backend{ID: inst.ID, Variant: inst.Variant, Addr: "http://" + inst.Address, Traits: inst.Traits})
	}
	return out
}

// engineConfig: one asset, web, with the EVE rules of a multi-stage attack; every defense
// runs a no-op program (the test's executors must not be rotated under it).
const engineConfig = `version: 1
pool:
  variants: [{name: a, driver: process, image: builtin:demo, command: [x]}]
engine:
  model: m.yaml
  assets: [{name: web, device: web, ports: [8080]}]
  rules:
    - {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.5}
    - {name: exploit, sensor: eve, signature: "^ET EXPLOIT", stage: S2, attack: a3, weight: 0.6}
  strategies:
    d1: [{kind: exec, command: [/bin/true]}]
    d2: [{kind: exec, command: [/bin/true]}]
    d3: [{kind: exec, command: [/bin/true]}]
    d4: [{kind: exec, command: [/bin/true]}]
    d5: [{kind: exec, command: [/bin/true]}]
    d6: [{kind: exec, command: [/bin/true]}]
    d7: [{kind: exec, command: [/bin/true]}]
    d8: [{kind: exec, command: [/bin/true]}]
    d9: [{kind: exec, command: [/bin/true]}]
`

// newEngine runs the engine over the test's store and bus until the test ends.
func newEngine(t *testing.T, st *store.Store, b *bus.Bus, pool *executor.Pool) *engine.Engine {
	t.Helper()
	const modelFile = "../examples/mttegdm-paper.yaml"
	data, err := os.ReadFile(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := game.ParseModel(modelFile, data)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("engine.yaml", []byte(engineConfig))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Config: cfg.Engine, Model: m, Pool: pool, Store: st, Bus: b,
		Exec: func(context.Context, []string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return eng
}

// setup runs the real agent API (a process pool of two demo executors, the audit store with one
// decision whose evidence carries markup) behind the dashboard, on loopback.
func setup(t *testing.T) *env {
	t.Helper()
	b := bus.New()
	data := t.TempDir()
	pool := processtest.DemoPool(t, data, b)
	st, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The engine's own detail type, so the page is checked against the field names it writes.
	detail, err := json.Marshal(engine.Detail{Rule: "eve-exploit", Events: 3, ObservedRate: 1.25,
		Live:       engine.Live{CStar: 2, Rate: 1.5, Intensity: 0.6},
		Transition: &engine.Transition{From: "recon", To: "exploit", Path: 0.42},
		Choice: &engine.Choice{DefenderType: "high", Defense: "block", Signal: "honeypot", Attack: hostile,
			AttackGain: 1.5, DefenseGain: 4}})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := countermeasure.NewManager(countermeasure.ManagerOptions{DataDir: data, Actuators: []countermeasure.Actuator{countermeasure.NewBlocklist()}, Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cm.Close() })
	act, err := cm.Apply(context.Background(), countermeasure.Action{Actuator: countermeasure.BlocklistID, Kind: countermeasure.KindBlock,
		Target: countermeasure.AddrTarget(netip.MustParseAddr("192.0.2.7")), Source: "engine/shop", Reason: "decision d-xss", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), store.Decision{ID: "d-xss", Time: time.Now().UTC(), Asset: "shop", Source: "192.0.2.7",
		Verdict: "act", Probability: 0.93, Alpha: 0.8, Beta: 0.3, Stage: 2, StageID: "exploit", Attack: "sqli", Strategy: "block",
		Signal: "honeypot", Countermeasures: []store.Countermeasure{{Kind: "block", Target: hostile, Expires: time.Now().Add(time.Hour)},
			{Kind: "block", Target: "192.0.2.7/32", ID: act.ID, Expires: act.Expires}},
		Evidence: []store.Evidence{{Sensor: "eve", Time: time.Now().UTC(), Kind: "alert", Summary: "ET " + hostile, Excerpt: hostile}},
		Detail:   detail}); err != nil {
		t.Fatal(err)
	}
	tok, err := api.NewToken(data)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	g, err := mimic.New(mimic.Options{Backends: poolBackends{pool}, Bus: b, K: 2, Quorum: 2, Metrics: mimic.NewMetrics(reg), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(g)
	t.Cleanup(gw.Close)
	t.Cleanup(g.Close)
	traffic := api.NewTraffic(reg, 250*time.Millisecond, 240)
	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan struct{})
	go func() { traffic.Run(tctx); close(tdone) }()
	t.Cleanup(func() { tcancel(); <-tdone })
	eng := newEngine(t, st, b, pool)
	peers := &fakePeers{}
	peers.set(api.PeerTrust{ID: "12D3KooWHonest", Connected: true, InTopic: true, Membership: "certificate", Trust: 0.96},
		api.PeerTrust{ID: "12D3KooWLiar" + hostile, Membership: "pending", Trust: 0.18})
	srv := httptest.NewServer(dashboard.New(api.NewServer(pool, b, tok, reg, log, api.WithDecisions(st),
		api.WithCountermeasures(cm, countermeasure.BlocklistID), api.WithTraffic(traffic), api.WithGame(agent.GameView(eng)),
		api.WithEnclave(peers)), tok, log))
	t.Cleanup(srv.Close)
	if err := api.WriteAddr(data, srv.Listener.Addr().String()); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(data, "")
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, client: c, token: tok, bus: b, pool: pool, logs: logs, cm: cm, action: act.ID, store: st, gw: gw, engine: eng, peers: peers}
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// login spends a fresh one-time link in c's jar and returns the link.
func (e *env) login(t *testing.T, c *http.Client) string {
	t.Helper()
	l, err := e.client.LoginLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, c, http.MethodGet, l.URL, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login link: %d %s", resp.StatusCode, body)
	}
	return l.URL
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	e := setup(t)
	c := browser(t)
	e.login(t, c)
	for _, p := range []string{"/", "/ui/app.js", "/ui/style.css", "/v1/status", "/v1/decisions", "/v1/decisions/d-xss", "/login?code=nope", "/nothing"} {
		resp, _ := do(t, c, http.MethodGet, e.srv.URL+p, nil)
		h := resp.Header
		if got := h.Get("Content-Security-Policy"); got != dashboard.ContentSecurityPolicy {
			t.Errorf("%s: Content-Security-Policy %q", p, got)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
			"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", p, k, got, want)
			}
		}
	}
	csp := dashboard.ContentSecurityPolicy
	if strings.Contains(csp, "unsafe-") || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self';") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q is not strict", csp)
	}
	resp, _ := do(t, c, http.MethodGet, e.srv.URL+"/ui/app.js", nil)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js Content-Type %q", ct)
	}
	resp, body := do(t, c, http.MethodGet, e.srv.URL+"/", nil)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(body, `src="/ui/app.js"`) {
		t.Errorf("/: %s %q", ct, body)
	}
}

func TestRefusedWithoutLogin(t *testing.T) {
	e := setup(t)
	c := browser(t)
	forged := map[string]string{"Cookie": dashboard.CookieName + "=" + strings.Repeat("a", 64)}
	for _, p := range []string{"/", "/ui/app.js", "/v1/status", "/v1/decisions", "/v1/decisions/d-xss", "/events", "/metrics"} {
		for _, hdr := range []map[string]string{nil, forged, {"Authorization": "Bearer " + strings.Repeat("0", 64)}} {
			if resp, body := do(t, c, http.MethodGet, e.srv.URL+p, hdr); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "d-xss") {
				t.Errorf("GET %s with %v: %d %q, want 401", p, hdr, resp.StatusCode, body)
			}
		}
	}
	// The bearer token still works as it did.
	if resp, body := do(t, c, http.MethodGet, e.srv.URL+"/v1/decisions", map[string]string{"Authorization": "Bearer " + e.token}); resp.StatusCode != http.StatusOK || !strings.Contains(body, "d-xss") {
		t.Errorf("GET /v1/decisions with the token: %d %s", resp.StatusCode, body)
	}
	// Only a token holder gets a link.
	if resp, _ := do(t, c, http.MethodPost, e.srv.URL+dashboard.LinkPath, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login link without the token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, http.MethodGet, e.srv.URL+dashboard.LinkPath, map[string]string{"Authorization": "Bearer " + e.token}); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET login link: %d, want 405", resp.StatusCode)
	}
}

func TestOneTimeLinkGivesAStrictHttpOnlyCookie(t *testing.T) {
	e := setup(t)
	l, err := e.client.LoginLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(l.URL, e.token) {
		t.Fatalf("the link %s carries the bearer token", l.URL)
	}
	if u, err := url.Parse(l.URL); err != nil || u.Path != dashboard.LoginPath || len(u.Query().Get("code")) != 64 {
		t.Fatalf("link %q", l.URL)
	}
	c := browser(t)
	resp, body := do(t, c, http.MethodGet, l.URL, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `url=/`) {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == dashboard.CookieName {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || sess.Value == e.token || len(sess.Value) != 64 {
		t.Fatalf("session cookie %+v", sess)
	}
	for _, p := range []string{"/", "/v1/status", "/v1/decisions/d-xss"} {
		if resp, body := do(t, c, http.MethodGet, e.srv.URL+p, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s logged in: %d %s", p, resp.StatusCode, body)
		}
	}
	// Spent: a second browser (someone who found the link in a history) gets nothing.
	other := browser(t)
	if resp, _ := do(t, other, http.MethodGet, l.URL, nil); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("second use of the link: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp, _ := do(t, other, http.MethodGet, e.srv.URL+"/v1/status", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status after a spent link: %d", resp.StatusCode)
	}
	// Logout ends the session (from the dashboard's origin only).
	if resp, _ := do(t, c, http.MethodPost, e.srv.URL+dashboard.LogoutPath, map[string]string{"Origin": "http://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site logout: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, http.MethodPost, e.srv.URL+dashboard.LogoutPath, map[string]string{"Origin": e.srv.URL, dashboard.CSRFHeader: "1"}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, http.MethodGet, e.srv.URL+"/v1/status", map[string]string{"Cookie": dashboard.CookieName + "=" + sess.Value}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status after logout: %d", resp.StatusCode)
	}
	for _, secret := range []string{e.token, sess.Value, l.URL[strings.Index(l.URL, "code=")+5:]} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("a secret is in the logs:\n%s", e.logs.String())
		}
	}
}

func TestCrossSiteStateChangeRefused(t *testing.T) {
	e := setup(t)
	c := browser(t)
	e.login(t, c)
	before := map[string]bool{}
	for _, m := range e.pool.Members() {
		before[m.Instance.ID] = true
	}
	rotate := e.srv.URL + "/v1/rotate?all=true"
	for name, hdr := range map[string]map[string]string{
		"no origin":             nil,
		"cross-site origin":     {"Origin": "http://evil.example", dashboard.CSRFHeader: "1"},
		"same origin no header": {"Origin": e.srv.URL},
		"null origin":           {"Origin": "null", dashboard.CSRFHeader: "1"},
	} {
		if resp, body := do(t, c, http.MethodPost, rotate, hdr); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST rotate with the cookie: %d %s, want 403", name, resp.StatusCode, body)
		}
	}
	for _, m := range e.pool.Members() {
		if !before[m.Instance.ID] {
			t.Fatalf("a refused request rotated %s", m.Instance.ID)
		}
	}
	// From the dashboard's own page the same call goes through to the API.
	if resp, body := do(t, c, http.MethodPost, rotate, map[string]string{"Origin": e.srv.URL, dashboard.CSRFHeader: "1"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("same-origin rotate: %d %s", resp.StatusCode, body)
	}
	rotated := false
	for _, m := range e.pool.Members() {
		rotated = rotated || !before[m.Instance.ID]
	}
	if !rotated {
		t.Error("the same-origin rotate did not rotate")
	}
}

func TestDecisionFilterValidated(t *testing.T) {
	e := setup(t)
	c := browser(t)
	e.login(t, c)
	for _, q := range []string{"source=not-an-ip", "verdict=pwn", "since=-1h", "limit=0", "limit=100000"} {
		if resp, body := do(t, c, http.MethodGet, e.srv.URL+"/v1/decisions?"+q, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, resp.StatusCode, body)
		}
	}
	for q, n := range map[string]int{"verdict=act": 1, "verdict=defer": 0, "source=192.0.2.7": 1, "asset=other": 0, "since=1h": 1} {
		_, body := do(t, c, http.MethodGet, e.srv.URL+"/v1/decisions?"+q, nil)
		var l api.DecisionList
		if err := json.Unmarshal([]byte(body), &l); err != nil || len(l.Decisions) != n {
			t.Errorf("?%s: %s, want %d decisions", q, body, n)
		}
	}
	if resp, _ := do(t, c, http.MethodGet, e.srv.URL+"/v1/decisions/nope", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown decision: %d", resp.StatusCode)
	}
}

// DNS rebinding: a page on the attacker's domain, resolved to the agent's address, makes the
// browser send the attacker's name as Host (and as Origin, so the same-origin check alone
// would pass). Every such request is refused before the API, with the token, with a session
// cookie and on the login path; IP literals and localhost are served, and a name only when
// allowed.
func TestForeignHostRefused(t *testing.T) {
	e := setup(t)
	c := browser(t)
	e.login(t, c)
	before := len(e.pool.Members())
	ids := map[string]bool{}
	for _, m := range e.pool.Members() {
		ids[m.Instance.ID] = true
	}
	_, port, _ := net.SplitHostPort(e.srv.Listener.Addr().String())
	evil := "rebind.evil.example:" + port
	send := func(c *http.Client, method, path, host string, hdr map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(method, e.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	auth := map[string]string{"Authorization": "Bearer " + e.token}
	for name, tc := range map[string]struct {
		method, path string
		hdr          map[string]string
	}{
		"token status":      {http.MethodGet, "/v1/status", auth},
		"token login link":  {http.MethodPost, dashboard.LinkPath, auth},
		"cookie page":       {http.MethodGet, "/", nil},
		"cookie rotate":     {http.MethodPost, "/v1/rotate?all=true", map[string]string{"Origin": "http://" + evil, dashboard.CSRFHeader: "1"}},
		"login with a code": {http.MethodGet, dashboard.LoginPath + "?code=" + strings.Repeat("a", 64), nil},
	} {
		if code := send(c, tc.method, tc.path, evil, tc.hdr); code != http.StatusMisdirectedRequest {
			t.Errorf("%s with Host %s: %d, want 421", name, evil, code)
		}
	}
	for _, m := range e.pool.Members() {
		if !ids[m.Instance.ID] {
			t.Fatalf("a refused request rotated %s", m.Instance.ID)
		}
	}
	if n := len(e.pool.Members()); n != before {
		t.Fatalf("members %d, before %d", n, before)
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "[::1]:" + port} {
		if code := send(http.DefaultClient, http.MethodGet, "/v1/status", host, auth); code != http.StatusOK {
			t.Errorf("Host %s: %d, want 200", host, code)
		}
	}
	if !strings.Contains(e.logs.String(), "DNS rebinding") {
		t.Error("refused hosts are not logged")
	}
	// A name the operator allows (a reverse proxy's) is served; others still are not.
	named := httptest.NewServer(dashboard.New(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		e.token, nil, dashboard.WithAllowedHosts("Proteus.Internal")))
	t.Cleanup(named.Close)
	for host, want := range map[string]int{"proteus.internal": http.StatusTeapot, "proteus.internal.evil.example": http.StatusMisdirectedRequest} {
		req, _ := http.NewRequest(http.MethodGet, named.URL+"/v1/status", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("allowed-hosts server, Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// active reports whether the countermeasure manager holds action id.
func (e *env) active(id string) bool {
	for _, a := range e.cm.Active() {
		if a.ID == id {
			return true
		}
	}
	return false
}

// A decision's countermeasure is reverted early through the API, and the revert is recorded in
// its story (who, when); a forged cross-site POST with the session cookie reverts nothing.
func TestRevertThroughTheAPI(t *testing.T) {
	e := setup(t)
	c := browser(t)
	e.login(t, c)
	revert := e.srv.URL + "/v1/decisions/d-xss/revert?action=" + url.QueryEscape(e.action)
	for name, hdr := range map[string]map[string]string{
		"no origin":             nil,
		"cross-site origin":     {"Origin": "http://evil.example", dashboard.CSRFHeader: "1"},
		"cross-site, no header": {"Origin": "http://evil.example"},
		"same origin no header": {"Origin": e.srv.URL},
	} {
		if resp, body := do(t, c, http.MethodPost, revert, hdr); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: POST revert with the cookie: %d %s, want 403", name, resp.StatusCode, body)
		}
	}
	if resp, _ := do(t, &http.Client{}, http.MethodPost, revert, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST revert without cookie or token: %d, want 401", resp.StatusCode)
	}
	if !e.active(e.action) {
		t.Fatal("a refused request reverted the block")
	}
	if d, err := e.client.Decision(context.Background(), "d-xss"); err != nil || len(d.Reverts) != 0 {
		t.Fatalf("refused requests recorded reverts: %+v %v", d.Reverts, err)
	}

	var apiErr *api.APIError
	if _, err := e.client.RevertDecision(context.Background(), "d-xss", "blocklist/nothing"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("revert of a countermeasure the decision did not take: %v, want 404", err)
	}
	if _, err := e.client.RevertDecision(context.Background(), "d-none", e.action); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("revert for an unknown decision: %v, want 404", err)
	}
	before := time.Now().UTC()
	r, err := e.client.RevertDecision(context.Background(), "d-xss", e.action)
	if err != nil {
		t.Fatal(err)
	}
	if e.active(e.action) {
		t.Error("still active after the revert")
	}
	d, err := e.client.Decision(context.Background(), "d-xss")
	if err != nil || len(d.Reverts) != 1 {
		t.Fatalf("reverts recorded: %+v %v", d.Reverts, err)
	}
	if got := d.Reverts[0]; got.Action != e.action || got.By != "API token from 127.0.0.1" || got.Time.Before(before.Add(-time.Second)) || got != r.Revert {
		t.Errorf("revert recorded as %+v (answer %+v)", got, r.Revert)
	}
	if _, err := e.client.RevertDecision(context.Background(), "d-xss", e.action); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Errorf("second revert: %v, want 409", err)
	}
}

// The timeline endpoint validates its parameters and counts the store's decisions.
func TestTimelineEndpoint(t *testing.T) {
	e := setup(t)
	c := &http.Client{}
	auth := map[string]string{"Authorization": "Bearer " + e.token}
	for _, q := range []string{"since=-1h", "since=banana", "since=10000h", "buckets=0", "buckets=501", "top=0", "top=x"} {
		if resp, body := do(t, c, http.MethodGet, e.srv.URL+"/v1/timeline?"+q, auth); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, resp.StatusCode, body)
		}
	}
	tl, err := e.client.Timeline(context.Background(), time.Hour, 6, 5)
	if err != nil {
		t.Fatal(err)
	}
	acts := 0
	for _, b := range tl.Buckets {
		acts += b.Act
	}
	if len(tl.Buckets) != 6 || tl.Bucket != 600 || acts != 1 || len(tl.TopSources) != 1 || tl.TopSources[0].Source != "192.0.2.7" {
		t.Errorf("timeline %+v", tl)
	}
}
