package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/store"
)

// `proteus decisions` and `decisions show` ask the running agent's API (the token from the
// data dir): the API refuses a request without the token or with a wrong one (401), the
// CLI's request with it works, and what the CLI prints is what the API answered (an answer
// the store does not hold shows). Once the agent stopped, the CLI says no agent runs and
// names --offline, which reads the store; an address left behind by a killed agent gives an
// error naming that address.
func TestDecisionsCommandsGoThroughTheAgentAPI(t *testing.T) {
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	a := startAgent(t, data, "-c", engineAgentConfig(t, eve), "--listen", "127.0.0.1:0")
	const attacker = "203.0.113.9"
	appendFile(t, eve, eveAlert(attacker, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", attacker)

	addr, err := os.ReadFile(filepath.Join(data, api.AddrFile))
	if err != nil {
		t.Fatal(err)
	}
	requireUnauthorized(t, "http://"+strings.TrimSpace(string(addr))+api.Prefix+"/decisions")
	if code, out := a.cli("decisions", "show", ds[0].ID); code != 0 || !strings.Contains(out, attacker) {
		t.Fatalf("decisions show: %d\n%s", code, out)
	}

	// What the CLI prints comes from the API: a stand-in answering with the agent's token
	// gets the request, and its answer (a decision the store does not have) is printed.
	tok, _ := os.ReadFile(filepath.Join(data, api.TokenFile))
	var seen []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+strings.TrimSpace(string(tok)) {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		seen = append(seen, r.URL.Path+"?"+r.URL.RawQuery)
		if r.URL.Path == api.Prefix+"/decisions" {
			_ = json.NewEncoder(w).Encode(api.DecisionList{Decisions: []store.Decision{{ID: "from-the-api", Verdict: "ignore", Asset: "shop"}}})
			return
		}
		_ = json.NewEncoder(w).Encode(store.Decision{ID: "shown-by-the-api", Verdict: "ignore"})
	}))
	defer fake.Close()
	fa := fake.Listener.Addr().String()
	if code, out := a.cli("decisions", "--api", fa, "--source", attacker, "--since", "1h"); code != 0 || !strings.Contains(out, "from-the-api") {
		t.Fatalf("decisions --api stand-in: %d\n%s", code, out)
	}
	if code, out := a.cli("decisions", "show", "--api", fa, "x"); code != 0 || !strings.Contains(out, "shown-by-the-api") {
		t.Fatalf("decisions show --api stand-in: %d\n%s", code, out)
	}
	if len(seen) != 2 || !strings.Contains(seen[0], "source="+attacker) || !strings.Contains(seen[0], "since=1h") || seen[1] != api.Prefix+"/decisions/x?" {
		t.Fatalf("requests the stand-in got: %q", seen)
	}
	if code, out := a.cli("decisions", "--api", fa, "--offline"); code != 2 {
		t.Fatalf("--api with --offline: %d, want 2\n%s", code, out)
	}
	a.stop(t)

	code, out := a.cli("decisions")
	if code != 1 || !strings.Contains(out, "no agent") || !strings.Contains(out, "--offline") {
		t.Fatalf("decisions without an agent: %d\n%s", code, out)
	}
	if code, out := a.cli("decisions", "--offline", "-o", "json"); code != 0 || !strings.Contains(out, ds[0].ID) {
		t.Fatalf("decisions --offline: %d\n%s", code, out)
	}
	if code, out := a.cli("decisions", "show", "--offline", ds[0].ID); code != 0 || !strings.Contains(out, attacker) {
		t.Fatalf("decisions show --offline: %d\n%s", code, out)
	}

	// A killed agent leaves its token and address behind: the error names the address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	if err := os.WriteFile(filepath.Join(data, api.TokenFile), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := api.WriteAddr(data, dead); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"decisions"}, {"decisions", "show", ds[0].ID}, {"status"}, {"countermeasures"}} {
		if code, out := a.cli(args...); code != 1 || !strings.Contains(out, "no agent answers at "+dead) {
			t.Errorf("%v against a dead agent's address: %d\n%s", args, code, out)
		}
	}
}

// Something hostile (or not the agent at all) answering at the API's address cannot crash
// the CLI or reach the terminal: garbage where JSON should be, an error answer full of
// escape sequences and megabytes long, decisions whose fields carry escape sequences and tabs,
// an answer larger than the client reads. Each gives a clear error (or clean output).
func TestDecisionsCommandsSurviveAHostileAPI(t *testing.T) {
	data := t.TempDir()
	if _, err := api.NewToken(data); err != nil {
		t.Fatal(err)
	}
	evil := "\x1b[2J\x1b]0;owned\x07\r\nFAKE LINE\t\x9b"
	answers := map[string]func(w http.ResponseWriter){
		"garbage": func(w http.ResponseWriter) { _, _ = w.Write([]byte("<html>\x1b[31mnot json")) },
		"error": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(bytes.Repeat([]byte(evil), 1<<16))
		},
		"json-error": func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": evil})
		},
		"fields": func(w http.ResponseWriter) {
			d := store.Decision{ID: evil, Asset: evil, Source: evil, Verdict: evil, StageID: evil, Attack: evil, Strategy: evil, Signal: evil,
				Countermeasures: []store.Countermeasure{{Kind: evil, Target: evil, ID: evil + "/x", Error: evil}},
				Evidence:        []store.Evidence{{Sensor: evil, Kind: evil, Summary: evil, Excerpt: evil}}}
			_ = json.NewEncoder(w).Encode(map[string]any{"decisions": []store.Decision{d}, "id": evil, "verdict": evil, "asset": evil,
				"countermeasures": d.Countermeasures, "evidence": d.Evidence, "detail": map[string]any{"rule": evil}})
		},
		"huge": func(w http.ResponseWriter) {
			_, _ = w.Write([]byte(`{"decisions":[`))
			chunk := bytes.Repeat([]byte(`{"id":"x"},`), 1<<16)
			for range 30 { // 21 MiB
				_, _ = w.Write(chunk)
			}
			_, _ = w.Write([]byte(`{"id":"x"}]}`))
		},
		"bad-detail": func(w http.ResponseWriter) {
			_, _ = w.Write([]byte(`{"decisions":[],"id":"d","detail":"\u001b[2J not an object"}`))
		},
	}
	var which string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answers[which](w) }))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	for name := range answers {
		for _, args := range [][]string{{"decisions"}, {"decisions", "show", "d"}} {
			which = name
			var out, errb bytes.Buffer
			code := run(append([]string{"--data-dir", data}, append(args, "--api", addr)...), &out, &errb)
			all := out.String() + errb.String()
			if strings.ContainsAny(all, "\x1b\x07\r\u009b") || strings.Contains(all, "\nFAKE LINE") {
				t.Errorf("%s %v: control characters reach the terminal: %q", name, args, all)
			}
			if len(all) > 8<<10 {
				t.Errorf("%s %v: %d bytes printed", name, args, len(all))
			}
			switch name {
			case "fields":
				if code != 0 {
					t.Errorf("%s %v: exit %d: %s", name, args, code, all)
				}
				if args[0] == "decisions" && len(args) == 1 {
					if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 {
						t.Errorf("table has %d lines, want 2:\n%s", len(lines), out.String())
					}
				}
			case "bad-detail":
				if len(args) == 2 && (code != 1 || !strings.Contains(errb.String(), "detail")) {
					t.Errorf("%s %v: exit %d: %s", name, args, code, all)
				}
			default:
				if code != 1 || !strings.Contains(errb.String(), addr) && !strings.Contains(errb.String(), "agent answered") {
					t.Errorf("%s %v: exit %d, want 1 with an error naming %s: %s", name, args, code, addr, all)
				}
			}
			t.Logf("%s %v: exit %d: %.200q", name, args, code, all)
		}
	}
}

// requireUnauthorized checks that GET url is refused with 401 without a token and with a
// wrong one.
func requireUnauthorized(t *testing.T, url string) {
	t.Helper()
	for _, tok := range []string{"", strings.Repeat("0", 64)} {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET %s with token %q: %d, want 401", url, tok, resp.StatusCode)
		}
	}
}
