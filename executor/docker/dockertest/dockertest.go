// Package dockertest finds the Docker Engine that tests run containers on ($DOCKER_HOST,
// else the local socket) and skips a test, with the reason, where there is none. It is for
// tests only and imports the moby client and the standard library, never executor/docker
// (whose own tests use it).
package dockertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// DefaultHost is the engine address without $DOCKER_HOST (executor/docker's DefaultHost).
const DefaultHost = "unix:///var/run/docker.sock"

// Host is where the tests expect an engine, and its socket path for a unix:// host.
func Host() (host, socket string) {
	host = os.Getenv("DOCKER_HOST")
	if host == "" {
		host = DefaultHost
	}
	if s, ok := strings.CutPrefix(host, "unix://"); ok {
		return host, s
	}
	return host, ""
}

// Unavailable says why no engine can be used ("" when one answers a ping).
func Unavailable() string {
	host, sock := Host()
	if sock != "" {
		if _, err := os.Stat(sock); err != nil {
			return fmt.Sprintf("no Docker Engine socket at %s (%v); this test needs a local engine", sock, err)
		}
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Sprintf("no Docker client for %s: %v", host, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Sprintf("the Docker Engine at %s does not answer (%v); this test needs one", host, err)
	}
	return ""
}

// Engine returns a client of the engine, or skips t with the reason there is none. The
// client is closed when t ends.
func Engine(t testing.TB) *client.Client {
	t.Helper()
	if why := Unavailable(); why != "" {
		t.Skip(why)
	}
	host, _ := Host()
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
