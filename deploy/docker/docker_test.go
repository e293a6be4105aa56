// Package docker_test builds the agent's image from deploy/docker/Dockerfile.
package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Dockerfile builds with the engine (FROM scratch: nothing pulled) around a static
// binary built on the host, and the image runs: `docker run IMAGE version` names the version
// the binary was stamped with, and the agent runs in it with three healthy executors.
func TestDockerfileBuildsARunnableImage(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: the image build is not tested here")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker Engine answers (docker info: %v): the image build is not tested here\n%s", err, out)
	}
	ctx := t.TempDir()
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ctx, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	const version = "v0.0.0-dockertest"
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", filepath.Join(ctx, "proteus"), "../../cmd/proteus")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tag := "proteus-dockerfile-test:" + strings.ReplaceAll(time.Now().UTC().Format("20060102T150405.000000000"), ".", "")
	if out, err := exec.Command("docker", "build", "-t", tag, ctx).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", tag, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "proteus "+version) {
		t.Fatalf("docker run %s version: %v\n%s", tag, err, out)
	}
	// The agent runs in it (unprivileged, its data dir in /data) and the CLI inside the
	// container reaches its API.
	name := strings.ReplaceAll(strings.ReplaceAll(tag, ":", "-"), ".", "-")
	if out, err := exec.Command("docker", "run", "-d", "--name", name, "--network", "none", tag, "agent", "--listen", "0.0.0.0:8080").CombinedOutput(); err != nil {
		t.Fatalf("docker run agent: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	for n := 0; ; n++ {
		out, err := exec.Command("docker", "exec", name, "/proteus", "status").CombinedOutput()
		if err == nil && strings.Count(string(out), "healthy") == 3 {
			break
		}
		if n == 600 { // guards a hang only
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("status in the container: %v\n%s\nlogs:\n%s", err, out, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err = exec.Command("docker", "image", "inspect", "-f", "{{.Config.User}} {{.Config.Env}}", tag).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "65534:65534") || !strings.Contains(string(out), "PROTEUS_DATA_DIR=/data") {
		t.Fatalf("image config: %v %s", err, out)
	}
}
