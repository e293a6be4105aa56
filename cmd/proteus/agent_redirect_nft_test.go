package main

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/countermeasure/nfttest"
	"github.com/proteus-defense/proteus/store"
)

// Must show (issue 14, redirection at the network layer): run as root, the agent in its own
// network namespace with engine.redirect.ports defers on a suspect (an IDS alert) and
// redirects it with nftables: the suspect's next connection to the gateway's port reaches
// the SSH decoy instead, while another client on the same port still gets the voted site;
// the suspect's decoy connection is evidence, decided on (act), and blocks it; the story is
// in the audit store.
func TestAgentRedirectsDeferredSourceWithNFTables(t *testing.T) {
	agentNS, _ := nfttest.NetNS(t)
	suspectIP, agentIP := vethPair(t, "", agentNS, 242)
	otherIP, agentIP2 := vethPair(t, "", agentNS, 243)
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	cfg := decoyAgentConfig(t, []decoyListen{{"0.0.0.0:2222", "ssh"}}, decoyExtra{
		sensors: "eve: {path: " + `"` + eve + `"` + ", from_start: true}",
		engine:  "redirect: {ttl: 5m, ports: [{port: 8080, to: 2222}]}",
		rules: "- {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.5}\n" +
			"- {name: decoy, sensor: decoy, kind: connect, stage: S1, attack: a1, weight: 0.9}",
		block: 5 * time.Minute,
	})
	_, stderr := startAgentInNetNS(t, agentNS, data, cfg, "0.0.0.0:8080")

	// What one connection from src to dst:8080 answers to an HTTP request.
	answer := func(src, dst string) string {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", dst+":8080")
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second)) // guards a hang only
		io.WriteString(c, "GET / HTTP/1.0\r\nHost: shop\r\n\r\n")
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, c := range [][2]string{{suspectIP, agentIP}, {otherIP, agentIP2}} {
		if got := answer(c[0], c[1]); !strings.HasPrefix(got, "HTTP/1.") || !strings.Contains(got, " 200 ") {
			t.Fatalf("before any decision %s gets %.80q, want the voted site\n%s", c[0], got, stderr.String())
		}
	}

	appendFile(t, eve, eveAlert(suspectIP, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	decisions := func() []store.Decision {
		st, err := store.OpenExisting(data)
		if err != nil {
			return nil
		}
		defer st.Close()
		ds, _ := st.List(t.Context(), store.Filter{Source: suspectIP})
		return ds
	}
	var ds []store.Decision
	waitFor(t, "a decision on the suspect", func() bool { ds = decisions(); return len(ds) > 0 })
	d := ds[len(ds)-1]
	if d.Verdict != "defer" {
		t.Fatalf("the engine decided %s on the suspect (p %.2f, α %.2f, β %.2f); this test needs defer", d.Verdict, d.Probability, d.Alpha, d.Beta)
	}
	var redirected bool
	for _, c := range d.Countermeasures {
		if c.Kind == "redirect" && c.Error == "" && c.Target == suspectIP && strings.HasPrefix(c.ID, countermeasure.NFTablesID+"/") {
			redirected = true
		}
	}
	if !redirected {
		t.Fatalf("no nftables redirect of %s in the defer decision: %+v", suspectIP, d.Countermeasures)
	}
	if l := nfttest.List(t, agentNS, countermeasure.NFTable); !strings.Contains(l, "redirect to :2222") || !strings.Contains(l, suspectIP) {
		t.Fatalf("the redirect is not in the kernel:\n%s", l)
	}

	// The suspect reaches the decoy on the gateway's port; the other client the voted site.
	if got := answer(suspectIP, agentIP); !strings.HasPrefix(got, "SSH-2.0-OpenSSH_9.6p1") {
		t.Fatalf("the redirected suspect got %.80q on port 8080, want the SSH decoy's greeting", got)
	}
	if got := answer(otherIP, agentIP2); !strings.HasPrefix(got, "HTTP/1.") || !strings.Contains(got, " 200 ") {
		t.Fatalf("the other client got %.80q, want the voted site unchanged", got)
	}

	// Touching the decoy is decided on: act, a kernel block of the suspect.
	var act *store.Decision
	waitFor(t, "an act decision on the suspect's decoy connection", func() bool {
		for _, d := range decisions() {
			if d.Verdict == "act" && len(d.Evidence) > 0 && d.Evidence[0].Sensor == "decoy" {
				act = &d
				return true
			}
		}
		return false
	})
	blocked := false
	for _, c := range act.Countermeasures {
		blocked = blocked || c.Kind == "block" && c.Error == "" && strings.HasPrefix(c.ID, countermeasure.NFTablesID+"/")
	}
	if !blocked || !strings.Contains(act.Evidence[0].Summary, suspectIP) {
		t.Fatalf("the decoy decision: %+v", *act)
	}
	if got := answer(suspectIP, agentIP); strings.Contains(got, "SSH") || strings.Contains(got, "HTTP") {
		t.Fatalf("the blocked suspect still got %.80q", got)
	}
	if got := answer(otherIP, agentIP2); !strings.Contains(got, " 200 ") {
		t.Fatalf("the other client got %.80q after the suspect's block", got)
	}
}
