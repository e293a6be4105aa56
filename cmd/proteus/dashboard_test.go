package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/store"
)

// The agent serves the dashboard on its API address: `proteus dashboard` prints a one-time
// link, the link gives a session that reads the engine's decisions through the API, it works
// once only, and neither the token nor the code reaches the agent's log.
func TestAgentServesDashboardWithDecisions(t *testing.T) {
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	a := startAgent(t, data, "-c", engineAgentConfig(t, eve), "--listen", "127.0.0.1:0")
	const attacker = "203.0.113.9"
	appendFile(t, eve, eveAlert(attacker, "ET SCAN <b>Nmap</b>", "Attempted Information Leak", 2))
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", attacker)

	code, out := a.cli("dashboard")
	link := strings.TrimSpace(out)
	if code != 0 || !strings.Contains(link, "/login?code=") {
		t.Fatalf("dashboard: exit %d: %s", code, out)
	}
	token, err := os.ReadFile(filepath.Join(data, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(link, strings.TrimSpace(string(token))) {
		t.Fatalf("the link %s carries the bearer token", link)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: time.Minute}
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	base := link[:strings.Index(link, "/login")]
	if code, _ := get(base + "/v1/decisions"); code != http.StatusUnauthorized {
		t.Fatalf("decisions before login: %d", code)
	}
	if code, body := get(link); code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, body := get(base + "/"); code != http.StatusOK || !strings.Contains(body, "/ui/app.js") {
		t.Fatalf("dashboard page: %d %s", code, body)
	}
	if code, body := get(base + "/v1/decisions?source=" + attacker); code != http.StatusOK || !strings.Contains(body, ds[0].ID) {
		t.Fatalf("decisions: %d %s", code, body)
	}
	if code, body := get(base + "/v1/decisions/" + ds[0].ID); code != http.StatusOK || !strings.Contains(body, `ET SCAN \u003cb\u003eNmap`) {
		t.Fatalf("decision: %d %s", code, body)
	}
	other, _ := cookiejar.New(nil)
	c.Jar = other
	if code, _ := get(link); code != http.StatusUnauthorized {
		t.Fatalf("second use of the link: %d", code)
	}
	logs := a.stderr.String()
	if strings.Contains(logs, strings.TrimSpace(string(token))) || strings.Contains(logs, link[strings.Index(link, "code=")+5:]) {
		t.Fatalf("the token or the code is in the agent's log:\n%s", logs)
	}
}
