package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/demo/attack"
	"github.com/proteus-defense/proteus/demo/live"
	"github.com/proteus-defense/proteus/engine/agent"
)

// freePort returns a loopback address with a port free a moment ago (for the decoy, whose
// config needs a fixed port).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Must show: `proteus demo` serves the shop through the vote and the dashboard with a
// one-time login link; `proteus demo --attack`, run beside it, plays every step, each line
// names the defense's decision, and the decisions (decoy, dissent, file integrity, EVE, the
// attacker's block) are in the audit store and on the dashboard's API.
func TestDemoAndAttack(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo")
	ctx, cancel := context.WithCancel(context.Background())
	prev := demoContext
	demoContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { demoContext = prev })
	out, errb := &syncBuffer{}, &syncBuffer{}
	exited := make(chan struct{})
	exitCode := 0
	decoy := freePort(t)
	go func() {
		exitCode = run([]string{"--data-dir", data, "demo", "-v", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--decoy", decoy}, out, errb)
		close(exited)
	}()
	t.Cleanup(func() { cancel(); <-exited })
	var link string
	linkRe := regexp.MustCompile(`log in: +(http://\S+/login\?code=[0-9a-f]+)`)
	for n := 0; link == ""; n++ {
		if m := linkRe.FindStringSubmatch(out.String()); m != nil {
			link = m[1]
		}
		select {
		case <-exited:
			t.Fatalf("demo exited %d before serving:\n%s\n%s", exitCode, out.String(), errb.String())
		default:
		}
		if n == 3000 {
			t.Fatalf("demo never printed its login link:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"shop:      http://127.0.0.1:", "dashboard: http://127.0.0.1:", "go-nethttp deliberately weakened"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	// The data dir is the owner's only.
	if st, err := os.Stat(data); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("data dir %v mode %v, want no group or other access", err, st.Mode())
	}
	gw, err := os.ReadFile(filepath.Join(data, agent.GatewayAddrFile))
	if err != nil {
		t.Fatal(err)
	}
	shop := "http://" + strings.TrimSpace(string(gw)) + "/"
	if code, body := httpGet(t, shop); code != 200 || !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("shop: %d %q", code, body)
	}

	// The dashboard: the link logs in once; the session sees the executors voting.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: time.Minute}
	base := link[:strings.Index(link, "/login")]
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(base + "/v1/status"); code != http.StatusUnauthorized {
		t.Fatalf("status before login: %d, want 401", code)
	}
	if code, body := get(link); code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	// Every variant votes (a vote's accounting trails its answer: poll, bounded for a hang).
	variants := map[string]bool{}
	for n := 0; len(variants) < 3; n++ {
		var st api.Status
		if code, body := get(base + "/v1/status"); code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		for _, x := range st.Executors {
			if x.State == "healthy" && x.Vote != nil && x.Vote.Requests > 0 {
				variants[x.Variant] = true
			}
		}
		if n == 500 {
			t.Fatalf("want 3 variants voting, have %v: %+v", variants, st.Executors)
		}
		httpGet(t, shop)
		time.Sleep(20 * time.Millisecond)
	}

	// The attack, from another "terminal": it attaches to the running demo.
	var aout, aerr strings.Builder
	if code := run([]string{"--data-dir", data, "demo", "--attack"}, &aout, &aerr); code != 0 {
		t.Fatalf("demo --attack: exit %d\n%s\n%s\nagent:\n%s", code, aout.String(), aerr.String(), errb.String())
	}
	t.Logf("attack:\n%s", aout.String())
	lines := strings.Split(strings.TrimSpace(aout.String()), "\n")
	var steps []string
	for _, l := range lines {
		if strings.HasPrefix(l, "attack ") && strings.Contains(l, "/4 ") {
			steps = append(steps, l)
		}
	}
	if len(steps) != 4 || !strings.HasPrefix(lines[0], "proteus demo: attacking the demo running on "+data) {
		t.Fatalf("want 4 step lines after the attach line:\n%s", aout.String())
	}
	for i, want := range []string{`greeted "SSH-2.0-OpenSSH_7.4" (a decoy)`, "nothing leaked", "file integrity saw the change", "the attacker now gets 403, other clients 200"} {
		if !strings.Contains(steps[i], want) || !strings.Contains(steps[i], "-> ") || strings.Contains(steps[i], "[events: none]") {
			t.Errorf("step %d lacks %q or its events:\n%s", i+1, want, steps[i])
		}
	}
	if !strings.Contains(steps[1], "leaks /etc/passwd") {
		t.Errorf("the weakened variant did not leak when asked directly, so the vote masked nothing:\n%s", steps[1])
	}

	// Every step is in the audit store, as the dashboard reads it.
	var list api.DecisionList
	if code, body := get(base + "/v1/decisions"); code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("decisions: %d %s", code, body)
	}
	sensors := map[string]bool{}
	blocked := false
	for _, d := range list.Decisions {
		for _, e := range d.Evidence {
			sensors[e.Sensor] = true
		}
		for _, c := range d.Countermeasures {
			if c.Kind == "block" && c.Target == live.Attacker.String()+"/32" && c.Error == "" {
				blocked = true
			}
		}
	}
	for _, s := range []string{"decoy", "eve", "gateway", "fim"} {
		if !sensors[s] {
			t.Errorf("no decision with %s evidence: %+v", s, list.Decisions)
		}
	}
	if !blocked {
		t.Errorf("the attacker was never blocked: %+v", list.Decisions)
	}
	// The attacker's block holds at the gateway; an innocent client is served.
	if code, _ := get(shop); code != 200 {
		t.Errorf("an innocent client got %d", code)
	}
	// A second demo on the same data dir is refused while this one runs (it would empty it).
	var sout, serr strings.Builder
	if code := run([]string{"--data-dir", data, "demo", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--decoy", freePort(t)}, &sout, &serr); code != 1 ||
		!strings.Contains(serr.String(), "already running") {
		t.Fatalf("second demo: exit %d: %s", code, serr.String())
	}
	cancel()
	<-exited
	if exitCode != 0 {
		t.Fatalf("demo exit %d:\n%s", exitCode, errb.String())
	}
}

// A step whose action draws no decision fails the attack, naming the step: here the engine
// has no rule for decoys or scans, so reconnaissance is not decided.
func TestDemoAttackFailsWhenAStepDrawsNoDefense(t *testing.T) {
	data := t.TempDir()
	a := live.Addrs{Gateway: "127.0.0.1:0", API: "127.0.0.1:0", Decoy: freePort(t)}
	cfg, path, err := live.Load(data, a)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine.Rules = slices.DeleteFunc(cfg.Engine.Rules, func(r config.Rule) bool { return r.Name == "decoy" || r.Name == "scan" })
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan agent.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Options{Config: cfg, ConfigFile: path, DataDir: data, Ready: func(r agent.Ready) { ready <- r }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	var r agent.Ready
	select {
	case r = <-ready:
	case err := <-done:
		t.Fatalf("agent: %v", err)
	}
	err = attack.Play(ctx, attack.Target{DataDir: data, Shop: r.Gateway.String(), Decoy: a.Decoy, EVE: filepath.Join(data, live.EVEFile),
		From: live.Attacker, WeakVariant: live.WeakVariant, StepTimeout: 3 * time.Second}, func(s attack.Step) {
		t.Errorf("step %d reported although it drew no defense: %+v", s.N, s)
	})
	if !errors.Is(err, attack.ErrNoDefense) || !strings.Contains(err.Error(), "step 1 (reconnaissance)") {
		t.Fatalf("attack: %v, want ErrNoDefense at step 1", err)
	}
}

// First-run defect: a relative --data-dir used to name the executors' site relative to their
// own work dirs ("root … is not a directory"); the agent makes it absolute.
func TestAgentRelativeDataDir(t *testing.T) {
	t.Chdir(t.TempDir())
	a := startAgent(t, "reldata", "--listen", "127.0.0.1:0")
	if code, body := httpGet(t, "http://"+a.gw+"/"); code != 200 || !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("shop with a relative data dir: %d %q", code, body)
	}
}
