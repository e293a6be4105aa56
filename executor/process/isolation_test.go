package process_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

// testIsolation is the agent's default confinement with limits small enough to hit: the
// process limit well below what the memory limit allows (about 50 small children next to a
// -race server), so a fork bomb meets the pids cgroup first (a fork refused for memory is
// not counted anywhere, so it is no evidence).
var testIsolation = executor.Isolation{Mode: executor.IsolationAuto, UIDFirst: 600000, UIDCount: 1000,
	Memory: 256 << 20, Processes: 64, OpenFiles: 256, CPU: 1}

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
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
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
	// Its host name (localhost) is its UTS namespace's, not the machine's.
	self, _ := os.Readlink("/proc/self/ns/uts")
	if ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/uts"); err != nil || ns == self {
		t.Errorf("executor UTS namespace %s (%v), the agent's %s", ns, err, self)
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("the machine's host name changed from %q to %q", host, now)
	}
	t.Logf("isolation %s; uid %v; nnp %s seccomp %s", inst.Isolation, uid, statusField(t, pid, "NoNewPrivs"), statusField(t, pid, "Seccomp"))
}

// A uid range that holds a user or group of the machine is refused: an executor must never
// share an identity with anything else.
func TestUIDRangeHoldingASystemUserIsRefused(t *testing.T) {
	needRoot(t)
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Skipf("no /etc/passwd: %v", err)
	}
	var name string
	var uid int
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 {
			if n, err := strconv.Atoi(f[2]); err == nil && n >= 1000 {
				name, uid = f[0], n
				break
			}
		}
	}
	if name == "" {
		t.Skip("no user with uid >= 1000 in /etc/passwd")
	}
	iso := testIsolation
	iso.UIDFirst, iso.UIDCount = uid-5, 10
	_, err = process.New(executor.Env{DataDir: t.TempDir(), Isolation: iso})
	if !errors.Is(err, process.ErrIsolation) || !strings.Contains(err.Error(), strconv.Quote(name)) {
		t.Fatalf("New = %v, want ErrIsolation naming user %q", err, name)
	}
}

func TestUnknownIsolationModeIsRefused(t *testing.T) {
	iso := testIsolation
	iso.Mode = "strict"
	if _, err := process.New(executor.Env{DataDir: t.TempDir(), Isolation: iso}); !errors.Is(err, process.ErrIsolation) {
		t.Fatalf("New = %v, want ErrIsolation", err)
	}
}

// The uids of a range too small for the executors asked for run out with a clear error, and
// come back when an executor stops.
func TestUIDRangeExhausted(t *testing.T) {
	needRoot(t)
	iso := testIsolation
	iso.UIDFirst, iso.UIDCount = 609990+os.Getpid()%5, 1 // one uid: the probe's, then one executor's
	d, err := process.New(executor.Env{DataDir: t.TempDir(), Isolation: iso})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img := processtest.Image(t)
	first, err := d.Start(ctx, processtest.DemoSpec("one", img, "raw"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(ctx, processtest.DemoSpec("two", img, "raw")); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Start = %v, want the range exhausted", err)
	}
	if err := d.Stop(ctx, first); err != nil {
		t.Fatal(err)
	}
	again, err := d.Start(ctx, processtest.DemoSpec("two", img, "raw"))
	if err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	_ = d.Stop(ctx, again)
}

// A data dir below a directory that others may not search (root's home: /root is 0700) still
// gives full isolation: the cover that hides the data dir from executors starts at that
// directory, so an executor's uid reaches its work dir. Outside /tmp, which executors see as
// a fresh tmpfs anyway.
func TestDataDirBelowAnUnsearchableDirectory(t *testing.T) {
	needRoot(t)
	parent, err := os.MkdirTemp("/run", "proteus-test-home-")
	if err != nil {
		t.Skipf("no directory outside /tmp to test in: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(parent, "secret")
	if err := os.WriteFile(secret, []byte("the agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newIsolated(t, filepath.Join(parent, "state", "proteus"), nil)
	ctx := context.Background()
	inst, err := d.Start(ctx, processtest.DemoSpec("home", processtest.Image(t), "nethttp"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, inst)
	if body := waitServing(t, inst.Address, "/"); !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("body %q", body)
	}
	// What the cover hides is the executor's no more: the file beside the data dir is not the agent's.
	if data, err := os.ReadFile("/proc/" + strconv.Itoa(pidOf(t, inst)) + "/root" + secret); err == nil && string(data) == "the agent's" {
		t.Fatalf("the executor sees %s", secret)
	}
}
