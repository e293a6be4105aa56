package process_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

// testIsolation is the agent's default confinement with limits small enough to hit.
var testIsolation = executor.Isolation{Mode: executor.IsolationAuto, UIDFirst: 600000, UIDCount: 1000,
	Memory: 256 << 20, Processes: 128, OpenFiles: 256, CPU: 1}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the process driver confines executors fully (own uid, namespaces, cgroups) only when the agent is root")
	}
}

func newIsolated(t *testing.T, dataDir string, b *bus.Bus) *process.Driver {
	t.Helper()
	d, err := process.New(executor.Env{DataDir: dataDir, Bus: b, Isolation: testIsolation})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Isolation(), "full isolation:") {
		t.Fatalf("isolation %q, want full as root", d.Isolation())
	}
	return d
}

func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return ""
}

func TestIsolatedExecutorServes(t *testing.T) {
	needRoot(t)
	d := newIsolated(t, t.TempDir(), nil)
	ctx := context.Background()
	inst, err := d.Start(ctx, processtest.DemoSpec("iso", processtest.Image(t), "nethttp"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, inst)
	body := waitServing(t, inst.Address, "/")
	if !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("body %q", body)
	}
	pid := pidOf(t, inst)
	uid := strings.Fields(statusField(t, pid, "Uid"))
	t.Logf("isolation %s; uid %v; nnp %s seccomp %s", inst.Isolation, uid, statusField(t, pid, "NoNewPrivs"), statusField(t, pid, "Seccomp"))
}
