package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/enclave"
	"github.com/proteus-defense/proteus/store"
)

// Issue 11, sharing: agent A's engine acts on its own EVE evidence (scan, exploit, C2 from
// one address), blocks, and publishes the detection to the enclave as a signed sighting;
// agent B's enclave node weighs it by A's reputation (neutral: an allowlisted peer with no
// history) and, with B's engine running, decides nothing itself: B's engine takes it as
// evidence of that strength and, short of the enclave's quorum and of own evidence, defers
// (vigilance) instead of blocking.
func TestAgentEngineSharesDetectionsAndWeighsPeerSightings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two agents with their executors")
	}
	bin := proteusBinary(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	id := func(dir string) string {
		code, out, errs := runCLI(t, "--data-dir", dir, "enclave", "id")
		if code != 0 {
			t.Fatalf("enclave id: %s", errs)
		}
		return strings.TrimSpace(out)
	}
	idA, idB := id(dirA), id(dirB)
	withEnclave := func(eve, bootstrap, rules string) string {
		path := engineAgentConfig(t, eve)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(raw), "  strategies:\n", rules+"  strategies:\n", 1) + fmt.Sprintf(`enclave:
  enabled: true
  name: lab
  allowlist: [%s, %s]
  listen: [/ip4/127.0.0.1/tcp/0]
  bootstrap: [%s]
  exposure: %s
`, idA, idB, bootstrap, linuxExposure)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	eveA := filepath.Join(dirA, "eve.json")
	if err := os.WriteFile(eveA, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logA := &syncBuffer{}
	cmdA := exec.Command(bin, "--data-dir", dirA, "agent", "-c", withEnclave(eveA, "", ""), "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0")
	cmdA.Stderr = logA
	if err := cmdA.Start(); err != nil {
		t.Fatal(err)
	}
	exitedA := make(chan struct{})
	go func() { _ = cmdA.Wait(); close(exitedA) }()
	t.Cleanup(func() {
		_ = cmdA.Process.Signal(syscall.SIGTERM)
		select {
		case <-exitedA:
		case <-time.After(30 * time.Second):
			_ = cmdA.Process.Kill()
			<-exitedA
		}
	})
	waitFile(t, filepath.Join(dirA, GatewayAddrFile), exitedA, logA.String)
	waitFile(t, filepath.Join(dirA, enclave.ControlFile), exitedA, logA.String)
	ca, err := enclave.Dial(dirA)
	if err != nil {
		t.Fatal(err)
	}
	stA, err := ca.Status(context.Background())
	if err != nil || len(stA.Addrs) == 0 {
		t.Fatalf("A's enclave status %+v: %v", stA, err)
	}

	eveB := filepath.Join(dirB, "eve.json")
	if err := os.WriteFile(eveB, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startAgent(t, dirB, "-c", withEnclave(eveB, stA.Addrs[0],
		"    - {name: peer, sensor: enclave, kind: sighting, stage: S1, attack: a1, weight: 0.99}\n"), "--listen", "127.0.0.1:0")
	cb, err := enclave.Dial(dirB)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the two nodes in one enclave mesh", func() bool {
		st, err := cb.Status(context.Background())
		return err == nil && st.MeshPeers > 0
	})

	const attacker = "198.51.100.77"
	for _, l := range []string{
		eveAlert(attacker, "ET SCAN Nmap Scripting Engine User-Agent Detected", "Attempted Information Leak", 2),
		eveAlert(attacker, "ET EXPLOIT Apache Struts RCE", "Attempted Administrator Privilege Gain", 1),
		eveAlert(attacker, "ET MALWARE Win32 beacon", "A Network Trojan was detected", 1),
	} {
		appendFile(t, eveA, l)
	}
	// A: act at S3 on its own evidence, blocked, shared.
	a := &inProcessAgent{data: dirA, stderr: logA}
	dsA := waitDecisions(t, a, func(ds []store.Decision) bool {
		for _, d := range ds {
			for _, c := range d.Countermeasures {
				if c.Kind == "share" {
					return true
				}
			}
		}
		return false
	}, "--source", attacker)
	var shared store.Decision
	for _, d := range dsA {
		for _, c := range d.Countermeasures {
			if c.Kind == "share" {
				shared = d
				if c.Target != attacker+"/32" || c.Error != "" {
					t.Fatalf("A's share %+v", c)
				}
			}
		}
	}
	if shared.Verdict != "act" || shared.StageID != "S3" {
		t.Fatalf("A shared on %+v", shared)
	}
	waitFor(t, "A's log to say the detection went to the enclave", func() bool {
		return strings.Contains(logA.String(), "detection shared with the enclave")
	})

	// B: the peer sighting as evidence, weighted by A's (neutral) reputation; defer.
	dsB := waitDecisions(t, b, func(ds []store.Decision) bool { return len(ds) > 0 }, "--source", attacker)
	d := dsB[0]
	if d.Verdict != "defer" || len(d.Evidence) == 0 || d.Evidence[0].Sensor != "enclave" ||
		!strings.Contains(d.Evidence[0].Summary, "reputation-weighted evidence") {
		t.Fatalf("B's decision on the peer sighting %+v", d)
	}
	// Evidence = trust (neutral 0.5) × confidence (A's Pr(attack), ≥ 0.86) ≈ 0.43..0.5,
	// times the rule's 0.99.
	if d.Probability < 0.4 || d.Probability > 0.5 {
		t.Fatalf("B's Pr(attack) %v on a neutral peer's sighting, want about 0.5 × A's confidence", d.Probability)
	}
	code, out := b.cli("countermeasures", "-o", "json")
	if code != 0 {
		t.Fatalf("countermeasures: %s", out)
	}
	if strings.Contains(out, attacker) || strings.Contains(out, `"kind":"`+string(countermeasure.KindBlock)+`"`) {
		t.Fatalf("B blocked on a single neutral peer's report: %s", out)
	}
	if !strings.Contains(out, `"vigilance"`) {
		t.Fatalf("B's defer raised no vigilance: %s", out)
	}
}
