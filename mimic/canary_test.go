package mimic

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// A harvested canary is found however the attacker sends it back: as a bearer token, Basic
// credentials, a cookie, a percent-encoded query or form body, a JSON body; a request that
// only comes close is not taken for one.
func TestCanaryIn(t *testing.T) {
	const tok = "canary-7f3a9c"
	canaries := []string{"other-canary-1", tok}
	basic := base64.StdEncoding.EncodeToString([]byte("admin:" + tok))
	for _, tc := range []struct {
		name, where string
		hdr         map[string]string
		target      string
		body        string
	}{
		{"bearer", "header Authorization", map[string]string{"Authorization": "Bearer " + tok}, "/", ""},
		{"basic", "header Authorization (basic credentials)", map[string]string{"Authorization": "Basic " + basic}, "/", ""},
		{"cookie", "header Cookie", map[string]string{"Cookie": "sid=1; pass=" + tok}, "/", ""},
		{"encoded cookie", "header Cookie", map[string]string{"Cookie": "pass=" + url.QueryEscape("x "+tok)}, "/", ""},
		{"query", "query", nil, "/login?user=admin&pass=" + strings.ReplaceAll(url.QueryEscape(tok), "-", "%2D"), ""},
		{"path", "path", nil, "/api/keys/" + tok, ""},
		{"form", "body", nil, "/login", "user=admin&pass=" + strings.ReplaceAll(tok, "-", "%2d")},
		{"json", "body", nil, "/login", `{"user":"admin","password":"` + tok + `"}`},
		{"near miss", "", map[string]string{"Authorization": "Bearer canary-7f3a9", "Cookie": "x=canary-7f3a9d"}, "/?q=canary", "canary-7f3a"},
	} {
		r, err := http.NewRequest("POST", "http://x"+tc.target, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		c, where, ok := canaryIn(canaries, r, []byte(tc.body))
		if ok != (tc.where != "") || where != tc.where || ok && c != tok {
			t.Errorf("%s: canaryIn = %q %q %v, want %q in %q", tc.name, c, where, ok, tok, tc.where)
		}
	}
	if _, _, ok := canaryIn(nil, &http.Request{URL: &url.URL{Path: "/" + tok}, Header: http.Header{}}, nil); ok {
		t.Error("found a canary with none configured")
	}
}

// The gateway publishes the use of a canary with the client, and serves the request as any
// other (the voted answer; the attacker must not learn that the token gave it away).
func TestGatewayPublishesCanaryUse(t *testing.T) {
	const tok = "canary-7f3a9c"
	bes, _ := startGoBackends(t, 3, hello)
	b := bus.New()
	ch, cancel := b.Subscribe(16, bus.KindPrefix(EventCanary))
	defer cancel()
	g, err := New(Options{Backends: bes, Bus: b, Canaries: []string{tok}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{Gateway: g})
	get := func(auth string) string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(body)
	}
	honest := get("Bearer not-the-token")
	if got := get("Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+tok))); got != honest {
		t.Fatalf("the canary's request got %q, an honest one %q: the answer must not differ", got, honest)
	}
	select {
	case ev := <-ch:
		if ev.Attrs["client"] != "127.0.0.1" || ev.Attrs["canary"] != tok || ev.Attrs["where"] != "header Authorization (basic credentials)" || ev.Attrs["redirected"] != "false" {
			t.Fatalf("canary event %+v", ev)
		}
	case <-time.After(10 * time.Second): // guards a hang only
		t.Fatal("no canary event")
	}
	select {
	case ev := <-ch:
		t.Fatalf("a second canary event (the honest request's?): %+v", ev)
	default:
	}
}
