package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// An agent that is not root keeps serving with degraded isolation, and says so at start and
// in `proteus status`: the real binary, run as nobody with a data dir of its own.
func TestStatusShowsDegradedIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the agent as another user (nobody)")
	}
	built := proteusBinary(t)
	// nobody may enter neither the build's temporary dir nor t.TempDir's: its own copies.
	dir, err := os.MkdirTemp("", "proteus-degraded-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, data := filepath.Join(dir, "proteus"), filepath.Join(dir, "data")
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + data}

	a := &agentProc{stderr: &syncBuffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(bin, "--data-dir", data, "agent", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0")
	a.cmd.Stderr, a.cmd.SysProcAttr, a.cmd.Env = a.stderr, nobody, env
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGTERM); <-a.exited })
	gw := waitFile(t, filepath.Join(data, GatewayAddrFile), a.exited, a.stderr.String)
	if code, body := httpGet(t, "http://"+gw+"/"); code != 200 || !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("gateway: %d %q", code, body)
	}
	if log := a.stderr.String(); !strings.Contains(log, `msg="degraded isolation"`) || !strings.Contains(log, "agent runs as uid 65534, not root") {
		t.Errorf("no degraded isolation warning at start:\n%s", log)
	}
	status := exec.Command(bin, "--data-dir", data, "status")
	status.SysProcAttr, status.Env = nobody, env
	out, err := status.CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if !strings.Contains(string(out), "executor isolation: degraded isolation (agent runs as uid 65534, not root") {
		t.Errorf("status does not say the isolation is degraded:\n%s", out)
	}
	rows := 0
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "degraded" {
			rows++
		}
	}
	if rows != 3 {
		t.Errorf("%d executors marked degraded in the table, want 3:\n%s", rows, out)
	}
}
