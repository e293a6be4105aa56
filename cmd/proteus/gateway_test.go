package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGatewayUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("version: 1\ngateway:\n  k: 0\n  quorum: -1\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no backend", []string{"gateway"}, "at least one --backend"},
		{"bad url", []string{"gateway", "--backend", "ftp://x"}, "backends[0]"},
		{"bad policy", []string{"gateway", "--backend", "http://127.0.0.1:1", "--policy", "all"}, "--policy"},
		{"bad k", []string{"gateway", "--backend", "http://127.0.0.1:1", "--k", "0"}, "gateway.k"},
		{"bad scheduler", []string{"gateway", "--backend", "http://127.0.0.1:1", "--scheduler", "fast"}, "gateway.scheduler"},
		{"unknown flag", []string{"gateway", "--bogus"}, "unknown flag"},
		{"bad config", []string{"gateway", "-c", badCfg, "--backend", "http://127.0.0.1:1"}, "gateway.quorum"},
		{"tls half", []string{"gateway", "--backend", "http://127.0.0.1:1", "--tls-cert", "c.pem"}, "gateway.tls"},
		{"route without policy", []string{"gateway", "--backend", "http://127.0.0.1:1", "--route", "/x/"}, "no =POLICY"},
		{"route bad policy", []string{"gateway", "--backend", "http://127.0.0.1:1", "--route", "/x/=fast"}, "gateway.routes[0].policy"},
		{"route bad prefix", []string{"gateway", "--backend", "http://127.0.0.1:1", "--route", "x=single"}, "PREFIX starting with /"},
		{"route bad method", []string{"gateway", "--backend", "http://127.0.0.1:1", "--route", "post:/x=single"}, "gateway.routes[0].methods[0]"},
		{"route empty method", []string{"gateway", "--backend", "http://127.0.0.1:1", "--route", "GET,,PUT:/x=single"}, "empty method"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not mention %q", errb.String(), tc.want)
			}
		})
	}
}

// gatewayRun is `proteus gateway` running in-process, with the addresses it printed.
type gatewayRun struct {
	URL, MetricsURL string
	stderr          bytes.Buffer // read it only after stop
	cancel          context.CancelFunc
	done            chan int
}

// startGatewayCmd runs `proteus gateway --listen 127.0.0.1:0 --metrics 127.0.0.1:0 args...` until
// stop, with its own data directory unless args name one.
func startGatewayCmd(t *testing.T, args ...string) *gatewayRun {
	t.Helper()
	g := &gatewayRun{done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	old := gatewayContext
	gatewayContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { gatewayContext = old })
	all := append([]string{"gateway", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"}, args...)
	if !slices.Contains(args, "--data-dir") {
		all = append(all, "--data-dir", t.TempDir())
	}
	pr, pw := io.Pipe()
	go func() {
		g.done <- run(all, pw, &g.stderr)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for (g.URL == "" || g.MetricsURL == "") && sc.Scan() {
		if m := regexp.MustCompile(`metrics on (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			g.MetricsURL = m[1]
		}
		if m := regexp.MustCompile(`listening on (\S+),`).FindStringSubmatch(sc.Text()); m != nil {
			g.URL = m[1]
		}
	}
	go io.Copy(io.Discard, pr)
	if g.URL == "" || g.MetricsURL == "" {
		cancel()
		<-g.done
		t.Fatalf("no addresses printed; stderr %s", g.stderr.String())
	}
	return g
}

// stop ends the gateway and returns its exit code.
func (g *gatewayRun) stop() int {
	g.cancel()
	return <-g.done
}

// startBodies starts one server per handler and returns their URLs.
func startBodies(t *testing.T, hs ...http.HandlerFunc) []string {
	t.Helper()
	var urls []string
	for _, h := range hs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		urls = append(urls, "http://"+ln.Addr().String())
	}
	return urls
}

func backendArgs(urls []string) []string {
	var args []string
	for _, u := range urls {
		args = append(args, "--backend", u)
	}
	return args
}

func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
}

func TestGatewayServesAndExportsMetrics(t *testing.T) {
	urls := startBodies(t, answer("same\n"), answer("same\n"), answer("tampered\n"))
	g := startGatewayCmd(t, backendArgs(urls)...)
	code, body := httpGet(t, g.URL+"/")
	if code != 200 || body != "same\n" {
		t.Fatalf("gateway answered %d %q", code, body)
	}
	if code := g.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, g.stderr.String())
	}
	if !strings.Contains(g.stderr.String(), "dissent") || !strings.Contains(g.stderr.String(), "component=mimic") {
		t.Errorf("dissent not logged: %s", g.stderr.String())
	}
}

func TestGatewayMetricsEndpoint(t *testing.T) {
	g := startGatewayCmd(t, append(backendArgs(startBodies(t, answer("x"))), "--k", "1")...)
	httpGet(t, g.URL+"/")
	_, text := httpGet(t, g.MetricsURL)
	g.stop()
	for _, name := range []string{"proteus_gateway_requests_total", "proteus_gateway_request_duration_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(text, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}

// The standalone gateway keeps learned noise in its data directory: a header that differs on
// every response is known noise from the first request after a restart; an unreadable file is
// logged, set aside, and does not keep the gateway from serving.
func TestGatewayRestoresLearnedNoise(t *testing.T) {
	rand := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Rand", fmt.Sprint(time.Now().UnixNano()))
		io.WriteString(w, "same\n")
	}
	args := backendArgs(startBodies(t, rand, rand, rand))
	data := t.TempDir()
	file := filepath.Join(data, "learned-noise.json")
	os.WriteFile(file, []byte(`{"version": 1, "routes": {"default": ["header:X-Rand"]}}`), 0o600)
	g := startGatewayCmd(t, append(args, "--data-dir", data)...)
	if code, body := httpGet(t, g.URL+"/"); code != 200 || body != "same\n" {
		t.Fatalf("first request with X-Rand known as noise: %d %q", code, body)
	}
	g.stop()
	if !strings.Contains(g.stderr.String(), "restored learned noise") {
		t.Errorf("restore not logged: %s", g.stderr.String())
	}

	os.WriteFile(file, []byte(`{"version": 1, "routes": {"default": ["header:X Rand"]}}`), 0o600)
	g = startGatewayCmd(t, append(args, "--data-dir", data)...)
	if code, _ := httpGet(t, g.URL+"/"); code != http.StatusBadGateway {
		t.Fatalf("with the bad file set aside, X-Rand differs on every executor: %d, want 502", code)
	}
	g.stop()
	if log := g.stderr.String(); !strings.Contains(log, "learned noise unreadable") || !strings.Contains(log, file) {
		t.Errorf("bad file not reported with its name: %s", log)
	}
	if aside, _ := filepath.Glob(file + ".bad-*"); len(aside) != 1 {
		t.Errorf("bad file not set aside: %v", aside)
	}
}

// --route sets policies per prefix (and method) without a config file: three servers that
// disagree fail closed where the requests are voted on and answer where a route says single.
func TestGatewayRouteFlag(t *testing.T) {
	urls := startBodies(t, answer("one"), answer("two"), answer("three"))
	g := startGatewayCmd(t, append(backendArgs(urls), "--route", "/files/=single", "--route", "POST:/api/=single")...)
	defer g.stop()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/files/a", 200},
		{http.MethodGet, "/other", http.StatusBadGateway},
		{http.MethodPost, "/api/x", 200},
		{http.MethodGet, "/api/x", http.StatusBadGateway},
	} {
		req, _ := http.NewRequest(tc.method, g.URL+tc.path, strings.NewReader(""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

// /healthz on the metrics address says whether a voted request can be answered and how each
// backend stands: ready with two of three up (the dead one ejected after it failed), not ready
// once the answering ones are fewer than the quorum.
func TestGatewayHealthEndpoint(t *testing.T) {
	urls := startBodies(t, answer("x"), answer("x"))
	urls = append(urls, "http://127.0.0.1:1")    // nothing listens there
	cfg := filepath.Join(t.TempDir(), "gw.yaml") // long spells: the dead one stays out while this runs
	os.WriteFile(cfg, []byte("version: 1\ngateway:\n  eject: {after: 3, for: 10m, max: 10m}\n"), 0o644)
	g := startGatewayCmd(t, append(backendArgs(urls), "-c", cfg)...)
	defer g.stop()
	health := strings.TrimSuffix(g.MetricsURL, "/metrics") + "/healthz"
	for range 5 {
		httpGet(t, g.URL+"/")
	}
	type backendHealth struct {
		URL      string
		Trust    float64
		Dissents int
		Ejected  string `json:"ejected_until"`
	}
	var st struct {
		Ready    bool
		Quorum   int
		Backends []backendHealth
	}
	var code int
	var body string
	// A call's executor outcomes are accounted when its last executor request is done, which
	// may be after the client has its answer: wait until the dead one is out, then look.
	waitFor(t, "the dead backend to be ejected", func() bool {
		code, body = httpGet(t, health)
		st.Backends = nil
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%d %q: %v", code, body, err)
		}
		return slices.ContainsFunc(st.Backends, func(b backendHealth) bool { return b.URL == urls[2] && b.Ejected != "" })
	})
	if code != 200 || !st.Ready || st.Quorum != 2 || len(st.Backends) != 3 {
		t.Fatalf("health with two of three up: %d %s", code, body)
	}
	for _, b := range st.Backends {
		dead := b.URL == urls[2]
		if dead != (b.Ejected != "") || dead != (b.Dissents > 0) || dead != (b.Trust < 1) {
			t.Errorf("backend %s: %+v", b.URL, b)
		}
	}

	solo := startGatewayCmd(t, "-c", cfg, "--backend", "http://127.0.0.1:1", "--backend", "http://127.0.0.1:2", "--backend", urls[0])
	defer solo.stop()
	for range 5 {
		httpGet(t, solo.URL+"/")
	}
	waitFor(t, "the gateway with one of three up to say it is not ready", func() bool {
		code, body = httpGet(t, strings.TrimSuffix(solo.MetricsURL, "/metrics")+"/healthz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, `"ready":false`) {
		t.Errorf("health with one of three up: %d %s", code, body)
	}
}

// One backend under the default k=3 cannot make a vote's quorum: the gateway says so at start.
// A vote with fewer voters than k, or a quorum below a majority, is refused unless asked for,
// and then warned about at start.
func TestGatewayRefusesAWeakVote(t *testing.T) {
	url := startBodies(t, answer("x"))
	for _, args := range [][]string{
		{"gateway", "--backend", url[0]},
		{"gateway", "--backend", url[0], "--backend", url[0], "--backend", url[0], "--quorum", "1"},
	} {
		code, _, errs := runCLI(t, args...)
		if code != 2 || !strings.Contains(errs, "allow_weak_vote") {
			t.Errorf("%v: exit %d, %q; want 2 naming allow_weak_vote", args, code, errs)
		}
	}
	// With every request on one backend (--policy single) k does not matter.
	one := startGatewayCmd(t, append(backendArgs(url), "--policy", "single")...)
	code, _ := httpGet(t, one.URL+"/")
	one.stop()
	if code != 200 || strings.Contains(one.stderr.String(), "weak vote") {
		t.Errorf("--policy single, one backend: %d; stderr %s", code, one.stderr.String())
	}
	g := startGatewayCmd(t, append(backendArgs(url), "--allow-weak-vote")...)
	code, _ = httpGet(t, g.URL+"/")
	g.stop()
	if code != http.StatusServiceUnavailable || !strings.Contains(g.stderr.String(), "weak vote") {
		t.Errorf("one backend, k=3, allowed: %d; stderr %s", code, g.stderr.String())
	}
}

// Whatever --route value parseRouteFlag accepts, it splits without losing or inventing a byte.
func FuzzParseRouteFlag(f *testing.F) {
	for _, s := range []string{"/x=single", "POST,PUT:/api/=vote-all", "/a=b=c", "GET:/", ":/x=single", "x", "/x", "GET,,PUT:/x=single"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := parseRouteFlag(v)
		if err != nil {
			return
		}
		back := r.Prefix + "=" + r.Policy
		if len(r.Methods) > 0 {
			back = strings.Join(r.Methods, ",") + ":" + back
		}
		if back != v || strings.Contains(r.Policy, "=") || slices.Contains(r.Methods, "") {
			t.Fatalf("%q parsed as %+v", v, r)
		}
	})
}

// `proteus validate --for gateway` checks a file the way `proteus gateway -c` reads it.
func TestValidateForGateway(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "gw.yaml")
	os.WriteFile(good, []byte("version: 1\ngateway:\n  backends: [http://127.0.0.1:8081, http://127.0.0.1:8082, http://127.0.0.1:8083]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\ngateway:\n  eject: {after: -2}\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"validate", "--for", "gateway", good}, 0, "ok (for gateway)"},
		{[]string{"validate", good}, 2, "pool"},
		{[]string{"validate", "--for", "gateway", bad}, 2, "gateway.eject.after"},
		{[]string{"validate", "--for", "nginx", good}, 2, "--for must be"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.want) {
			t.Errorf("%v: exit %d, %q %q; want %d and %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
}
