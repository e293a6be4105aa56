package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/docker"
)

func TestDockerImageUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad tag", []string{"docker-image", "--tag", "Not A Tag"}, 2, "--tag"},
		{"tag with digest", []string{"docker-image", "--tag", "x@sha256:" + strings.Repeat("0", 64)}, 2, "--tag"},
		{"dynamic binary", []string{"docker-image", "--binary", "/bin/sh", "--docker-host", "unix:///nonexistent.sock"}, 1, "CGO_ENABLED=0"},
		{"args", []string{"docker-image", "extra"}, 2, "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "dynamic binary" {
				if out, _ := exec.Command("file", "-L", "/bin/sh").Output(); !bytes.Contains(out, []byte("dynamically")) {
					t.Skip("/bin/sh is not dynamically linked here")
				}
			}
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not mention %q", errb.String(), tc.want)
			}
		})
	}
}

// TestDockerImageServesDemo builds a static proteus, makes the demo image with
// `proteus docker-image`, runs it with the docker driver and fetches the site.
func TestDockerImageServesDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a static proteus binary; skipped with -short")
	}
	sock := "/var/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		sock = h
	}
	if _, err := os.Stat(sock); err != nil {
		t.Skipf("no Docker Engine socket at %s (%v); this test needs a local engine", sock, err)
	}
	bin := filepath.Join(t.TempDir(), "proteus")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	rnd := make([]byte, 6)
	rand.Read(rnd)
	tag := "proteus-test/demo:" + hex.EncodeToString(rnd)
	var out, errb bytes.Buffer
	if code := run([]string{"docker-image", "--tag", tag, "--binary", bin}, &out, &errb); code != 0 {
		t.Fatalf("docker-image exit %d: %s", code, errb.String())
	}
	ref := strings.TrimSpace(out.String())
	pin, err := docker.ParsePin(ref)
	if err != nil || pin.Name != tag {
		t.Fatalf("printed %q: want %s@sha256:<id> (%v)", ref, tag, err)
	}

	d, err := docker.New(docker.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Cleanup(func() {
		d.Client().ImageRemove(context.Background(), pin.Digest, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	ctx := context.Background()
	inst, err := d.Start(ctx, executor.Spec{
		Variant: "demo-fasthttp", Driver: "docker", Image: ref, ContainerPort: 8080,
		Command: []string{"demo-server", "--impl", "fasthttp", "--listen", "{{.Addr}}", "--root", "/site"},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer d.Remove(context.Background(), inst)
	client := &http.Client{Timeout: 2 * time.Second}
	var body string
	for range 500 {
		resp, err := client.Get("http://" + inst.Address + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	want, err := os.ReadFile("../../demo/site/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if body != string(want) {
		t.Fatalf("GET / from the demo container = %d bytes, want the site's index.html (%d bytes)", len(body), len(want))
	}
}
