package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type statusJSON struct {
	Executors []struct {
		ID, Variant, Address, State string
	} `json:"executors"`
	CStar           int     `json:"cstar"`
	RotationRate    float64 `json:"rotation_rate"`
	AttackIntensity float64 `json:"attack_intensity"`
	DefenseSuccess  float64 `json:"defense_success"`
}

func (a *inProcessAgent) status(t *testing.T) statusJSON {
	t.Helper()
	c, out := a.cli("status", "-o", "json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); c != 0 || err != nil {
		t.Fatalf("status: %d %v %s", c, err, out)
	}
	return st
}

// The default agent votes: an executor whose work directory is tampered with (a defaced page)
// is outvoted by the two other implementations, so the defaced page is never served, and its
// dissents make the pool rotate it (reason dissent) onto a fresh copy of the image.
func TestAgentDissentRotatesTamperedExecutor(t *testing.T) {
	a := startAgent(t, "", "--listen", "127.0.0.1:0")
	if !strings.Contains(a.stderr.String(), "frontend=vote") {
		t.Fatalf("default frontend is not the voting gateway:\n%s", a.stderr.String())
	}
	url := "http://" + a.gw + "/about.html"
	code, want := httpGet(t, url)
	if code != 200 || !strings.Contains(want, "<") {
		t.Fatalf("GET /about.html: %d %q", code, want)
	}
	st := a.status(t)
	var victim string
	for _, x := range st.Executors {
		if x.Variant == "go-nethttp" {
			victim = x.ID
		}
	}
	if victim == "" || len(st.Executors) != 3 {
		t.Fatalf("no go-nethttp executor among %+v", st.Executors)
	}
	page := filepath.Join(a.data, "executor", "process", "work", victim, "site", "about.html")
	const defaced = "<h1>defaced by the test</h1>\n"
	if err := os.WriteFile(page, []byte(defaced), 0o644); err != nil {
		t.Fatal(err)
	}
	rotated := false
	for n := 0; n < 2000 && !rotated; n++ {
		if n >= 10 { // the rebuild is under way: give it time on a loaded machine
			time.Sleep(10 * time.Millisecond)
		}
		code, body := httpGet(t, url)
		if code != 200 || body != want {
			t.Fatalf("request %d after tampering: %d %q, want the original page", n, code, body)
		}
		rotated = true
		for _, x := range a.status(t).Executors {
			if x.ID == victim {
				rotated = false
			}
		}
	}
	if !rotated {
		t.Fatalf("tampered executor %s still in the pool after 2000 requests:\n%s", victim, a.stderr.String())
	}
	// The rotation log line ("rotated old=ID ... reason=dissent") may follow the status by a hair.
	for n := 0; !strings.Contains(a.stderr.String(), "old="+victim) && n < 500; n++ {
		time.Sleep(10 * time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(l, "msg=rotated") && strings.Contains(l, "old="+victim) {
			line = l
		}
	}
	if !strings.Contains(line, "reason=dissent") {
		t.Fatalf("victim %s not rotated for dissent (log line %q):\n%s", victim, line, a.stderr.String())
	}
	st = a.status(t)
	variants := map[string]bool{}
	for _, x := range st.Executors {
		if x.State == "healthy" {
			variants[x.Variant] = true
		}
	}
	if len(variants) != 3 {
		t.Errorf("after the rebuild the executors are not three implementations: %+v", st.Executors)
	}
	if code, body := httpGet(t, url); code != 200 || body != want {
		t.Errorf("after the rebuild: %d %q", code, body)
	}
	if st.CStar != 1 || st.RotationRate <= 0 || st.AttackIntensity != 0.5 || st.DefenseSuccess <= 0 || st.DefenseSuccess >= 1 {
		t.Errorf("MTD figures after one rotation: %+v", st)
	}
	a.stop(t)
}

// The voting gateway's learned noise is in the agent's status and can be reset through the API;
// with the plain proxy in front there is nothing to reset, and the command says so.
func TestAgentResetLearned(t *testing.T) {
	a := startAgent(t, "", "--listen", "127.0.0.1:0")
	httpGet(t, "http://"+a.gw+"/")
	c, out := a.cli("status", "-o", "json")
	var st struct {
		Learned map[string][]string `json:"learned_noise"`
	}
	if err := json.Unmarshal([]byte(out), &st); c != 0 || err != nil {
		t.Fatalf("status: %d %v %s", c, err, out)
	}
	if _, ok := st.Learned["default"]; !ok {
		t.Fatalf("no learned_noise in the status: %s", out)
	}
	if c, out := a.cli("reset-learned"); c != 0 || !strings.Contains(out, "learned noise reset") {
		t.Fatalf("reset-learned: %d %q", c, out)
	}
	a.stop(t)
	if !strings.Contains(a.stderr.String(), "learned noise reset") {
		t.Errorf("the gateway did not log the reset:\n%s", a.stderr.String())
	}
	p := startAgent(t, "", "--proxy", "--listen", "127.0.0.1:0")
	if c, out := p.cli("reset-learned"); c == 0 {
		t.Errorf("reset-learned with the proxy frontend: exit 0, %q", out)
	}
}
