package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/store"
)

// Issue 11 with issue 17's evidence: an executor that makes a system call its seccomp filter
// kills (ptrace, after it has served its health check) is refused by the process driver
// (executor.denied), and the engine takes that as evidence about that executor: an act,
// audited with the refusal, and the executor out of service (the driver has killed it; the
// pool replaces it from the known-good image).
func TestAgentEngineActsOnExecutorDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the agent with its executors")
	}
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Skip("perl not installed")
	}
	eve := filepath.Join(t.TempDir(), "eve.json")
	if err := os.WriteFile(eve, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := engineAgentConfig(t, eve)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	const raw0 = `command: ["{{.Self}}", "demo-server", "--impl", "raw", "--listen", "{{.Addr}}", "--root", "{{.Dir}}/site"]`
	if !strings.Contains(cfg, raw0) {
		t.Fatal("the default config's go-raw variant changed")
	}
	// go-raw serves, then its main process becomes perl calling ptrace (syscall 101 on
	// x86-64, the seccomp filter's kill list).
	cfg = strings.Replace(cfg, raw0, `command: ["/bin/sh", "-c", "\"$0\" demo-server --impl raw --listen {{.Addr}} --root {{.Dir}}/site & sleep 2; exec `+
		perl+` -e 'syscall(101, 0, 0, 0, 0)'", "{{.Self}}"]`, 1)
	cfg = strings.Replace(cfg, "  strategies:\n", "    - {name: refused, sensor: executor, kind: denied, stage: S2, attack: a3, weight: 0.95}\n  strategies:\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "", "-c", path, "--listen", "127.0.0.1:0")
	ds := waitDecisions(t, a, func(ds []store.Decision) bool {
		for _, d := range ds {
			if len(d.Evidence) > 0 && d.Evidence[0].Sensor == "executor" {
				return true
			}
		}
		return false
	})
	var d store.Decision
	for _, x := range ds {
		if len(x.Evidence) > 0 && x.Evidence[0].Sensor == "executor" {
			d = x
		}
	}
	if d.Verdict != "act" || d.StageID != "S2" || !strings.Contains(d.Evidence[0].Summary, "seccomp") ||
		!strings.Contains(d.Evidence[0].Summary, "go-raw") {
		t.Fatalf("decision on the refusal %+v", d)
	}
	var quarantine bool
	for _, c := range d.Countermeasures {
		if c.Kind == "quarantine" || c.Kind == "rotate" && strings.HasPrefix(c.Target, "go-raw-") {
			quarantine = true
		}
	}
	if !quarantine {
		t.Fatalf("no quarantine of the refused executor: %+v", d.Countermeasures)
	}
	t.Logf("decision %s: %s; countermeasures %+v", d.ID, d.Evidence[0].Summary, d.Countermeasures)
	if code, out := a.cli("decisions", "show", d.ID); code != 0 || !strings.Contains(out, "refused by") {
		t.Fatalf("decisions show: %d\n%s", code, out)
	}
}
