package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process/processtest"
	"github.com/proteus-defense/proteus/mtd"
)

func TestMain(m *testing.M) { processtest.Main(m) }

type env struct {
	pool   *executor.Pool
	srv    *httptest.Server
	client *api.Client
	data   string
	token  string
	bus    *bus.Bus
}

func setup(t *testing.T) *env {
	t.Helper()
	b := bus.New()
	data := t.TempDir()
	pool := processtest.DemoPool(t, data, b)
	reg := prometheus.NewRegistry()
	if _, err := mtd.NewMetrics(pool, reg); err != nil {
		t.Fatal(err)
	}
	tok, err := api.NewToken(data)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(pool, b, tok, reg, nil))
	t.Cleanup(srv.Close)
	if err := api.WriteAddr(data, srv.Listener.Addr().String()); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(data, "")
	if err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, srv: srv, client: c, data: data, token: tok, bus: b}
}

func TestTokenFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	tok, err := api.NewToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, api.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v", st.Mode(), err)
	}
	again, _ := api.NewToken(dir)
	if len(tok) != 64 || again == tok {
		t.Fatalf("tokens %q %q", tok, again)
	}
	if _, err := api.NewClient(t.TempDir(), ""); !errors.Is(err, api.ErrNoAgent) {
		t.Fatalf("client without agent: %v", err)
	}
}

func TestEveryEndpointNeedsTheToken(t *testing.T) {
	e := setup(t)
	for _, ep := range []struct{ method, path string }{
		{"GET", "/v1/status"}, {"POST", "/v1/rotate?all=true"}, {"POST", "/v1/quarantine?id=x"}, {"GET", "/metrics"}, {"GET", "/events"},
		{"GET", "/v1/actions"}, {"POST", "/v1/block?target=203.0.113.7&ttl=1m"}, {"POST", "/v1/unblock?target=203.0.113.7"},
	} {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + e.token, "Bearer " + e.token + "x"} {
			req, _ := http.NewRequest(ep.method, e.srv.URL+ep.path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %q: %d", ep.method, ep.path, auth, resp.StatusCode)
			}
		}
	}
}

func TestStatusRotateQuarantine(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	st, err := e.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Executors) != 2 || st.CStar != 1 {
		t.Fatalf("status %+v", st)
	}
	x := st.Executors[0]
	if x.ID == "" || x.Variant == "" || !strings.HasPrefix(x.Address, "127.0.0.1:") || x.State != "healthy" || x.AgeSeconds <= 0 {
		t.Fatalf("executor %+v", x)
	}
	if err := e.client.Rotate(ctx, x.ID); err != nil {
		t.Fatal(err)
	}
	var apiErr *api.APIError
	if err := e.client.Rotate(ctx, x.ID); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("rotating a gone instance: %v", err)
	}
	if err := e.client.RotateAll(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = e.client.Status(ctx)
	for _, y := range st.Executors {
		if y.ID == x.ID {
			t.Fatalf("rotated instance still listed: %+v", y)
		}
	}
	victim := st.Executors[0].ID
	if err := e.client.Quarantine(ctx, victim); err != nil {
		t.Fatal(err)
	}
	st, _ = e.client.Status(ctx)
	states := map[string]string{}
	for _, y := range st.Executors {
		states[y.ID] = y.State
	}
	if states[victim] != "quarantined" {
		t.Fatalf("states %v", states)
	}
	if st.RotationRate <= 0 {
		t.Errorf("rotation rate %v", st.RotationRate)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("rotate without id: %d", resp.StatusCode)
	}
}

func authGet(t *testing.T, e *env, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestMetrics(t *testing.T) {
	e := setup(t)
	resp := authGet(t, e, "/metrics")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"proteus_mtd_cstar 1", "proteus_mtd_reconfiguration_rate", "proteus_executor_age_seconds{id=", `proteus_executors{state="healthy"} 2`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestEventsStreamRotation(t *testing.T) {
	e := setup(t)
	resp := authGet(t, e, "/events?kind=executor.rotation")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	go func() { _ = e.client.RotateAll(context.Background()) }()
	sc := bufio.NewScanner(resp.Body)
	var sawEvent bool
	for sc.Scan() {
		line := sc.Text()
		if line == "event: "+executor.EventRotation {
			sawEvent = true
			continue
		}
		if sawEvent && strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, `"kind":"executor.rotation"`) || !strings.Contains(line, `"reason":"api"`) {
				t.Fatalf("data %s", line)
			}
			return
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
}

// readEvent reads one event of an SSE stream: its "event:" value ("" without one) and data.
func readEvent(t *testing.T, sc *bufio.Scanner) (name, data string) {
	t.Helper()
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && data != "":
			return name, data
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
	return "", ""
}

// ?unnamed=1 leaves out the event line (a browser's EventSource then hands every kind to
// onmessage); a kind with a line break cannot start a field of its own in the named stream.
func TestEventsUnnamedAndKindOnOneLine(t *testing.T) {
	e := setup(t)
	for _, c := range []struct{ query, kind, name string }{
		{"?unnamed=1", "sensor.never-heard-of", ""},
		{"", "evil\ndata: {\"kind\":\"forged\"}", `evil data: {"kind":"forged"}`},
	} {
		resp := authGet(t, e, "/events"+c.query)
		sc := bufio.NewScanner(resp.Body)
		sc.Scan() // the comment the server writes once it has subscribed
		e.bus.Publish(bus.Event{Kind: c.kind, Source: "test"})
		name, data := readEvent(t, sc)
		resp.Body.Close()
		var ev bus.Event
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Kind != c.kind || name != c.name {
			t.Errorf("%s: event %q data %q (%v); want event %q and kind %q", c.query, name, data, err, c.name, c.kind)
		}
	}
}

// The API is under /api/v1/; the paths it had before stay as aliases; the client uses the
// versioned ones.
func TestVersionedPathsAndAliases(t *testing.T) {
	e := setup(t)
	for _, p := range []string{"/api/v1/status", "/v1/status", "/metrics", "/api/v1/metrics"} {
		resp := authGet(t, e, p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/api/v2/status", "/api/status", "/api/v1/nothing"} {
		resp := authGet(t, e, p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	var paths []string
	var mu sync.Mutex
	inner := e.srv.Config.Handler
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	c, err := api.NewClient(e.data, rec.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	ch, err := c.Events(sctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range ch { // until the stream has ended
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) != 2 || paths[0] != "/api/v1/status" || paths[1] != "/api/v1/events" {
		t.Errorf("the client asked for %v", paths)
	}
}
