package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/store"
)

// decoyBanner connects to the SSH decoy at addr the way a scanner does, reads its greeting,
// sends an identification line and hangs up.
func decoyBanner(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // guards a hang only
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "SSH-2.0-Nmap-SSH2-Hostkey\r\n")
	return strings.TrimSuffix(line, "\r\n")
}

// Must show: a connection to a decoy reaches the engine as reconnaissance evidence and makes
// a decision (in `proteus decisions`, with the decoy's event as evidence), and the decoy then
// switches from the configured signal's banners to those of the signal the game chose.
func TestAgentDecoyConnectionIsDecidedAndBannersFollowSignal(t *testing.T) {
	decoy := freeAddr(t)
	banners := map[string]string{"mH": "SSH-2.0-OpenSSH_9.6p1 Debian-3", "mL": "SSH-2.0-OpenSSH_7.4"}
	path := decoyAgentConfig(t, []decoyListen{{decoy, "ssh"}}, decoyExtra{decoy: "signal: mL"})
	a := startAgent(t, "", "-c", path, "--listen", "127.0.0.1:0")
	// The decoy may bind a moment after the agent is ready (the sensors' supervisor starts it).
	var first string
	for range 500 {
		if c, err := net.Dial("tcp", decoy); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	first = decoyBanner(t, decoy)
	if first != banners["mL"] {
		t.Fatalf("decoy greets with %q before any decision, want the configured signal's %q", first, banners["mL"])
	}
	decoyBanner(t, decoy)
	ds := waitDecisions(t, a, func(ds []store.Decision) bool { return len(ds) > 0 && ds[len(ds)-1].Verdict == "act" }, "--source", "127.0.0.1")
	d := ds[len(ds)-1]
	if d.Asset != "shop" || d.Stage != 1 || len(d.Evidence) == 0 || d.Evidence[0].Sensor != "decoy" || d.Evidence[0].Kind != "connect" ||
		!strings.Contains(d.Evidence[0].Summary, "decoy ssh on "+decoy) {
		t.Fatalf("decision %+v", d)
	}
	// The paper's model has the game send mH here, so the banners must switch from mL.
	want, ok := banners[d.Signal]
	if !ok || d.Signal == "mL" {
		t.Fatalf("decision's signal %q has no banners", d.Signal)
	}
	// The signal reaches the decoy through the bus; poll until it has (bounded: a hang).
	var got string
	for range 500 {
		if got = decoyBanner(t, decoy); got == want {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("after the game chose %s the decoy greets with %q, want %q", d.Signal, got, want)
	}
	t.Logf("decision %s: stage %s strategy %s signal %s; decoy now %q", d.ID, d.StageID, d.Strategy, d.Signal, got)
}
