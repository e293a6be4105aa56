package process_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

// degradedEnv runs TestDegradedIsolation's unprivileged half (set by the root half).
const degradedEnv = "PROTEUS_TEST_DEGRADED_AGENT"

// An agent that is not root keeps working with degraded isolation, says so (at start in its
// log, and in the isolation its instances report, which `proteus status` shows), and still
// confines what an unprivileged process can confine: in a user namespace of its own uid, the
// private mounts (the data dir and api.token hidden, a private /tmp) and a PID namespace (the
// agent cannot be named); no writes outside the work dir (Landlock); no signal to the agent
// (Landlock scope); no ptrace (seccomp, evidence). The root half re-runs this test binary as
// uid 65534 (nobody) for the other half.
func TestDegradedIsolation(t *testing.T) {
	if os.Getenv(degradedEnv) != "" {
		degradedAgent(t)
		return
	}
	needRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// nobody can neither enter the go build cache nor t.TempDir's 0700 dirs: give it its
	// own copy of the binary and a directory of its own.
	// Outside /tmp, which the executor's private /tmp would cover.
	dir, err := os.MkdirTemp("/run", "proteus-degraded-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "process.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, home} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^TestDegradedIsolation$", "-test.v", "-test.count=1")
	cmd.Env = []string{degradedEnv + "=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + home, "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("the unprivileged half failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestDegradedIsolation") {
		t.Fatal("the unprivileged half did not run")
	}
}

func degradedAgent(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Fatal("the unprivileged half runs as root")
	}
	home := os.Getenv(degradedEnv)
	b := bus.New()
	denied, _ := b.Subscribe(8, bus.KindPrefix(executor.EventDenied))
	iso := testIsolation
	iso.Memory = 0 // RLIMIT_DATA would starve a -race binary's shadow memory
	data := filepath.Join(home, "data")
	token := filepath.Join(data, "api.token")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	d, err := process.New(executor.Env{DataDir: data, Bus: b, Isolation: iso, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Isolation(), "degraded isolation (") {
		t.Fatalf("isolation %q, want degraded", d.Isolation())
	}
	if l := logged.String(); !strings.Contains(l, `level=WARN msg="degraded isolation"`) || !strings.Contains(l, `reason="agent runs as uid 65534, not root`) {
		t.Errorf("no warning at start; the log:\n%s", logged.String())
	}
	ctx := context.Background()
	inst, err := d.Start(ctx, processtest.Spec("hostile", processtest.Image(t), processtest.Hostile))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, inst)
	waitServing(t, inst.Address, "/healthz")
	if !strings.HasPrefix(inst.Isolation, "degraded isolation") {
		t.Errorf("instance isolation %q", inst.Isolation)
	}
	// The helper's ambient CAP_SYS_ADMIN (for the mounts) must not reach the command: with it
	// the executor could undo the mounts that hide the data dir.
	pid := pidOf(t, inst)
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
		if v := statusField(t, pid, k); v != "0000000000000000" {
			t.Errorf("executor %s %s, want none", k, v)
		}
	}
	// What is refused depends on the kernel: Landlock for writes, its ABI 6 for signals.
	abi := 0
	if _, v, ok := strings.Cut(d.Isolation(), "landlock v"); ok {
		abi, _ = strconv.Atoi(strings.TrimRight(strings.Fields(v)[0], ","))
	}
	h := &hostileFixture{}
	outside := filepath.Join(home, "outside")
	attacks := []struct{ what, arg, val string }{}
	userns := strings.Contains(d.Isolation(), "ns user+mnt+pid")
	watched := strings.Contains(d.Isolation(), "signal watch") // then signalling is evidence: tried last
	if userns {
		attacks = append(attacks, struct{ what, arg, val string }{"read", "path", token})
		if !watched {
			attacks = append(attacks, struct{ what, arg, val string }{"signal", "pid", strconv.Itoa(os.Getpid())})
		}
	} else {
		t.Logf("no user namespace here: the executor can read %s", token)
	}
	if abi >= 1 {
		attacks = append(attacks, struct{ what, arg, val string }{"write", "path", outside})
	}
	if abi >= 6 && !userns {
		attacks = append(attacks, struct{ what, arg, val string }{"signal", "pid", strconv.Itoa(os.Getpid())})
	}
	t.Logf("isolation %s: trying %v", d.Isolation(), attacks)
	for _, c := range attacks {
		report := h.attack(t, inst, c.what, c.arg, c.val)
		t.Logf("%s %s: %q", c.what, c.val, report)
		if !strings.HasPrefix(report, "refused: ") {
			t.Errorf("%s %s: %q, want a refusal", c.what, c.val, report)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Errorf("the executor wrote %s", outside)
	}
	if !strings.Contains(d.Isolation(), "seccomp") {
		return
	}
	if report := h.attack(t, inst, "ptrace"); report != "" {
		t.Errorf("ptrace: %q, want the executor killed", report)
	}
	if e := <-denied; e.Subject != inst.ID || e.Attrs["reason"] != "seccomp" {
		t.Errorf("evidence %+v", e)
	}
	if !watched {
		t.Logf("no signal watch here (%s)", d.Isolation())
		return
	}
	// The PID namespace refuses (ESRCH) and the seccomp listener shows the call to the agent.
	next, err := d.Start(ctx, processtest.Spec("hostile", processtest.Image(t), processtest.Hostile))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, next)
	waitServing(t, next.Address, "/healthz")
	// Signalling its own child trips nothing (the first evidence below is about the agent).
	if report := h.attack(t, next, "benign", "path", filepath.Join(next.WorkDir, "site", "index.html")); !strings.HasPrefix(report, "ok: ") {
		t.Errorf("benign work: %q", report)
	}
	// It may be killed for it before it answers.
	if report := h.attack(t, next, "signal", "pid", strconv.Itoa(os.Getpid())); strings.HasPrefix(report, "SUCCEEDED") {
		t.Errorf("signal the agent: %q, want a refusal", report)
	}
	if e := <-denied; e.Subject != next.ID || e.Attrs["reason"] != "signal" || e.Attrs["target_pid"] != os.Getpid() {
		t.Errorf("evidence %+v, want signal naming pid %d", e, os.Getpid())
	}
}
