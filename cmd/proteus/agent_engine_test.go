package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/store"
)

// engineAgentConfig is the default demo pool plus the EVE sensor on eve and the engine on the
// paper's model. Every strategy of a stage maps to the same kind of countermeasure, so the
// test can check them whatever the live game picks: S1 (d1, d2) vigilance, S2 (d3, d4)
// rotate, S3 (d6, d7) block.
func engineAgentConfig(t *testing.T, eve string) string {
	t.Helper()
	model, def := paperModelAndDefaults(t)
	cfg := string(def) + fmt.Sprintf(`
sensors:
  eve: {path: %q, from_start: true}
engine:
  model: %q
  nftables: off
  assets: [{name: shop, device: web}]
  rules:
    - {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.5}
    - {name: exploit, sensor: eve, signature: "^ET EXPLOIT", stage: S2, attack: a3, weight: 0.6}
    - {name: c2, sensor: eve, category: A Network Trojan was detected, stage: S3, attack: a4, weight: 0.7}
  strategies:
    d1: [{kind: vigilance, level: 1}]
    d2: [{kind: vigilance, level: 2}]
    d3: [{kind: rotate, ttl: 1h}]
    d4: [{kind: rotate, ttl: 1h}]
    d6: [{kind: block, ttl: 10m}]
    d7: [{kind: block, ttl: 10m}]
`, eve, model)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func eveAlert(src, sig, category string, sev int) string {
	return fmt.Sprintf(`{"timestamp":"%s","flow_id":1,"in_iface":"eth0","event_type":"alert","src_ip":%q,"src_port":40000,"dest_ip":"192.0.2.10","dest_port":8080,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2000001,"rev":1,"signature":%q,"category":%q,"severity":%d},"app_proto":"http"}`+"\n",
		time.Now().UTC().Format("2006-01-02T15:04:05.000000-0700"), src, sig, category, sev)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func listDecisions(t *testing.T, a *inProcessAgent, args ...string) []store.Decision {
	t.Helper()
	code, out := a.cli(append([]string{"decisions", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("decisions: exit %d: %s", code, out)
	}
	var doc struct {
		Decisions []store.Decision `json:"decisions"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decisions JSON: %v\n%s", err, out)
	}
	return doc.Decisions
}

// waitDecisions polls `proteus decisions` until cond holds; the bound only guards a hang.
func waitDecisions(t *testing.T, a *inProcessAgent, cond func([]store.Decision) bool, args ...string) []store.Decision {
	t.Helper()
	for range 1000 {
		if ds := listDecisions(t, a, args...); cond(ds) {
			return ds
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("decisions never reached the condition; have %+v\n%s", listDecisions(t, a, args...), a.stderr.String())
	return nil
}

// Must show: EVE alert lines for a scan, an exploit attempt and command and control from one
// address move the asset through the model's stages, the countermeasures match the game's
// choice at each stage, all of it is in `proteus decisions`, and it survives a restart.
func TestAgentEngineMultiStageAttackFromEVE(t *testing.T) {
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	cfg := engineAgentConfig(t, eve)
	a := startAgent(t, data, "-c", cfg, "--listen", "127.0.0.1:0")
	const attacker = "203.0.113.7"
	appendFile(t, eve, "this line is not JSON\n")
	for range 3 {
		appendFile(t, eve, eveAlert(attacker, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	}
	waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 && ds[len(ds)-1].Verdict == "act" }, "--source", attacker)
	for range 2 {
		appendFile(t, eve, eveAlert(attacker, "ET EXPLOIT Apache Struts OGNL injection", "Attempted Administrator Privilege Gain", 1))
	}
	waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 && ds[len(ds)-1].Stage == 2 }, "--source", attacker)
	appendFile(t, eve, eveAlert(attacker, "ET MALWARE Cobalt Strike Beacon Observed", "A Network Trojan was detected", 1))
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 && ds[len(ds)-1].Stage == 3 }, "--source", attacker)

	want := map[int]string{1: "vigilance", 2: "rotate", 3: "block"}
	seen := map[int]bool{}
	prev := 0
	for _, d := range ds {
		if d.Stage < prev {
			t.Fatalf("stage went back: %+v", ds)
		}
		prev = d.Stage
		if d.Asset != "shop" || d.Source != attacker || len(d.Evidence) == 0 || d.Evidence[0].Sensor != "eve" {
			t.Fatalf("decision %+v", d)
		}
		if d.Verdict != "act" {
			continue
		}
		seen[d.Stage] = true
		if len(d.Countermeasures) != 1 || d.Countermeasures[0].Kind != want[d.Stage] || d.Countermeasures[0].Error != "" {
			t.Fatalf("stage %d strategy %s: countermeasures %+v, want one %s", d.Stage, d.Strategy, d.Countermeasures, want[d.Stage])
		}
		if d.Stage == 3 && d.Countermeasures[0].Target != attacker+"/32" {
			t.Fatalf("block target %q", d.Countermeasures[0].Target)
		}
	}
	if !seen[1] || !seen[2] || !seen[3] {
		t.Fatalf("acted at stages %v; decisions %+v", seen, ds)
	}
	// The block is live in the countermeasure manager with the expiry the decision names.
	code, out := a.cli("countermeasures", "-o", "json")
	if code != 0 || !strings.Contains(out, attacker) {
		t.Fatalf("countermeasures: %d %s", code, out)
	}
	last := ds[len(ds)-1]
	code, out = a.cli("decisions", "show", last.ID)
	if code != 0 || !strings.Contains(out, "Cobalt Strike") || !strings.Contains(out, "the game's solution for this stage") ||
		!strings.Contains(out, "c* = 1") || !strings.Contains(out, "model reading: signal-cost=printed deception-cost=defense-cost") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	// The sensor's counters and the engine's are exported: the line that is not JSON was
	// counted and skipped.
	metrics := agentMetrics(t, data)
	for _, want := range []string{`proteus_sensor_records_total{outcome="malformed",sensor="eve:` + eve + `"} 1`,
		`proteus_sensor_records_total{outcome="events",sensor="eve:` + eve + `"} 6`, "proteus_engine_decisions_total ",
		`proteus_sensor_restarts_total{sensor="eve:` + eve + `"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	a.stop(t)

	// After a restart: the history is there, and the asset is still at stage 3.
	b := startAgent(t, data, "-c", cfg, "--listen", "127.0.0.1:0")
	if again := listDecisions(t, b, "--source", attacker); len(again) != len(ds) {
		t.Fatalf("after restart %d decisions, before %d", len(again), len(ds))
	}
	appendFile(t, eve, eveAlert("198.51.100.20", "ET SCAN Nmap", "Attempted Information Leak", 2))
	after := waitDecisions(t, b, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", "198.51.100.20")
	if after[0].Stage != 3 {
		t.Fatalf("after restart the asset is at stage %d, want 3", after[0].Stage)
	}
	// The EVE file was not replayed (the sensor kept its position): the line written after
	// the restart was decided, and the attacker's history did not grow.
	if again := listDecisions(t, b, "--source", attacker); len(again) != len(ds) {
		t.Fatalf("after restart the log was replayed: %d decisions, before %d", len(again), len(ds))
	}
	if code, out := b.cli("decisions", "--since", "1h", "--asset", "shop"); code != 0 || !strings.Contains(out, "STRATEGY") {
		t.Fatalf("table: %d %s", code, out)
	}
	for _, bad := range [][]string{{"decisions", "--since", "yesterday"}, {"decisions", "--source", "nope"}, {"decisions", "-o", "xml"}} {
		if code, _ := b.cli(bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

// Must show (gateway side): a request that makes one variant answer differently (its page is
// defaced in its work dir), repeated by one client, gets that client blocked at the gateway
// (403 before any executor sees the request), and the block is reverted after its TTL.
func TestAgentEngineBlocksClientThatKeepsCausingDissent(t *testing.T) {
	src := localNonLoopback(t)
	model, def := paperModelAndDefaults(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, append(def, fmt.Sprintf(`
engine:
  model: %q
  nftables: off
  block_ttl: 3s
  # The defaced page stands for a variant's bug that a rebuild would not remove: vigilance
  # must not rebuild the executor (after 3 dissents at level 1) before the client's third
  # dissent acts, or the test would race the two.
  vigilance: {min_rebuild_threshold: 5}
  assets: [{name: shop, device: web}]
  rules:
    - {name: dissent, sensor: gateway, kind: dissent, category: content, stage: S1, attack: a2, weight: 0.6}
  strategies:
    d1: [{kind: vigilance}]
    d2: [{kind: vigilance}]
`, model)...), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "", "-c", cfg, "--listen", netip.AddrPortFrom(src, 0).String())
	url := "http://" + a.gw + "/about.html"
	if c := getFrom(t, src, url); c != 200 {
		t.Fatalf("before tampering: %d", c)
	}
	var victim string
	for _, x := range a.status(t).Executors {
		if x.Variant == "go-nethttp" {
			victim = x.ID
		}
	}
	page := filepath.Join(a.data, "executor", "process", "work", victim, "site", "about.html")
	if err := os.WriteFile(page, []byte("<h1>defaced</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	blocked := false
	for n := 0; n < 50 && !blocked; n++ {
		switch c := getFrom(t, src, url); c {
		case 200:
		case 403:
			blocked = true
		default:
			t.Fatalf("request %d: %d", n, c)
		}
	}
	if !blocked {
		t.Fatalf("client never blocked:\n%s", a.stderr.String())
	}
	// The block is in place before its decision is committed (the audit write is
	// asynchronous): wait for the record.
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 && ds[len(ds)-1].Verdict == "act" }, "--source", src.String())
	last := ds[len(ds)-1]
	if last.Verdict != "act" || len(last.Evidence) == 0 || last.Evidence[0].Sensor != "gateway" ||
		!strings.Contains(last.Evidence[len(last.Evidence)-1].Summary, "GET /about.html") {
		t.Fatalf("decisions %+v", ds)
	}
	var blockCM *store.Countermeasure
	for i, c := range last.Countermeasures {
		if c.Kind == "block" {
			blockCM = &last.Countermeasures[i]
		}
	}
	if blockCM == nil || blockCM.Target != src.String()+"/32" || blockCM.Expires.IsZero() {
		t.Fatalf("countermeasures %+v", last.Countermeasures)
	}
	// The TTL passes: the block is lifted and the client is served again.
	for n := 0; ; n++ {
		if c := getFrom(t, src, url); c == 200 {
			break
		}
		if n == 1000 {
			t.Fatalf("block not reverted after its TTL (expires %s)", blockCM.Expires)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Now().Before(blockCM.Expires) {
		t.Fatalf("served again before the block's expiry %s", blockCM.Expires)
	}
}

// Must show (file integrity): a file changed inside a running executor gets it quarantined
// and replaced from the known-good image, with the changed file's path and hashes in the
// decision.
func TestAgentEngineQuarantinesTamperedExecutor(t *testing.T) {
	model, def := paperModelAndDefaults(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, append(def, fmt.Sprintf(`
sensors:
  fim: {}
engine:
  model: %q
  nftables: off
  assets: [{name: shop, device: web}]
  rules:
    - {name: tamper, sensor: fim, stage: S2, attack: a3, weight: 0.95}
  strategies:
    d3: [{kind: vigilance}]
    d4: [{kind: vigilance}]
`, model)...), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "", "-c", cfg, "--listen", "127.0.0.1:0")
	var victim string
	for _, x := range a.status(t).Executors {
		if x.Variant == "go-raw" {
			victim = x.ID
		}
	}
	if victim == "" {
		t.Fatal("no go-raw executor")
	}
	page := filepath.Join(a.data, "executor", "process", "work", victim, "site", "index.html")
	before, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := os.WriteFile(page, []byte("<h1>owned</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ds := waitDecisions(t, a, func(ds []store.Decision) bool {
		for _, d := range ds {
			for _, c := range d.Countermeasures {
				if c.Kind == "quarantine" && c.Target == victim {
					return true
				}
			}
		}
		return false
	})
	var d store.Decision
	for _, x := range ds {
		if x.Verdict == "act" {
			d = x
		}
	}
	code, out := a.cli("decisions", "show", d.ID, "-o", "json")
	var full store.Decision
	if code != 0 || json.Unmarshal([]byte(out), &full) != nil {
		t.Fatalf("show: %d %s", code, out)
	}
	ev := full.Evidence[len(full.Evidence)-1]
	if ev.Sensor != "fim" || ev.Kind != "file.changed" || !strings.Contains(ev.Excerpt, page) ||
		!strings.Contains(ev.Excerpt, "expected_sha256="+sha256hex(before)) || !strings.Contains(ev.Excerpt, "sha256="+sha256hex([]byte("<h1>owned</h1>\n"))) {
		t.Fatalf("evidence %+v", ev)
	}
	// Out of service, kept for forensics, replaced from the image.
	for n := 0; ; n++ {
		healthy, gone := 0, true
		for _, x := range a.status(t).Executors {
			if x.ID == victim && x.State != "quarantined" {
				gone = false
			}
			if x.State == "healthy" && x.ID != victim {
				healthy++
			}
		}
		if gone && healthy == 3 {
			break
		}
		if n == 1500 {
			t.Fatalf("not replaced: %+v", a.status(t).Executors)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("tamper to replacement healthy: %s", time.Since(t0))
	if _, err := os.Stat(page); err != nil {
		t.Fatalf("the quarantined work dir was not kept: %v", err)
	}
	if code, body := httpGet(t, "http://"+a.gw+"/"); code != 200 || strings.Contains(body, "owned") {
		t.Fatalf("after replacement: %d %q", code, body)
	}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// A rule naming a stage the model does not have is refused by `proteus validate` and by the
// agent before anything starts, with the config's file:line:col.
func TestEngineConfigRefusedWithLocation(t *testing.T) {
	cfg := engineAgentConfig(t, filepath.Join(t.TempDir(), "eve.json"))
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "stage: S2, attack: a3", "stage: S9, attack: a3", 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(bad, "\n") {
		if strings.Contains(l, "S9") {
			line = i + 1
		}
	}
	want := fmt.Sprintf("%s:%d:", cfg, line)
	var out, errb strings.Builder
	if code := run([]string{"validate", cfg}, &out, &errb); code != 2 || !strings.Contains(errb.String(), want) ||
		!strings.Contains(errb.String(), `engine.rules[1].stage: unknown stage "S9"`) {
		t.Fatalf("validate: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"--data-dir", t.TempDir(), "agent", "-c", cfg, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), want) {
		t.Fatalf("agent: exit %d: %s", code, errb.String())
	}
}

// agentMetrics fetches the running agent's /metrics with the token in the data dir.
func agentMetrics(t *testing.T, data string) string {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(data, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := os.ReadFile(filepath.Join(data, api.AddrFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+strings.TrimSpace(string(addr))+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// With the engine running, an executor the gateway rebuilds for dissent is quarantined (kept
// for forensics) rather than destroyed, and replaced.
func TestAgentEngineQuarantinesDissentingExecutor(t *testing.T) {
	model, def := paperModelAndDefaults(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	// A weak dissent rule: the client is never blocked, so the gateway's own rebuild
	// threshold (5 dissents a minute) is what acts.
	if err := os.WriteFile(cfg, append(def, fmt.Sprintf(`
engine:
  model: %q
  nftables: off
  assets: [{name: shop, device: web}]
  rules:
    - {name: dissent, sensor: gateway, kind: dissent, stage: S1, attack: a2, weight: 0.01}
`, model)...), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "", "-c", cfg, "--listen", "127.0.0.1:0")
	var victim string
	for _, x := range a.status(t).Executors {
		if x.Variant == "go-nethttp" {
			victim = x.ID
		}
	}
	page := filepath.Join(a.data, "executor", "process", "work", victim, "site", "about.html")
	if err := os.WriteFile(page, []byte("<h1>defaced</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for n := 0; ; n++ {
		httpGet(t, "http://"+a.gw+"/about.html")
		state := ""
		for _, x := range a.status(t).Executors {
			if x.ID == victim {
				state = x.State
			}
		}
		if state == "quarantined" {
			break
		}
		if state == "" {
			t.Fatalf("executor %s was destroyed, not quarantined:\n%s", victim, a.stderr.String())
		}
		if n == 500 {
			t.Fatalf("executor %s never quarantined (state %s)", victim, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(page); err != nil {
		t.Fatalf("quarantined work dir not kept: %v", err)
	}
}

// paperModelAndDefaults returns the absolute path of the paper's model and the embedded
// default config's text, which the engine tests' agent configs extend.
func paperModelAndDefaults(t *testing.T) (model string, def []byte) {
	t.Helper()
	model, err := filepath.Abs("../../examples/mttegdm-paper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if def, err = os.ReadFile("../../config/default.yaml"); err != nil {
		t.Fatal(err)
	}
	return model, def
}
