package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/store"
)

// fetchFrom sends GET url from the local address src and returns the status and body.
func fetchFrom(t *testing.T, src, url string) (int, string) { return getWith(t, src, url, nil) }

// Must show (issue 14, redirection): a client the engine defers on is served by the decoy
// executor (a honeypot copy of the site with a canary file, outside the vote) instead of the
// vote; its requests there are in its decision's evidence; another client's answers are
// unchanged and still voted by the real executors, and it never reaches the decoy.
func TestAgentRedirectsDeferredClientToDecoyExecutor(t *testing.T) {
	model, def := paperModelAndDefaults(t)
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	access := filepath.Join(data, "access.log")
	const canary = "db_user=admin db_pass=canary-7f3a9c"
	cfg := strings.Replace(string(def), "gateway:\n", fmt.Sprintf("gateway:\n  access_log: %q\n", access), 1)
	cfg = strings.Replace(cfg, "  variants:\n", fmt.Sprintf(`  decoy:
    name: shop-decoy
    image: builtin:demo
    command: ["{{.Self}}", "demo-server", "--impl", "nethttp", "--listen", "{{.Addr}}", "--root", "{{.Dir}}/honey"]
    files:
      honey/index.html: "<h1>Proteus demo shop</h1><p>staff login: /backup/</p>\n"
      honey/healthz: "ok\n"
      honey/backup/credentials.txt: %q
  variants:
`, canary+"\n"), 1) + fmt.Sprintf(`
sensors:
  eve: {path: %q, from_start: true}
engine:
  model: %q
  nftables: off
  redirect: {ttl: 5m}
  assets: [{name: shop, device: web}]
  rules:
    - {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.5}
  strategies:
    d1: [{kind: vigilance, level: 1}]
    d2: [{kind: vigilance, level: 1}]
`, eve, model)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	const suspect, other = "127.0.0.7", "127.0.0.1"
	base := "http://" + a.gw
	c0, realIndex := fetchFrom(t, other, base+"/")
	if c0 != 200 {
		t.Fatalf("GET / from %s: %d %q\n%s", other, c0, realIndex, a.stderr.String())
	}
	if c, b := fetchFrom(t, suspect, base+"/"); c != 200 || b != realIndex {
		t.Fatalf("before any decision the suspect gets %d %q, want the voted index", c, b)
	}

	appendFile(t, eve, eveAlert(suspect, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", suspect)
	d := ds[0]
	if d.Verdict != "defer" {
		t.Fatalf("the engine decided %s on the suspect (p %.2f, α %.2f, β %.2f); this test needs defer", d.Verdict, d.Probability, d.Alpha, d.Beta)
	}
	var redirect *store.Countermeasure
	for i, c := range d.Countermeasures {
		if c.Kind == "redirect" {
			redirect = &d.Countermeasures[i]
		}
	}
	if redirect == nil || redirect.Error != "" || redirect.Target != suspect {
		t.Fatalf("no redirect of %s in the defer decision's countermeasures: %+v", suspect, d.Countermeasures)
	}

	// The suspect now gets the decoy's site, canary included; the other client the voted site.
	c, b := fetchFrom(t, suspect, base+"/backup/credentials.txt")
	if c != 200 || !strings.Contains(b, canary) {
		t.Fatalf("the redirected suspect got %d %q for the canary file", c, b)
	}
	if _, b := fetchFrom(t, suspect, base+"/"); b == realIndex || !strings.Contains(b, "staff login") {
		t.Fatalf("the redirected suspect got %q for /, want the decoy's index", b)
	}
	for range 3 {
		if c, b := fetchFrom(t, other, base+"/"); c != 200 || b != realIndex {
			t.Fatalf("the other client got %d %q, want the voted index unchanged", c, b)
		}
	}
	if c, b := fetchFrom(t, other, base+"/backup/credentials.txt"); c != 404 || strings.Contains(b, canary) {
		t.Fatalf("the other client got %d %q for the decoy's canary path, want 404", c, b)
	}

	// The suspect's requests there are in its decision's evidence.
	var got store.Decision
	for n := 0; ; n++ {
		if code, out := a.cli("decisions", "show", "-o", "json", d.ID); code == 0 {
			_ = json.Unmarshal([]byte(out), &got)
		}
		redirected := 0
		for _, e := range got.Evidence {
			if e.Kind == "redirected" && strings.Contains(e.Summary, "from "+suspect) && strings.Contains(e.Summary, "shop-decoy") {
				redirected++
			}
		}
		if redirected >= 2 && strings.Contains(fmt.Sprint(got.Evidence), "GET /backup/credentials.txt") {
			break
		}
		if n == 500 {
			t.Fatalf("the suspect's redirected requests are not in decision %s's evidence: %+v", d.ID, got.Evidence)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, e := range got.Evidence {
		if strings.Contains(e.Summary, other) {
			t.Fatalf("the other client's requests are in the suspect's evidence: %+v", e)
		}
	}

	// Every answer the other client got was voted by the real executors; none came from the
	// decoy.
	countVoted := func() int {
		f, err := os.Open(access)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		voted := 0
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l struct {
				Client, Policy, Path string
				Agreed               []string
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Client != other {
				continue
			}
			for _, ex := range l.Agreed {
				if strings.HasPrefix(ex, "shop-decoy") {
					t.Fatalf("the other client's answer came from the decoy: %s", sc.Text())
				}
			}
			if l.Path == "/" && l.Policy == "vote" && len(l.Agreed) >= 2 {
				voted++
			}
		}
		return voted
	}
	// Lines are written as requests finish: wait for the last (bounded: a hang).
	voted := countVoted()
	for n := 0; voted < 4 && n < 500; n++ {
		time.Sleep(20 * time.Millisecond)
		voted = countVoted()
	}
	if voted < 4 {
		t.Fatalf("%d voted answers of / to the other client in the access log, want 4", voted)
	}
}

// The decoy executor, where redirected suspects are, is watched by the file-integrity sensor
// like the voting executors: a file changed in it is decided on and takes that decoy instance
// out of service through the decoy's own pool (quarantined, kept for forensics), which
// replaces it from the known-good image; the voting executors are left alone.
func TestAgentDecoyExecutorIsWatchedAndReplaced(t *testing.T) {
	data := t.TempDir()
	const honey = "<h1>Proteus demo shop</h1><p>staff login: /backup/</p>\n"
	path := decoyAgentConfig(t, []decoyListen{{freeAddr(t), "ssh"}}, decoyExtra{
		pool: fmt.Sprintf(`decoy:
  name: shop-decoy
  image: builtin:demo
  command: ["{{.Self}}", "demo-server", "--impl", "nethttp", "--listen", "{{.Addr}}", "--root", "{{.Dir}}/honey"]
  files:
    honey/index.html: %q
    honey/healthz: "ok\n"`, honey),
		sensors: "fim: {}",
		engine:  "redirect: {ttl: 5m}",
		rules:   "- {name: tamper, sensor: fim, stage: S1, attack: a1, weight: 0.95}",
	})
	a := startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	work := filepath.Join(data, "executor", "process", "work")
	decoys := func() []string {
		ents, _ := os.ReadDir(work)
		var ids []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "shop-decoy") {
				ids = append(ids, e.Name())
			}
		}
		return ids
	}
	var victim string
	waitFor(t, "the decoy executor's work dir", func() bool {
		if ids := decoys(); len(ids) == 1 {
			victim = ids[0]
		}
		return victim != ""
	})
	voting := map[string]bool{}
	for _, x := range a.status(t).Executors {
		voting[x.ID] = true
	}
	if voting[victim] {
		t.Fatalf("the decoy %s is a voting executor", victim)
	}
	page := filepath.Join(work, victim, "honey", "index.html")
	// The decoy is watched once it is healthy: change its page until the sensor reports it.
	var q *store.Countermeasure
	waitFor(t, "a quarantine of the changed decoy executor", func() bool {
		if err := os.WriteFile(page, []byte("<h1>owned</h1>\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, d := range listDecisions(t, a) {
			for i, c := range d.Countermeasures {
				if c.Kind == "quarantine" && c.Target == victim {
					q = &d.Countermeasures[i]
					return true
				}
			}
		}
		return false
	})
	if q.Error != "" {
		t.Fatalf("the decoy's quarantine failed: %+v", *q)
	}
	// Replaced from the image; the quarantined work dir kept; no voting executor touched.
	waitFor(t, "a new decoy instance with the image's page", func() bool {
		for _, id := range decoys() {
			if b, err := os.ReadFile(filepath.Join(work, id, "honey", "index.html")); id != victim && err == nil && string(b) == honey {
				return true
			}
		}
		return false
	})
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "owned") {
		t.Fatalf("the quarantined decoy's work dir was not kept: %q %v", b, err)
	}
	for _, x := range a.status(t).Executors {
		if voting[x.ID] && x.State != "healthy" {
			t.Errorf("voting executor %s is %s after the decoy's quarantine", x.ID, x.State)
		}
	}
}
