package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/api"
)

// TestMain lets the test binary stand in for the proteus binary when the agent's executors
// run {{.Self}} demo-server ... in the in-process agent tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "demo-server" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if binPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// waitFile polls for a file the agent writes once it serves; the bound guards against a hang.
func waitFile(t *testing.T, path string, exited <-chan struct{}, log func() string) string {
	t.Helper()
	for range 1500 {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-exited:
			t.Fatalf("agent exited before writing %s:\n%s", path, log())
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("agent never wrote %s:\n%s", path, log())
	return ""
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The embedded default config runs a working demo with nothing installed; status, rotate and
// quarantine work against it through the token in the data dir.
func TestAgentDefaultConfigEndToEnd(t *testing.T) {
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prev := agentContext
	agentContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { agentContext = prev })

	var stderr syncBuffer
	exited := make(chan struct{})
	var code int
	go func() {
		code = run([]string{"--data-dir", data, "agent", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"}, io.Discard, &stderr)
		close(exited)
	}()
	gw := waitFile(t, filepath.Join(data, GatewayAddrFile), exited, stderr.String)
	waitFile(t, filepath.Join(data, api.AddrFile), exited, stderr.String)
	st, err := os.Stat(filepath.Join(data, api.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	for _, p := range []string{"/", "/api/items", "/healthz"} {
		if code, body := httpGet(t, "http://"+gw+p); code != 200 || body == "" {
			t.Fatalf("GET %s through the gateway: %d %q", p, code, body)
		}
	}

	cli := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		c := run(append([]string{"--data-dir", data}, args...), &out, &errb)
		return c, out.String() + errb.String()
	}
	c, out := cli("status", "-o", "json")
	if c != 0 {
		t.Fatalf("status: %d %s", c, out)
	}
	var status struct {
		Executors []struct {
			ID, Variant, Address, State string
			Age                         float64 `json:"age_s"`
			Vote                        *struct {
				Trust    float64
				Requests int
			}
		} `json:"executors"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil || len(status.Executors) != 3 {
		t.Fatalf("status json %q: %v", out, err)
	}
	variants := map[string]bool{}
	for _, x := range status.Executors {
		variants[x.Variant] = true
		if x.State != "healthy" || x.ID == "" || x.Address == "" {
			t.Errorf("executor %+v", x)
		}
		// Each voted on the three GETs above and agreed.
		if x.Vote == nil || x.Vote.Requests < 1 || x.Vote.Trust != 1 {
			t.Errorf("executor %s: the gateway's view %+v, want trust 1 over at least one request", x.ID, x.Vote)
		}
	}
	if len(variants) != 3 {
		t.Errorf("default set not heterogeneous: %v", variants)
	}
	for _, k := range []string{`"cstar": 1`, `"rotation_rate"`, `"attack_intensity": 0.5`, `"defense_success"`} {
		if !strings.Contains(out, k) {
			t.Errorf("status json lacks %s: %s", k, out)
		}
	}
	if c, out := cli("status"); c != 0 || !strings.Contains(out, "VARIANT") || !strings.Contains(out, "TRUST") || !strings.Contains(out, "c* = 1") ||
		!strings.Contains(out, "defense success β_y = 0.0000: the game model's odds") ||
		!strings.Contains(out, "tanh(c*·a/(2π)) with c* = 1, a = 0.0000 reconfigurations/s measured, attack intensity π = 0.50") ||
		!strings.Contains(out, "0 because no executor was rebuilt") {
		t.Errorf("status table: %d %s", c, out)
	}
	first := status.Executors[0].ID
	if c, out := cli("rotate", first); c != 0 || !strings.Contains(out, "rotated "+first) {
		t.Fatalf("rotate: %d %s", c, out)
	}
	if c, out := cli("status", "--attack-intensity", "0.25"); c != 0 || !strings.Contains(out, "π = 0.25") || strings.Contains(out, "β_y = 0.0000") {
		t.Errorf("status after a rotation, π = 0.25: %d %s", c, out)
	}
	if c, out := cli("rotate", first); c != 1 || !strings.Contains(out, "404") {
		t.Errorf("rotate a retired instance: %d %s", c, out)
	}
	if c, out := cli("rotate", "--all"); c != 0 {
		t.Fatalf("rotate --all: %d %s", c, out)
	}
	_, out = cli("status", "-o", "json")
	_ = json.Unmarshal([]byte(out), &status)
	victim := status.Executors[0].ID
	if c, out := cli("quarantine", victim); c != 0 {
		t.Fatalf("quarantine: %d %s", c, out)
	}
	_, out = cli("status", "-o", "json")
	if !strings.Contains(out, `"quarantined"`) {
		t.Errorf("status after quarantine: %s", out)
	}
	if code, _ := httpGet(t, "http://"+gw+"/about.html"); code != 200 {
		t.Errorf("gateway after quarantine: %d", code)
	}

	cancel()
	<-exited
	if code != 0 {
		t.Fatalf("agent exit %d:\n%s", code, stderr.String())
	}
	runDir, _ := os.ReadDir(filepath.Join(data, "executor", "process", "run"))
	if len(runDir) != 0 {
		t.Errorf("records left after shutdown: %v", runDir)
	}
	work, _ := os.ReadDir(filepath.Join(data, "executor", "process", "work"))
	if len(work) != 1 || !strings.HasPrefix(victim, work[0].Name()) {
		t.Errorf("work dirs after shutdown %v, want only the quarantined %s", work, victim)
	}
	if _, err := os.Stat(filepath.Join(data, api.TokenFile)); !os.IsNotExist(err) {
		t.Errorf("token left after shutdown: %v", err)
	}
}

func TestAgentRefusesBadConfigBeforeStarting(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"bad cron value", "version: 1\npool:\n  rotation: {cron: \"61 * * * *\"}\n  variants: [{name: a, image: /img, command: [x]}]\n", "pool.rotation.cron"},
		{"unknown field", "version: 1\npool:\n  rotations: {}\n", "unknown field"},
		{"bad template", "version: 1\npool:\n  variants: [{name: a, image: builtin:demo, command: [\"{{.Nope\"]}]\n", "pool.variants"},
		{"unknown driver", "version: 1\npool:\n  variants: [{name: a, driver: vmware, image: x, command: [x]}]\n", "pool.variants[0].driver"},
		{"bad listen", "version: 1\ngateway: {listen: nowhere}\npool:\n  variants: [{name: a, image: /img, command: [x]}]\n", "gateway.listen"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "agent.yaml")
			if err := os.WriteFile(cfg, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "data")
			var out, errb bytes.Buffer
			code := run([]string{"--data-dir", data, "agent", "-c", cfg, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"}, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errb.String(), c.want)
			}
			if _, err := os.Stat(filepath.Join(data, "executor", "process", "work")); err == nil {
				if ents, _ := os.ReadDir(filepath.Join(data, "executor", "process", "work")); len(ents) > 0 {
					t.Fatalf("executors started despite a bad config: %v", ents)
				}
			}
		})
	}
}

func TestControlCommandUsage(t *testing.T) {
	data := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rotate"}, 2, "exactly one of --all or an executor ID"},
		{[]string{"rotate", "--all", "x"}, 2, "exactly one"},
		{[]string{"quarantine"}, 2, "exactly one executor ID"},
		{[]string{"status", "-o", "yaml"}, 2, "table or json"},
		{[]string{"status"}, 1, "no agent token"},
		{[]string{"rotate", "--all"}, 1, "no agent token"},
		{[]string{"demo-server", "--impl", "iis", "--listen", "127.0.0.1:0", "--root", data}, 2, "unknown implementation"},
		{[]string{"demo-server"}, 2, "--listen and --root"},
		{[]string{"validate"}, 2, "accepts 1 arg(s), received 0"},
		{[]string{"nosuch"}, 2, `unknown command "nosuch" for "proteus"`},
		{[]string{"enclave", "nosuch"}, 2, `unknown command "nosuch" for "proteus enclave"`},
		{[]string{"status", "extra"}, 2, `unknown command "extra"`},
		{[]string{"status", "--bogus"}, 2, "unknown flag"},
		{[]string{"block"}, 2, "exactly one address"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(append([]string{"--data-dir", data}, c.args...), &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d %q; want %d %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// proteusBinary builds the real binary once per test run.
func proteusBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "proteus-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "proteus")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

func recordPIDs(t *testing.T, data string) []int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(data, "executor", "process", "run", "*.json"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			PID int `json:"pid"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, rec.PID)
	}
	return pids
}

func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return b[i+2] != 'Z'
}

type agentProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

func startAgentBinary(t *testing.T, bin, data string) *agentProc {
	t.Helper()
	os.Remove(filepath.Join(data, GatewayAddrFile))
	a := &agentProc{stderr: &syncBuffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(bin, "--data-dir", data, "agent", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0")
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() { _ = a.cmd.Process.Kill(); <-a.exited })
	return a
}

// The real binary: serve, get killed with SIGKILL (executors survive it), and the next start
// finds and kills what the dead agent left before starting fresh executors; SIGTERM then
// stops everything.
func TestBinaryCleansUpAfterKill9(t *testing.T) {
	bin := proteusBinary(t)
	data := t.TempDir()
	a := startAgentBinary(t, bin, data)
	gw := waitFile(t, filepath.Join(data, GatewayAddrFile), a.exited, a.stderr.String)
	if code, body := httpGet(t, "http://"+gw+"/"); code != 200 || !strings.Contains(body, "Proteus demo shop") {
		t.Fatalf("gateway: %d %q", code, body)
	}
	leftover := recordPIDs(t, data)
	if len(leftover) != 3 {
		t.Fatalf("records: %v", leftover)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	for _, pid := range leftover {
		if !running(pid) {
			t.Fatalf("executor %d died with the agent; the test would prove nothing", pid)
		}
	}

	b := startAgentBinary(t, bin, data)
	gw = waitFile(t, filepath.Join(data, GatewayAddrFile), b.exited, b.stderr.String)
	for _, pid := range leftover {
		if running(pid) {
			t.Errorf("leftover executor %d still running after restart", pid)
		}
	}
	if !strings.Contains(b.stderr.String(), "stopping leftover executor") {
		t.Errorf("no leftover cleanup logged:\n%s", b.stderr.String())
	}
	if code, _ := httpGet(t, "http://"+gw+"/healthz"); code != 200 {
		t.Fatalf("gateway after restart: %d", code)
	}
	fresh := recordPIDs(t, data)
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	if b.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit %d:\n%s", b.cmd.ProcessState.ExitCode(), b.stderr.String())
	}
	for _, pid := range fresh {
		if running(pid) {
			t.Errorf("executor %d outlived a clean shutdown", pid)
		}
	}
	if left := recordPIDs(t, data); len(left) != 0 {
		t.Errorf("records after clean shutdown: %v", left)
	}
}

// With --vote (the default) the agent serves through the mimic voting gateway over the pool's
// executors, with --proxy through the round-robin proxy; both keep answering while every
// executor is rotated.
func TestAgentVotingFrontend(t *testing.T) {
	for _, c := range []struct{ flag, log string }{{"--vote", "voting=true"}, {"--proxy", "frontend=proxy"}} {
		t.Run(c.flag, func(t *testing.T) {
			a := startAgent(t, "", c.flag, "--listen", "127.0.0.1:0")
			_, want := httpGet(t, "http://"+a.gw+"/api/items")
			rotated := make(chan int)
			go func() {
				code, _ := a.cli("rotate", "--all")
				rotated <- code
			}()
			for n := 0; ; n++ {
				select {
				case code := <-rotated:
					if code != 0 {
						t.Fatalf("rotate --all: exit %d", code)
					}
					a.stop(t)
					if !strings.Contains(a.stderr.String(), c.log) {
						t.Fatalf("agent log lacks %q:\n%s", c.log, a.stderr.String())
					}
					return
				default:
				}
				if code, body := httpGet(t, "http://"+a.gw+"/api/items"); code != 200 || body != want {
					t.Fatalf("request %d during rotation: %d %q", n, code, body)
				}
			}
		})
	}
}
