package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/store"
)

// getWith sends GET url from local address src with header hdr and returns status and body.
func getWith(t *testing.T, src, url string, hdr http.Header) (int, string) {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hdr != nil {
		req.Header = hdr
	}
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Must show (issue 14, canaries): a hostile client that the engine deferred on is redirected
// to the decoy executor and harvests its canary credentials; using them afterwards anywhere
// is a high-confidence event with the source that is decided on (act): from a fresh address
// on the voted site (Basic credentials; it still gets the voted answer, nothing tells it the
// token gave it away) and on a decoy listener (Redis AUTH). An honest client's near miss
// decides nothing.
func TestAgentCanaryReuseIsDecided(t *testing.T) {
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	redis := freeAddr(t)
	const canary = "canary-7f3a9c"
	path := decoyAgentConfig(t, []decoyListen{{redis, "redis"}}, decoyExtra{
		pool: fmt.Sprintf(`decoy:
  name: shop-decoy
  image: builtin:demo
  command: ["{{.Self}}", "demo-server", "--impl", "nethttp", "--listen", "{{.Addr}}", "--root", "{{.Dir}}/honey"]
  canaries: [%s]
  files:
    honey/index.html: "<h1>Proteus demo shop</h1><p>staff login: /backup/</p>\n"
    honey/healthz: "ok\n"
    honey/backup/credentials.txt: "db_user=admin db_pass=%s\n"`, canary, canary),
		sensors: fmt.Sprintf("eve: {path: %q, from_start: true}", eve),
		engine:  "redirect: {ttl: 5m}",
		rules: `- {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.5}
- {name: canary, sensor: gateway, kind: canary, stage: S1, attack: a1, weight: 0.99}
- {name: decoy-canary, sensor: decoy, kind: canary, stage: S1, attack: a1, weight: 0.99}`,
	})
	a := startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	const suspect, reuser, decoyUser, honest = "127.0.0.7", "127.0.0.9", "127.0.0.10", "127.0.0.1"
	base := "http://" + a.gw
	_, realIndex := fetchFrom(t, honest, base+"/")

	// The suspect is deferred on, redirected, and harvests the canary file.
	appendFile(t, eve, eveAlert(suspect, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	if d := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", suspect)[0]; d.Verdict != "defer" {
		t.Fatalf("the engine decided %s on the suspect; this test needs defer", d.Verdict)
	}
	_, file := fetchFrom(t, suspect, base+"/backup/credentials.txt")
	m := regexp.MustCompile(`db_user=(\S+) db_pass=(\S+)`).FindStringSubmatch(file)
	if m == nil {
		t.Fatalf("the redirected suspect found no credentials: %q", file)
	}
	user, pass := m[1], m[2]

	// An honest client whose cookie only resembles the canary: served, nothing decided.
	if c, b := getWith(t, honest, base+"/", http.Header{"Cookie": {"pref=" + pass[:len(pass)-1]}}); c != 200 || b != realIndex {
		t.Fatalf("the honest client got %d %q", c, b)
	}

	// The attacker, from an address never seen, logs in to the real site with the harvested
	// credentials: it gets the voted answer, and is decided on from the canary alone.
	hdr := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}
	if c, b := getWith(t, reuser, base+"/", hdr); c != 200 || b != realIndex {
		t.Fatalf("the canary's user got %d %q, want the voted index (nothing must tell it apart)", c, b)
	}
	d := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", reuser)[0]
	if d.Verdict != "act" || len(d.Evidence) == 0 || d.Evidence[0].Sensor != "gateway" || d.Evidence[0].Kind != "canary" ||
		!strings.Contains(d.Evidence[0].Summary, canary) || !strings.Contains(d.Evidence[0].Summary, "basic credentials") {
		t.Fatalf("the canary's use on the voted site: decision %+v", d)
	}

	// The same canary offered to a decoy listener.
	for n := 0; ; n++ { // the decoys bind a moment after the agent serves
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(decoyUser)}}).Dial("tcp", redis)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Minute)) // guards a hang only
			fmt.Fprintf(conn, "AUTH %s\r\n", pass)
			_, _ = bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			break
		}
		if n == 500 {
			t.Fatalf("the redis decoy never listened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var canaryEv *store.Evidence
	waitDecisions(t, a, func(ds []store.Decision) bool {
		for _, d := range ds {
			for i, e := range d.Evidence {
				if d.Verdict == "act" && e.Sensor == "decoy" && e.Kind == "canary" {
					canaryEv = &d.Evidence[i]
					return true
				}
			}
		}
		return false
	}, "--source", decoyUser)
	if !strings.Contains(canaryEv.Summary, canary) {
		t.Fatalf("decoy canary evidence %+v", canaryEv)
	}
	if ds := listDecisions(t, a, "--source", honest); len(ds) > 0 {
		t.Fatalf("the honest client was decided on: %+v", ds)
	}
}
