package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/internal/nmaptest"
	"github.com/proteus-defense/proteus/store"
)

// nmapServices runs `nmap -sV` against the ports of addrs (host:port on one host) and returns
// the service and version column nmap reports for each address.
func nmapServices(t *testing.T, addrs ...string) map[string]string {
	t.Helper()
	host, _, _ := net.SplitHostPort(addrs[0])
	var ports []string
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		ports = append(ports, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // guards a hang only
	defer cancel()
	out, err := nmaptest.ServiceScan(ctx, host, ports)
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	t.Logf("nmap -sV:\n%s", out)
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(\d+)/tcp\s+open\s+(\S+)\s*(.*)$`).FindAllStringSubmatch(string(out), -1) {
		got[net.JoinHostPort(host, m[1])] = m[2] + " " + strings.TrimSpace(m[3])
	}
	return got
}

// Must show (issue 14): the game's signal change switches what `nmap -sV` reports for the
// decoys and for the voting gateway in the running agent, and the signal in force is restored
// after a restart (from the audit store), not reset to the config's start signal.
func TestAgentSignalSwitchesDecoysAndGatewayIdentity(t *testing.T) {
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Skip("nmap is not installed (.ci/run installs it)")
	}
	model, def := paperModelAndDefaults(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the decoy
	if err != nil {
		t.Fatal(err)
	}
	decoy := ln.Addr().String()
	ln.Close()
	data := t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	// The decoys feed no rule here, so scanning them decides nothing: the signal changes only
	// when the EVE alert below is decided.
	gw := `gateway:
  signal: mL
  identities:
    mH: {server: nginx/1.26.0}
    mL: {server: Apache/2.2.15 (CentOS)}
`
	cfg := strings.Replace(string(def), "gateway:\n", gw, 1) + fmt.Sprintf(`
sensors:
  eve: {path: %q, from_start: true}
  decoy:
    listen: [{addr: %q, service: ssh}]
    signal: mL
    banners:
      mH: {ssh: OpenSSH_9.6p1 Debian-3}
      mL: {ssh: OpenSSH_7.4}
engine:
  model: %q
  nftables: off
  assets: [{name: shop, device: web}]
  rules:
    - {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.9}
  strategies:
    d1: [{kind: vigilance, level: 1}]
    d2: [{kind: vigilance, level: 2}]
`, eve, decoy, model)
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	want := map[string][2]string{ // signal -> what nmap names the decoy and the gateway
		"mL": {"ssh OpenSSH 7.4", "http Apache httpd 2.2.15 ((CentOS))"},
		"mH": {"ssh OpenSSH 9.6p1 Debian 3", "http nginx 1.26.0"},
	}
	check := func(sig string) {
		t.Helper()
		got := nmapServices(t, decoy, a.gw)
		if !strings.HasPrefix(got[decoy], want[sig][0]) || !strings.HasPrefix(got[a.gw], want[sig][1]) {
			t.Fatalf("under %s nmap reports the decoy as %q and the gateway as %q, want %q and %q", sig, got[decoy], got[a.gw],
				want[sig][0], want[sig][1])
		}
	}
	check("mL")

	appendFile(t, eve, eveAlert("198.51.100.7", "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", "198.51.100.7")
	if sig := ds[0].Signal; sig != "mH" {
		t.Fatalf("the live game sent %q at S1; this test needs it to switch mL to mH (decision %+v)", sig, ds[0])
	}
	// The signal reaches the gateway and the decoy over the bus: wait for the decoy's banner.
	for n := 0; decoyBanner(t, decoy) != "SSH-2.0-OpenSSH_9.6p1 Debian-3"; n++ {
		if n == 500 {
			t.Fatalf("decoy never switched to mH's banner:\n%s", a.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("mH")

	// Restart on the same data dir: what the attacker fingerprinted stays.
	a.stop(t)
	a = startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	if b := decoyBanner(t, decoy); b != "SSH-2.0-OpenSSH_9.6p1 Debian-3" {
		t.Fatalf("after a restart the decoy greets with %q, want mH's banner (the signal in force before)", b)
	}
	check("mH")
}
