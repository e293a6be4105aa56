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

// signalSwitchConfig is the config of the signal tests: an SSH decoy at decoy and the
// gateway's identities, both starting at signal from, the engine on model deciding only on
// the EVE alert the test appends to eve (the decoys feed no rule here, so scanning them
// decides nothing: the signal changes only when that alert is decided).
func signalSwitchConfig(t *testing.T, decoy, eve, model, from string) string {
	return decoyAgentConfig(t, []decoyListen{{decoy, "ssh"}}, decoyExtra{
		decoy:   "signal: " + from,
		sensors: fmt.Sprintf("eve: {path: %q, from_start: true}", eve),
		gateway: fmt.Sprintf("signal: %s\nidentities:\n  mH: {server: %s}\n  mL: {server: %s}", from, decoyBanners["http"][0], decoyBanners["http"][1]),
		rules:   "- {name: scan, sensor: eve, category: Attempted Information Leak, stage: S1, attack: a1, weight: 0.9}",
		model:   model,
	})
}

// signalSeen is what `nmap -sV` names the SSH decoy and the gateway under each signal
// (decoyBanners).
var signalSeen = map[string][2]string{
	"mL": {"ssh OpenSSH 7.4", "http Apache httpd 2.2.15 ((CentOS))"},
	"mH": {"ssh OpenSSH 9.6p1 Debian 3", "http nginx 1.26.0"},
}

// checkSignalSeen fails unless nmap names the decoy and the gateway as under signal sig.
func checkSignalSeen(t *testing.T, decoy, gw, sig string) {
	t.Helper()
	got := nmapServices(t, decoy, gw)
	if !strings.HasPrefix(got[decoy], signalSeen[sig][0]) || !strings.HasPrefix(got[gw], signalSeen[sig][1]) {
		t.Fatalf("under %s nmap reports the decoy as %q and the gateway as %q, want %q and %q", sig, got[decoy], got[gw],
			signalSeen[sig][0], signalSeen[sig][1])
	}
}

// switchSignalByAlert appends an EVE alert of a scan from src and waits for its decision to
// send signal want and for the decoy to greet with want's banner.
func switchSignalByAlert(t *testing.T, a *inProcessAgent, eve, decoy, src, want string) {
	t.Helper()
	appendFile(t, eve, eveAlert(src, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2))
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", src)
	if sig := ds[0].Signal; sig != want {
		t.Fatalf("the live game sent %q at S1; this test needs it to switch to %s (decision %+v)", sig, want, ds[0])
	}
	// The signal reaches the gateway and the decoy over the bus: wait for the decoy's banner.
	for n := 0; decoyBanner(t, decoy) != "SSH-2.0-"+decoyBanners["ssh"][signalIndex(want)]; n++ {
		if n == 500 {
			t.Fatalf("decoy never switched to %s's banner:\n%s", want, a.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signalIndex is the index of signal sig in decoyBanners' pairs.
func signalIndex(sig string) int {
	if sig == "mH" {
		return 0
	}
	return 1
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Must show (issue 14): the game's signal change switches what `nmap -sV` reports for the
// decoys and for the voting gateway in the running agent, and the signal in force is restored
// after a restart (from the audit store), not reset to the config's start signal. Here mL to
// mH: the paper's model, read as the live engine does, sends mH at S1.
func TestAgentSignalSwitchesDecoysAndGatewayIdentity(t *testing.T) {
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Skip("nmap is not installed (.ci/run installs it)")
	}
	decoy, data := freeAddr(t), t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	model, _ := paperModelAndDefaults(t)
	path := signalSwitchConfig(t, decoy, eve, model, "mL")
	a := startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	checkSignalSeen(t, decoy, a.gw, "mL")
	switchSignalByAlert(t, a, eve, decoy, "198.51.100.7", "mH")
	checkSignalSeen(t, decoy, a.gw, "mH")

	// Restart on the same data dir: what the attacker fingerprinted stays.
	a.stop(t)
	a = startAgent(t, data, "-c", path, "--listen", "127.0.0.1:0")
	if b := decoyBanner(t, decoy); b != "SSH-2.0-OpenSSH_9.6p1 Debian-3" {
		t.Fatalf("after a restart the decoy greets with %q, want mH's banner (the signal in force before)", b)
	}
	checkSignalSeen(t, decoy, a.gw, "mH")
}

// staticS1Model writes the paper's model with d1 (Delete account) not reconfiguring (rate
// none): then neither of S1's defenses reconfigures, the live parameters (c*, the measured
// rate, the attack intensity) leave S1 as Table 8 has it, and the game sends mL there, as
// `proteus game solve` prints for the paper's model. (With d1 at rate random, a pool that
// has not rotated yet measures rate 0, d1's β becomes tanh(0) = 0, and the game sends mH.)
func staticS1Model(t *testing.T) string {
	t.Helper()
	model, _ := paperModelAndDefaults(t)
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	const d1 = "{id: d1, name: Delete account, rate: random"
	if !strings.Contains(string(b), d1) {
		t.Fatalf("%s has no %q to change", model, d1)
	}
	path := filepath.Join(t.TempDir(), "mttegdm-static-s1.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), d1, "{id: d1, name: Delete account, rate: none", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Must show (issue 14): the other way, m_H to m_L, live: the agent starts presenting mH (a
// hardened current stack), the engine's game (staticS1Model) sends mL for the scan it
// decides, and `nmap -sV` then names the older stack for both the decoy and the gateway.
func TestAgentSignalSwitchesHighToLow(t *testing.T) {
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Skip("nmap is not installed (.ci/run installs it)")
	}
	decoy, data := freeAddr(t), t.TempDir()
	eve := filepath.Join(data, "eve.json")
	appendFile(t, eve, "")
	a := startAgent(t, data, "-c", signalSwitchConfig(t, decoy, eve, staticS1Model(t), "mH"), "--listen", "127.0.0.1:0")
	checkSignalSeen(t, decoy, a.gw, "mH")
	switchSignalByAlert(t, a, eve, decoy, "198.51.100.8", "mL")
	checkSignalSeen(t, decoy, a.gw, "mL")
}
