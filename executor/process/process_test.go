package process_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
)

func TestMain(m *testing.M) { processtest.Main(m) }

// newDriver builds a driver confining executors the agent's default way (fully when the test
// runs as root, degraded otherwise), so every test here also checks the confinement.
func newDriver(t *testing.T, dataDir string, b *bus.Bus, grace time.Duration) *process.Driver {
	t.Helper()
	d, err := process.New(executor.Env{DataDir: dataDir, Bus: b, StopGrace: grace, Isolation: testIsolation, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// testLogger shows the driver's log in the test's output (an executor's exit with the tail
// of its output, say), and drops what comes after the test ended.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// waitServing polls GET path until it answers 200; the bound only guards against a hang.
func waitServing(t *testing.T, addr, path string) string {
	t.Helper()
	var last error
	for range 400 {
		resp, err := http.Get("http://" + addr + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(body)
			}
			last = errors.New(resp.Status)
		} else {
			last = err
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s%s never served: %v", addr, path, last)
	return ""
}

func pidOf(t *testing.T, inst *executor.Instance) int {
	t.Helper()
	pid, err := strconv.Atoi(inst.Handle)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func procState(pid int) (byte, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(data), ')')
	return data[i+2], data[i+2] != 'Z'
}

func TestRegistered(t *testing.T) {
	d, err := executor.New(process.ID, executor.Env{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.(*process.Driver); !ok {
		t.Fatalf("got %T", d)
	}
}

func TestStartServesAndStopCleansUp(t *testing.T) {
	data := t.TempDir()
	b := bus.New()
	events, cancel := b.Subscribe(64, nil)
	defer cancel()
	d := newDriver(t, data, b, 0)
	ctx := context.Background()
	inst, err := d.Start(ctx, processtest.DemoSpec("go-raw", processtest.Image(t), "raw"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(inst.Address)
	if host != "127.0.0.1" || port == "" {
		t.Fatalf("address %q", inst.Address)
	}
	if !strings.HasPrefix(inst.ImageDigest, "sha256:") || inst.WorkDir == "" || inst.Variant != "go-raw" {
		t.Fatalf("instance %+v", inst)
	}
	body := waitServing(t, inst.Address, "/")
	if !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("body %q", body)
	}
	for _, f := range []string{filepath.Join(inst.WorkDir, "site", "index.html"), filepath.Join(inst.WorkDir, process.OutputFile),
		filepath.Join(data, "executor", "process", "run", inst.ID+".json")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	listed, err := d.List(ctx)
	if err != nil || len(listed) != 1 || listed[0].ID != inst.ID {
		t.Fatalf("List = %v, %v", listed, err)
	}
	pid := pidOf(t, inst)
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, alive := procState(pid); alive {
		t.Errorf("pid %d still alive", pid)
	}
	if _, err := os.Stat(inst.WorkDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir left: %v", err)
	}
	if l, _ := d.List(ctx); len(l) != 0 {
		t.Errorf("records left: %v", l)
	}
	if _, err := http.Get("http://" + inst.Address + "/"); err == nil {
		t.Error("still listening after Stop")
	}
	var kinds []string
	for len(events) > 0 {
		kinds = append(kinds, (<-events).Kind)
	}
	if strings.Join(kinds, ",") != executor.EventStarted+","+executor.EventStopped {
		t.Errorf("events %v", kinds)
	}
}

func TestEveryStartGetsFreshPortAndDir(t *testing.T) {
	d := newDriver(t, t.TempDir(), nil, 0)
	img := processtest.Image(t)
	seenAddr, seenDir := map[string]bool{}, map[string]bool{}
	var insts []*executor.Instance
	for range 4 {
		inst, err := d.Start(context.Background(), processtest.DemoSpec("v", img, "nethttp"))
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst)
		if seenAddr[inst.Address] || seenDir[inst.WorkDir] {
			t.Errorf("reused %s / %s", inst.Address, inst.WorkDir)
		}
		seenAddr[inst.Address], seenDir[inst.WorkDir] = true, true
	}
	for _, inst := range insts {
		if err := d.Stop(context.Background(), inst); err != nil {
			t.Error(err)
		}
	}
}

func TestTamperedImageIsRefused(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, img string)
		want   string
	}{
		{"modified file", func(t *testing.T, img string) {
			write(t, filepath.Join(img, "site", "index.html"), "<h1>defaced</h1>")
		}, "sha256 mismatch for site/index.html"},
		{"added file", func(t *testing.T, img string) {
			write(t, filepath.Join(img, "site", "shell.php"), "<?php system($_GET['c']);")
		}, "unlisted file site/shell.php"},
		{"removed file", func(t *testing.T, img string) {
			if err := os.Remove(filepath.Join(img, "site", "about.html")); err != nil {
				t.Fatal(err)
			}
		}, "missing file site/about.html"},
		{"no manifest", func(t *testing.T, img string) {
			if err := os.Remove(filepath.Join(img, process.ManifestName)); err != nil {
				t.Fatal(err)
			}
		}, "no MANIFEST.sha256"},
		{"symlink", func(t *testing.T, img string) {
			p := filepath.Join(img, "site", "style.css")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/passwd", p); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"manifest escapes", func(t *testing.T, img string) {
			write(t, filepath.Join(img, process.ManifestName), strings.Repeat("0", 64)+"  ../../etc/passwd\n")
		}, "must be clean and relative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			b := bus.New()
			events, cancel := b.Subscribe(8, bus.KindPrefix(executor.EventTamperedImage))
			defer cancel()
			d := newDriver(t, data, b, 0)
			img := processtest.Image(t)
			c.tamper(t, img)
			inst, err := d.Start(context.Background(), processtest.DemoSpec("v", img, "nethttp"))
			if !errors.Is(err, executor.ErrTamperedImage) {
				if inst != nil {
					_ = d.Stop(context.Background(), inst)
				}
				t.Fatalf("Start = %v, want ErrTamperedImage", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			select {
			case e := <-events:
				if e.Subject != "v" || !strings.Contains(e.Attrs["reason"].(string), c.want) {
					t.Errorf("event %+v", e)
				}
			default:
				t.Error("no tampered-image event")
			}
			left, _ := os.ReadDir(filepath.Join(data, "executor", "process", "work"))
			if len(left) != 0 {
				t.Errorf("work dirs left: %v", left)
			}
		})
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStopKillsWhenTermIsIgnored(t *testing.T) {
	d := newDriver(t, t.TempDir(), nil, 100*time.Millisecond)
	inst, err := d.Start(context.Background(), processtest.Spec("stubborn", processtest.Image(t), processtest.IgnoreTerm))
	if err != nil {
		t.Fatal(err)
	}
	waitServing(t, inst.Address, "/healthz")
	pid := pidOf(t, inst)
	if err := d.Stop(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	if _, alive := procState(pid); alive {
		t.Fatalf("pid %d survived Stop", pid)
	}
}

func TestExitedReportsCrash(t *testing.T) {
	d := newDriver(t, t.TempDir(), nil, 0)
	inst, err := d.Start(context.Background(), processtest.Spec("crashy", processtest.Image(t), processtest.Crash))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background(), inst)
	waitServing(t, inst.Address, "/healthz")
	exited := d.Exited(inst)
	select {
	case <-exited:
		t.Fatal("exited before crashing")
	default:
	}
	_, _ = http.Get("http://" + inst.Address + "/crash")
	<-exited // the test's own timeout guards a hang
}

func TestQuarantineFreezesAndKeepsWorkDir(t *testing.T) {
	data := t.TempDir()
	d := newDriver(t, data, nil, 0)
	ctx := context.Background()
	inst, err := d.Start(ctx, processtest.DemoSpec("q", processtest.Image(t), "nethttp"))
	if err != nil {
		t.Fatal(err)
	}
	waitServing(t, inst.Address, "/healthz")
	pid := pidOf(t, inst)
	if err := d.Quarantine(ctx, inst); err != nil {
		t.Fatal(err)
	}
	// SIGSTOP is delivered asynchronously; wait until the kernel reports the stop.
	for i := 0; ; i++ {
		st, _ := procState(pid)
		if st == 'T' {
			break
		}
		if i > 400 {
			t.Fatalf("state %c, want T (stopped)", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, alive := procState(pid); alive {
		t.Error("quarantined process alive after Stop")
	}
	for _, f := range []string{process.RecordFile, process.OutputFile, "site/index.html"} {
		if _, err := os.Stat(filepath.Join(inst.WorkDir, f)); err != nil {
			t.Errorf("forensic copy lost %s: %v", f, err)
		}
	}
	if err := d.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inst.WorkDir); err != nil {
		t.Errorf("Cleanup removed a quarantined work dir: %v", err)
	}
}

// A second driver on the same data dir stands in for a restarted agent: it finds the first
// one's processes through their records and kills them, and removes orphaned work dirs.
func TestRestartedDriverCleansLeftovers(t *testing.T) {
	data := t.TempDir()
	first := newDriver(t, data, nil, 0)
	ctx := context.Background()
	img := processtest.Image(t)
	var pids []int
	for _, impl := range []string{"nethttp", "fasthttp"} {
		inst, err := first.Start(ctx, processtest.DemoSpec(impl, img, impl))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pidOf(t, inst))
	}
	orphan := filepath.Join(data, "executor", "process", "work", "orphan-000000")
	if err := os.MkdirAll(filepath.Join(orphan, "site"), 0o700); err != nil {
		t.Fatal(err)
	}

	second := newDriver(t, data, nil, 0)
	left, err := second.List(ctx)
	if err != nil || len(left) != 2 {
		t.Fatalf("List = %v, %v", left, err)
	}
	for _, inst := range left {
		if err := second.Stop(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	if err := second.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if _, alive := procState(pid); alive {
			t.Errorf("leftover pid %d alive", pid)
		}
	}
	work, _ := os.ReadDir(filepath.Join(data, "executor", "process", "work"))
	if len(work) != 0 {
		t.Errorf("work dirs left: %v", work)
	}
}

func TestValidateSpec(t *testing.T) {
	d := newDriver(t, t.TempDir(), nil, 0)
	ok := processtest.DemoSpec("ok", "/img", "raw")
	cases := []struct {
		name string
		mod  func(*executor.Spec)
		want string
	}{
		{"valid", func(*executor.Spec) {}, ""},
		{"bad variant", func(s *executor.Spec) { s.Variant = "../x" }, "variant"},
		{"no image", func(s *executor.Spec) { s.Image = "" }, "no image"},
		{"no command", func(s *executor.Spec) { s.Command = nil }, "no command"},
		{"bad template", func(s *executor.Spec) { s.Command = []string{"{{.Port"} }, "command[0]"},
		{"unknown field", func(s *executor.Spec) { s.Command = []string{"{{.Nope}}"} }, "command[0]"},
		{"bad env", func(s *executor.Spec) { s.Env = map[string]string{"A=B": "c"} }, "env"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := ok
			c.mod(&s)
			err := d.ValidateSpec(s)
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("ValidateSpec = %v, want %q", err, c.want)
			}
		})
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	data := t.TempDir()
	d := newDriver(t, data, nil, 0)
	s := processtest.DemoSpec("nobin", processtest.Image(t), "raw")
	s.Command = []string{"/nonexistent/server", "{{.Port}}"}
	if _, err := d.Start(context.Background(), s); err == nil {
		t.Fatal("started a missing binary")
	}
	work, _ := os.ReadDir(filepath.Join(data, "executor", "process", "work"))
	run, _ := os.ReadDir(filepath.Join(data, "executor", "process", "run"))
	if len(work)+len(run) != 0 {
		t.Fatalf("left %v %v", work, run)
	}
}

// A variant's files are rendered into each executor's work directory with its own port and
// state directory, and their hashes recorded for the file-integrity sensor; a file of the
// image is never overwritten and a name leaving the work directory is refused.
func TestFilesAreRenderedPerExecutor(t *testing.T) {
	data := t.TempDir()
	d := newDriver(t, data, nil, 0)
	img := processtest.Image(t)
	s := processtest.DemoSpec("files", img, "raw")
	s.Files = map[string]string{"etc/server.conf": "listen {{.IP}}@{{.Port}} ({{.Addr}})\nstate {{.State}}\n"}
	var seen []string
	for range 2 {
		inst, err := d.Start(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Stop(context.Background(), inst)
		body, err := os.ReadFile(filepath.Join(inst.WorkDir, "etc", "server.conf"))
		if err != nil {
			t.Fatal(err)
		}
		port := strings.TrimPrefix(inst.Address, "127.0.0.1:")
		want := "listen 127.0.0.1@" + port + " (" + inst.Address + ")\nstate " + filepath.Join(inst.WorkDir, process.StateDir) + "\n"
		if string(body) != want {
			t.Fatalf("rendered %q, want %q", body, want)
		}
		sum := sha256.Sum256(body)
		if got := inst.Rendered["etc/server.conf"]; got != hex.EncodeToString(sum[:]) {
			t.Fatalf("recorded hash %q, want %x", got, sum)
		}
		if fi, err := os.Stat(filepath.Join(inst.WorkDir, process.StateDir)); err != nil || !fi.IsDir() {
			t.Fatalf("no state directory: %v", err)
		}
		seen = append(seen, string(body))
	}
	if seen[0] == seen[1] {
		t.Fatalf("two executors got the same rendering %q", seen[0])
	}

	over := s
	over.Files = map[string]string{"site/index.html": "<h1>defaced</h1>"}
	if inst, err := d.Start(context.Background(), over); err == nil || !strings.Contains(err.Error(), "the image has a file of that name") {
		if inst != nil {
			d.Stop(context.Background(), inst)
		}
		t.Fatalf("a file over the image's: %v", err)
	}
	for _, name := range []string{"../out.conf", "/etc/passwd", "a/../../b", "state/x", process.OutputFile, process.ManifestName, ""} {
		bad := s
		bad.Files = map[string]string{name: "x"}
		if err := d.ValidateSpec(bad); err == nil {
			t.Errorf("files[%q] accepted", name)
		}
	}
}
