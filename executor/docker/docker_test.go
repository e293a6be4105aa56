package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/docker/dockertest"
)

// testImageRepo is the test server's image; its tag is the binary's SHA-256 (the first 16
// hex digits), so two test runs sharing an engine (CI and a developer, two worktrees) never
// move each other's tag: a moved tag is a tampered pin to the driver.
const testImageRepo = "proteus-test/httpserver"

var hex64 = strings.Repeat("ab", 32)

// ---- tests that need no engine ----

func TestParsePin(t *testing.T) {
	tests := []struct {
		in      string
		want    Pin
		wantErr string
	}{
		{in: "sha256:" + hex64, want: Pin{Digest: "sha256:" + hex64}},
		{in: "proteus-demo@sha256:" + hex64, want: Pin{Name: "proteus-demo", Digest: "sha256:" + hex64}},
		{in: "proteus-demo:v1@sha256:" + hex64, want: Pin{Name: "proteus-demo:v1", Digest: "sha256:" + hex64}},
		{in: "registry.local:5000/team/app:1.2@sha256:" + hex64, want: Pin{Name: "registry.local:5000/team/app:1.2", Digest: "sha256:" + hex64}},
		{in: "", wantErr: "empty image reference"},
		{in: "nginx", wantErr: "not pinned by digest"},
		{in: "nginx:1.27", wantErr: "not pinned by digest"},
		{in: "sha256:abc", wantErr: "not pinned by digest"},
		{in: "nginx@sha256:" + strings.ToUpper(hex64), wantErr: "not sha256:<64 lowercase hex>"},
		{in: "nginx@sha512:" + hex64 + hex64, wantErr: "not sha256:<64 lowercase hex>"},
		{in: "nginx@sha256:" + hex64[:62], wantErr: "not sha256:<64 lowercase hex>"},
		{in: "Bad Name@sha256:" + hex64, wantErr: "name"},
		{in: "@sha256:" + hex64, wantErr: "name"},
		{in: "a@sha256:" + hex64 + "@sha256:" + hex64, wantErr: "digest of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePin(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePin(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePin(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParsePin(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestHasRepoDigest(t *testing.T) {
	d1, d2 := "sha256:"+hex64, "sha256:"+strings.Repeat("cd", 32)
	tests := []struct {
		pin   string
		repo  []string
		match bool
	}{
		{"nginx@" + d1, []string{"nginx@" + d1}, true},
		{"nginx:1.27@" + d1, []string{"nginx@" + d1}, true},
		{"docker.io/library/nginx@" + d1, []string{"nginx@" + d1}, true},
		{"nginx@" + d1, []string{"docker.io/library/nginx@" + d1}, true},
		{"nginx@" + d1, []string{"nginx@" + d2}, false},
		{"nginx@" + d1, []string{"evil/nginx@" + d1}, false},
		{"nginx@" + d1, []string{"not a ref", ""}, false},
		{"nginx@" + d1, nil, false},
	}
	for _, tt := range tests {
		pin, err := ParsePin(tt.pin)
		if err != nil {
			t.Fatal(err)
		}
		if got := hasRepoDigest(tt.repo, pin); got != tt.match {
			t.Errorf("hasRepoDigest(%q, %s) = %v, want %v", tt.repo, tt.pin, got, tt.match)
		}
	}
}

func FuzzParsePin(f *testing.F) {
	for _, s := range []string{"sha256:" + hex64, "a@sha256:" + hex64, "a:b@sha256:" + hex64, "nginx", "@", "a@b@sha256:" + hex64} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePin(s)
		if err != nil {
			return
		}
		if !digestRE.MatchString(p.Digest) {
			t.Fatalf("accepted %q with digest %q", s, p.Digest)
		}
		if p.String() != s {
			t.Fatalf("round trip of %q gave %q", s, p.String())
		}
		if again, err := ParsePin(p.String()); err != nil || again != p {
			t.Fatalf("reparse of %q: %+v, %v", p.String(), again, err)
		}
		if strings.Contains(p.Name, "@") {
			t.Fatalf("accepted %q with a digest inside the name %q", s, p.Name)
		}
	})
}

func TestValidateSpec(t *testing.T) {
	ok := executor.Spec{Variant: "go", Driver: "docker", Image: "app@sha256:" + hex64, ContainerPort: 8080}
	tests := []struct {
		name    string
		mod     func(*executor.Spec)
		wantErr string
	}{
		{name: "ok", mod: func(*executor.Spec) {}},
		{name: "image id", mod: func(s *executor.Spec) { s.Image = "sha256:" + hex64 }},
		{name: "tag only", mod: func(s *executor.Spec) { s.Image = "app:latest" }, wantErr: "not pinned by digest"},
		{name: "no variant", mod: func(s *executor.Spec) { s.Variant = "" }, wantErr: "variant name is empty"},
		{name: "no port", mod: func(s *executor.Spec) { s.ContainerPort = 0 }, wantErr: "container_port 0"},
		{name: "port too big", mod: func(s *executor.Spec) { s.ContainerPort = 70000 }, wantErr: "container_port 70000"},
		{name: "health path", mod: func(s *executor.Spec) { s.HealthPath = "healthz" }, wantErr: "health_path"},
		{name: "bad template", mod: func(s *executor.Spec) { s.Command = []string{"{{.Port"} }, wantErr: "command[0]"},
		{name: "bad env", mod: func(s *executor.Spec) { s.Env = map[string]string{"A=B": "c"} }, wantErr: "env name"},
	}
	var d Driver
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mod(&s)
			err := d.ValidateSpec(s)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateSpec: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("ValidateSpec error = %v, want ErrInvalidSpec containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "executor/docker: validate ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestRenderCommand(t *testing.T) {
	tests := []struct {
		cmd     []string
		want    []string
		wantErr bool
	}{
		{cmd: nil, want: []string{}},
		{cmd: []string{"-addr", "{{.Addr}}", "-port={{.Port}}", "{{.Dir}}/x"}, want: []string{"-addr", "0.0.0.0:8080", "-port=8080", "/tmp/x"}},
		{cmd: []string{"{{.Nope}}"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := renderCommand(executor.Spec{Command: tt.cmd, ContainerPort: 8080})
		if (err != nil) != tt.wantErr {
			t.Fatalf("renderCommand(%q) error = %v, wantErr %v", tt.cmd, err, tt.wantErr)
		}
		if err == nil && !slices.Equal(got, tt.want) {
			t.Fatalf("renderCommand(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestContainerNameAndAgentID(t *testing.T) {
	tests := []struct{ variant, prefix string }{
		{"go-nethttp", "proteus-go-nethttp-"},
		{"nginx 1.27/alpine", "proteus-nginx-1.27-alpine-"},
		{"///", "proteus-x-"},
	}
	for _, tt := range tests {
		a, b := containerName(tt.variant), containerName(tt.variant)
		if !strings.HasPrefix(a, tt.prefix) || a == b {
			t.Fatalf("containerName(%q) = %q, %q: want distinct names starting %q", tt.variant, a, b, tt.prefix)
		}
	}
	if AgentID("/var/lib/proteus") == AgentID("/var/lib/proteus2") {
		t.Fatal("different data dirs give the same agent ID")
	}
	if got := AgentID("/var/lib/proteus"); len(got) != 16 || got != AgentID("/var/lib/proteus/") {
		t.Fatalf("AgentID = %q: want 16 hex digits, stable under path cleaning", got)
	}
}

func TestRegistered(t *testing.T) {
	tests := []struct {
		grace, want time.Duration
	}{{0, 5 * time.Second}, {1500 * time.Millisecond, 1500 * time.Millisecond}}
	for _, tt := range tests {
		d, err := executor.New("docker", executor.Env{DataDir: t.TempDir(), StopGrace: tt.grace})
		if err != nil {
			t.Fatalf("executor.New(docker): %v", err)
		}
		dd, ok := d.(*Driver)
		if !ok {
			t.Fatalf("executor.New(docker) = %T, want *Driver", d)
		}
		if dd.opts.StopGrace != tt.want {
			t.Errorf("Env.StopGrace %v gave a grace of %v, want %v", tt.grace, dd.opts.StopGrace, tt.want)
		}
		dd.Close()
	}
}

func TestUnreachableEngine(t *testing.T) {
	const host = "unix:///nonexistent/proteus-test-docker.sock"
	d, err := New(Options{Host: host, DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	spec := executor.Spec{Variant: "v", Image: "sha256:" + hex64, ContainerPort: 8080}
	want := "executor/docker: engine unreachable at " + host + ": "
	calls := []struct {
		name string
		call func() error
	}{
		{"start", func() error { _, err := d.Start(ctx, spec); return err }},
		{"stop", func() error { return d.Stop(ctx, &executor.Instance{ID: "x", Handle: "x"}) }},
		{"quarantine", func() error { return d.Quarantine(ctx, &executor.Instance{ID: "x", Handle: "x"}) }},
		{"list", func() error { _, err := d.List(ctx); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, ErrEngineUnreachable) || !strings.HasPrefix(err.Error(), want+c.name) {
				t.Fatalf("%s error = %v, want ErrEngineUnreachable starting %q", c.name, err, want+c.name)
			}
		})
	}
}

// TestHungEngine points the driver at a socket that accepts connections and never answers:
// every call must come back (bounded by OpTimeout) with ErrEngineUnreachable.
func TestHungEngine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hung.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	var held []net.Conn
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range held {
			c.Close()
		}
	})
	d, err := New(Options{Host: "unix://" + sock, DataDir: t.TempDir(), OpTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = d.List(context.Background())
	if !errors.Is(err, ErrEngineUnreachable) || !strings.Contains(err.Error(), "no answer in time") {
		t.Fatalf("List against a hung engine: %v, want ErrEngineUnreachable (no answer in time)", err)
	}
	_, err = d.Start(context.Background(), executor.Spec{Variant: "v", Image: "sha256:" + hex64, ContainerPort: 80})
	if !errors.Is(err, ErrEngineUnreachable) {
		t.Fatalf("Start against a hung engine: %v, want ErrEngineUnreachable", err)
	}
}

func TestBuildImageRefusesDynamicBinary(t *testing.T) {
	dyn := ""
	for _, p := range []string{"/bin/ls", "/usr/bin/env", "/bin/sh"} {
		if checkStatic(p) != nil {
			dyn = p
			break
		}
	}
	if dyn == "" {
		t.Skip("no dynamically linked binary found in /bin or /usr/bin to test with")
	}
	_, err := BuildScratchImage(context.Background(), nil, dyn, "proteus-test/dyn:test")
	if err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("BuildScratchImage(%s) error = %v, want a dynamically-linked refusal", dyn, err)
	}
}

// ---- tests against the real Docker Engine ----

var (
	fixtureOnce sync.Once
	fixtureCli  *client.Client
	fixtureBin  string // static test server binary
	fixturePin  string // testImageRepo:<binary hash>@sha256:<id>
	fixtureErr  error
	fixtureSkip string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if fixtureBin != "" {
		os.RemoveAll(filepath.Dir(fixtureBin))
	}
	os.Exit(code)
}

// engineHost is where the tests expect an engine: $DOCKER_HOST or the default socket.
func engineHost() (host, socket string) { return dockertest.Host() }

// fixture builds the static test server and its scratch image once per test binary.
func fixture(t testing.TB) (*client.Client, string) {
	t.Helper()
	fixtureOnce.Do(func() {
		host, _ := engineHost()
		if fixtureSkip = dockertest.Unavailable(); fixtureSkip != "" {
			return
		}
		cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureCli = cli
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		dir, err := os.MkdirTemp("", "proteus-docker-test-")
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureBin = filepath.Join(dir, "httpserver")
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", fixtureBin, "./testdata/httpserver")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = fmt.Errorf("build test server: %v\n%s", err, out)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		bin, err := os.ReadFile(fixtureBin)
		if err != nil {
			fixtureErr = err
			return
		}
		sum := sha256.Sum256(bin)
		fixturePin, fixtureErr = BuildScratchImage(ctx, cli, fixtureBin, testImageRepo+":"+hex.EncodeToString(sum[:8]))
	})
	if fixtureSkip != "" {
		t.Skip(fixtureSkip)
	}
	if fixtureErr != nil {
		t.Fatalf("test fixture: %v", fixtureErr)
	}
	return fixtureCli, fixturePin
}

// newTestDriver returns a driver with its own data dir and removes everything it owns when
// the test ends.
func newTestDriver(t testing.TB, dataDir string, b *bus.Bus) *Driver {
	t.Helper()
	cli, _ := fixture(t)
	d, err := New(Options{DataDir: dataDir, Bus: b, StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		unguardAgentContainers(t, cli, d)
		removeAgentContainers(t, cli, d.agent)
		d.Close()
	})
	return d
}

// unguardAgentContainers removes the firewall rules of d's containers before the cleanup
// removes the containers behind the driver's back.
func unguardAgentContainers(t testing.TB, cli *client.Client, d *Driver) {
	if d.guard == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelAgent+"="+d.agent))})
	if err != nil {
		t.Errorf("cleanup list: %v", err)
		return
	}
	for _, c := range cs {
		d.unguard(&executor.Instance{ID: c.Labels[LabelInstance]})
	}
}

func removeAgentContainers(t testing.TB, cli *client.Client, agent string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer os.RemoveAll(filepath.Join(decoyRoot, agent)) // the containers' decoys, removed behind the driver too
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelAgent+"="+agent))})
	if err != nil {
		t.Errorf("cleanup list: %v", err)
		return
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup remove %s: %v", c.ID, err)
		}
	}
}

func serverSpec(variant, pin string) executor.Spec {
	return executor.Spec{
		Variant:       variant,
		Driver:        "docker",
		Image:         pin,
		Command:       []string{"-addr", "{{.Addr}}", "-variant", variant},
		ContainerPort: 8080,
		HealthPath:    "/healthz",
		Traits:        map[string]string{"lang": "go", "server": "net/http"},
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// waitHealthy polls url until it answers 200, for at most attempts tries.
func waitHealthy(url string, attempts int) error {
	var last error
	for range attempts {
		resp, err := httpClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s not healthy after %d tries: %w", url, attempts, last)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

func TestStartServeStop(t *testing.T) {
	cli, pin := fixture(t)
	d := newTestDriver(t, t.TempDir(), nil)
	ctx := context.Background()

	inst, err := d.Start(ctx, serverSpec("alpha", pin))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !strings.HasPrefix(inst.Address, "127.0.0.1:") || inst.Handle == "" || inst.Driver != "docker" {
		t.Fatalf("instance = %+v: want a 127.0.0.1 address, a handle and driver docker", inst)
	}
	if want := pin[strings.LastIndexByte(pin, '@')+1:]; inst.ImageDigest != want {
		t.Fatalf("ImageDigest = %q, want %q", inst.ImageDigest, want)
	}
	if err := waitHealthy("http://"+inst.Address+"/healthz", 500); err != nil {
		t.Fatal(err)
	}
	if body := get(t, "http://"+inst.Address+"/"); body != "hello from alpha\n" {
		t.Fatalf("GET / = %q, want the variant's greeting", body)
	}

	if err := d.Stop(ctx, inst); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := cli.ContainerInspect(ctx, inst.Handle); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container still there after Stop (inspect error %v)", err)
	}
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatalf("second Stop of a removed container: %v, want nil", err)
	}
	if _, err := httpClient.Get("http://" + inst.Address + "/"); err == nil {
		t.Fatalf("old address %s still answers after Stop", inst.Address)
	}
}

func TestHardening(t *testing.T) {
	cli, pin := fixture(t)
	dataDir := t.TempDir()
	d := newTestDriver(t, dataDir, nil)
	ctx := context.Background()
	inst, err := d.Start(ctx, serverSpec("hardened", pin))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	info, err := cli.ContainerInspect(ctx, inst.Handle)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	hc := info.HostConfig
	checks := []struct {
		what string
		ok   bool
		got  any
	}{
		{"read-only root fs", hc.ReadonlyRootfs, hc.ReadonlyRootfs},
		{"all capabilities dropped", slices.Equal(hc.CapDrop, []string{"ALL"}) && len(hc.CapAdd) == 0, hc.CapDrop},
		{"no-new-privileges", slices.Contains(hc.SecurityOpt, "no-new-privileges:true"), hc.SecurityOpt},
		{"not privileged", !hc.Privileged, hc.Privileged},
		{"tmpfs /tmp", strings.Contains(hc.Tmpfs["/tmp"], "size=64m"), hc.Tmpfs},
		{"memory limit", hc.Memory == 256<<20 && hc.MemorySwap == 256<<20, [2]int64{hc.Memory, hc.MemorySwap}},
		{"pids limit", hc.PidsLimit != nil && *hc.PidsLimit == 256, hc.PidsLimit},
		{"port bound to 127.0.0.1 only", len(hc.PortBindings["8080/tcp"]) == 1 && hc.PortBindings["8080/tcp"][0].HostIP == "127.0.0.1" &&
			"127.0.0.1:"+hc.PortBindings["8080/tcp"][0].HostPort == inst.Address, hc.PortBindings},
		{"owner label", info.Config.Labels[LabelOwner] == OwnerValue, info.Config.Labels},
		{"agent label", info.Config.Labels[LabelAgent] == AgentID(dataDir), info.Config.Labels},
		{"variant label", info.Config.Labels[LabelVariant] == "hardened", info.Config.Labels},
		{"instance label", info.Config.Labels[LabelInstance] == inst.ID, info.Config.Labels},
		{"runs the verified image ID", info.Image == inst.ImageDigest, info.Image},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not applied (got %v)", c.what, c.got)
		}
	}

	// And from the inside: the root fs refuses writes, /tmp takes them, uid is 65534.
	if err := waitHealthy("http://"+inst.Address+"/healthz", 500); err != nil {
		t.Fatal(err)
	}
	var probe struct {
		UID          int    `json:"uid"`
		RootWritable bool   `json:"root_writable"`
		RootErr      string `json:"root_write_error"`
		TmpWritable  bool   `json:"tmp_writable"`
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+inst.Address+"/probe")), &probe); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if probe.RootWritable || !strings.Contains(probe.RootErr, "read-only file system") {
		t.Errorf("root fs writable from inside (probe %+v)", probe)
	}
	if !probe.TmpWritable {
		t.Errorf("/tmp not writable from inside (probe %+v)", probe)
	}
	if probe.UID != 65534 {
		t.Errorf("uid inside = %d, want 65534", probe.UID)
	}
}

func TestQuarantine(t *testing.T) {
	cli, pin := fixture(t)
	dataDir := t.TempDir()
	d := newTestDriver(t, dataDir, nil)
	ctx := context.Background()
	inst, err := d.Start(ctx, serverSpec("suspect", pin))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := waitHealthy("http://"+inst.Address+"/healthz", 500); err != nil {
		t.Fatal(err)
	}
	if err := d.Quarantine(ctx, inst); err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	info, err := cli.ContainerInspect(ctx, inst.Handle)
	if err != nil {
		t.Fatalf("quarantined container is gone: %v", err)
	}
	if info.State == nil || !info.State.Paused {
		t.Errorf("state = %+v, want paused", info.State)
	}
	if n := len(info.NetworkSettings.Networks); n != 0 {
		t.Errorf("still connected to %d networks: %v", n, info.NetworkSettings.Networks)
	}
	if !strings.HasSuffix(info.Name, quarantineSuffix) {
		t.Errorf("name %q lacks %q", info.Name, quarantineSuffix)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "executor", "docker", "quarantine", info.ID+".json")); err != nil {
		t.Errorf("forensic record: %v", err)
	}
	if resp, err := httpClient.Get("http://" + inst.Address + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("quarantined container still answers on %s: %s", inst.Address, resp.Status)
	}
	listed, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(listed) != 0 {
		t.Errorf("List = %v, want the quarantined container left out", listed)
	}
	q, err := d.ListQuarantined(ctx)
	if err != nil || len(q) != 1 || q[0].Handle != inst.Handle {
		t.Fatalf("ListQuarantined = %v, %v: want the one container", q, err)
	}
	// Quarantining twice is harmless; Stop keeps the evidence; Remove destroys it.
	if err := d.Quarantine(ctx, inst); err != nil {
		t.Fatalf("second Quarantine: %v", err)
	}
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatalf("Stop of quarantined container: %v", err)
	}
	if info, err := cli.ContainerInspect(ctx, inst.Handle); err != nil || !info.State.Paused {
		t.Fatalf("Stop did not keep the quarantined container frozen (inspect error %v)", err)
	}
	if err := d.Remove(ctx, inst); err != nil {
		t.Fatalf("Remove of quarantined container: %v", err)
	}
	if _, err := cli.ContainerInspect(ctx, inst.Handle); !cerrdefs.IsNotFound(err) {
		t.Fatalf("quarantined container survives Remove (inspect error %v)", err)
	}
}

func TestTamperedImage(t *testing.T) {
	cli, _ := fixture(t)
	ctx := context.Background()
	tag := fmt.Sprintf("proteus-test/tamper:%d", time.Now().UnixNano())
	good, err := BuildImage(ctx, cli, ScratchImage{Tag: tag, Binary: fixtureBin, Cmd: []string{"-variant", "good"}})
	if err != nil {
		t.Fatalf("build good image: %v", err)
	}
	goodID := good[strings.LastIndexByte(good, '@')+1:]
	// The attacker rebuilds the tag with other content.
	evil, err := BuildImage(ctx, cli, ScratchImage{Tag: tag, Binary: fixtureBin, Cmd: []string{"-variant", "evil"}})
	if err != nil {
		t.Fatalf("build replacement image: %v", err)
	}
	evilID := evil[strings.LastIndexByte(evil, '@')+1:]
	t.Cleanup(func() {
		for _, id := range []string{goodID, evilID} {
			cli.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
	if goodID == evilID {
		t.Fatal("test setup: both builds gave the same image ID")
	}

	b := bus.New()
	events, cancel := b.Subscribe(8, bus.KindPrefix(executor.EventTamperedImage))
	defer cancel()
	d := newTestDriver(t, t.TempDir(), b)

	spec := serverSpec("pinned", good) // pinned to the good ID through a tag that moved
	spec.Command = nil
	_, err = d.Start(ctx, spec)
	if !errors.Is(err, executor.ErrTamperedImage) {
		t.Fatalf("Start with a moved tag: error = %v, want ErrTamperedImage", err)
	}
	if !strings.HasPrefix(err.Error(), "executor/docker: start pinned: ") || !strings.Contains(err.Error(), evilID) {
		t.Fatalf("error %q should name the variant and the image found", err)
	}
	select {
	case ev := <-events:
		if ev.Subject != "pinned" || ev.Attrs["found"] != evilID {
			t.Fatalf("tampered event = %+v", ev)
		}
	default:
		t.Fatal("no executor.tampered-image event on the bus")
	}
	if l, _ := d.List(ctx); len(l) != 0 {
		t.Fatalf("a container was created for a tampered image: %v", l)
	}

	// Pinning the exact image ID still starts the good image, whatever the tag says.
	spec.Image = goodID
	inst, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start by image ID: %v", err)
	}
	if err := waitHealthy("http://"+inst.Address+"/", 500); err != nil {
		t.Fatal(err)
	}
	if body := get(t, "http://"+inst.Address+"/"); body != "hello from good\n" {
		t.Fatalf("GET / = %q, want the good image", body)
	}

	// A tag without a digest never reaches the engine.
	spec.Image = tag
	if _, err := d.Start(ctx, spec); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("Start with a bare tag: %v, want ErrInvalidSpec", err)
	}
	// An unknown ID is an error, not a start.
	spec.Image = "sha256:" + hex64
	if _, err := d.Start(ctx, spec); err == nil || !cerrdefs.IsNotFound(err) {
		t.Fatalf("Start with an unknown image ID: %v, want not found", err)
	}
}

func TestListLeftovers(t *testing.T) {
	_, pin := fixture(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	first := newTestDriver(t, dataDir, nil)
	inst, err := first.Start(ctx, serverSpec("leftover", pin))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}

	// The agent restarts: a new driver on the same data dir finds the container.
	again := newTestDriver(t, dataDir, nil)
	got, err := again.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("List = %d instances, want 1", len(got))
	}
	g := got[0]
	if g.ID != inst.ID || g.Handle != inst.Handle || g.Variant != "leftover" || g.Address != inst.Address ||
		g.ImageDigest != inst.ImageDigest || g.Traits["lang"] != "go" || !g.Started.Equal(inst.Started) {
		t.Fatalf("List gave %+v, want %+v", g, inst)
	}

	// Another agent on the same host (other data dir) neither sees nor stops it.
	other := newTestDriver(t, t.TempDir(), nil)
	if l, err := other.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("other agent's List = %v, %v: want nothing", l, err)
	}
	if err := other.Stop(ctx, g); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("other agent's Stop = %v, want ErrNotOwned", err)
	}
	if err := other.Quarantine(ctx, g); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("other agent's Quarantine = %v, want ErrNotOwned", err)
	}

	// The restarted agent cleans up.
	if err := again.Stop(ctx, g); err != nil {
		t.Fatalf("Stop leftover: %v", err)
	}
	if l, err := again.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("List after cleanup = %v, %v", l, err)
	}
}

// TestConcurrentStarts starts several instances at once (the pool rotates up to c* at a time):
// each gets its own container and its own host port, and all serve.
func TestConcurrentStarts(t *testing.T) {
	_, pin := fixture(t)
	d := newTestDriver(t, t.TempDir(), nil)
	ctx := context.Background()
	const n = 4
	insts := make([]*executor.Instance, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			insts[i], errs[i] = d.Start(ctx, serverSpec(fmt.Sprintf("c%d", i), pin))
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, inst := range insts {
		if errs[i] != nil {
			t.Fatalf("Start %d: %v", i, errs[i])
		}
		if seen[inst.Address] || seen[inst.Handle] {
			t.Fatalf("instance %d reuses an address or container: %+v", i, inst)
		}
		seen[inst.Address], seen[inst.Handle] = true, true
		if err := waitHealthy("http://"+inst.Address+"/healthz", 500); err != nil {
			t.Fatal(err)
		}
		if body := get(t, "http://"+inst.Address+"/"); body != fmt.Sprintf("hello from c%d\n", i) {
			t.Fatalf("instance %d answers %q", i, body)
		}
	}
	listed, err := d.List(ctx)
	if err != nil || len(listed) != n {
		t.Fatalf("List = %d instances, %v; want %d", len(listed), err, n)
	}
	for i, inst := range insts {
		if err := d.Stop(ctx, inst); err != nil {
			t.Fatalf("Stop %d: %v", i, err)
		}
	}
	if listed, err := d.List(ctx); err != nil || len(listed) != 0 {
		t.Fatalf("List after stopping all = %v, %v", listed, err)
	}
}

// TestExitedAndEvents: the exit channel closes when the container dies on its own and when it
// is stopped, not when it is paused; started/quarantined/stopped events reach the bus.
func TestExitedAndEvents(t *testing.T) {
	cli, pin := fixture(t)
	b := bus.New()
	events, cancel := b.Subscribe(32, bus.KindPrefix("executor."))
	defer cancel()
	d := newTestDriver(t, t.TempDir(), b)
	ctx := context.Background()

	crash, err := d.Start(ctx, serverSpec("crash", pin))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	exited := d.Exited(crash)
	if exited == nil {
		t.Fatal("Exited = nil for an instance this driver started")
	}
	if err := cli.ContainerKill(ctx, crash.Handle, "KILL"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	<-exited // the test's own timeout bounds this
	if d.Exited(crash) == nil {
		t.Fatal("Exited forgot the instance before Stop")
	}
	if err := d.Stop(ctx, crash); err != nil {
		t.Fatalf("Stop of a dead container: %v", err)
	}
	if d.Exited(crash) != nil {
		t.Fatal("Exited still tracks a removed instance")
	}

	kept, err := d.Start(ctx, serverSpec("kept", pin))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	keptExit := d.Exited(kept)
	if err := d.Quarantine(ctx, kept); err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	if _, err := cli.ContainerInspect(ctx, kept.Handle); err != nil {
		t.Fatal(err)
	}
	select {
	case <-keptExit:
		t.Fatal("pausing a container reported it as exited")
	default:
	}
	if err := d.Remove(ctx, kept); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	<-keptExit

	if d.Exited(&executor.Instance{ID: "not-mine"}) != nil {
		t.Fatal("Exited of an unknown instance should be nil")
	}

	var kinds []string
	for len(events) > 0 {
		kinds = append(kinds, (<-events).Kind)
	}
	want := []string{executor.EventStarted, executor.EventStopped, executor.EventStarted, executor.EventQuarantined, executor.EventStopped}
	if !slices.Equal(kinds, want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
}
