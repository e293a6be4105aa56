package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/config"
)

// With api.socket the agent serves its API on DATA-DIR/api.sock (0600) and the CLI uses it
// without an address; the data directory and what the agent keeps in it are not readable by
// other users.
func TestAgentUnixSocketAndPrivateDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d") // short: a unix socket path has a limit
	cfgFile := filepath.Join(dir, "agent.yaml")
	yaml := strings.Replace(string(config.DefaultYAML()), "api:\n  listen: 127.0.0.1:9090", "api:\n  listen: 127.0.0.1:0\n  socket: true", 1)
	if !strings.Contains(yaml, "socket: true") {
		t.Fatal("the default config's api section moved")
	}
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prev := agentContext
	agentContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { agentContext = prev })
	var stderr syncBuffer
	exited := make(chan struct{})
	go func() {
		run([]string{"--data-dir", data, "agent", "-c", cfgFile, "--listen", "127.0.0.1:0"}, io.Discard, &stderr)
		close(exited)
	}()
	defer func() { cancel(); <-exited }()
	waitFile(t, filepath.Join(data, api.AddrFile), exited, stderr.String)

	sock, err := os.Stat(filepath.Join(data, api.SocketFile))
	if err != nil || sock.Mode()&os.ModeSocket == 0 || sock.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want a 0600 socket", sock, err)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("data dir %v %v: readable by others", fi, err)
	}
	ents, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s is %v: world-accessible", e.Name(), fi.Mode())
		}
	}
	// The CLI finds the socket: with the TCP address file gone, status still answers.
	if err := os.Remove(filepath.Join(data, api.AddrFile)); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--data-dir", data, "status"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "VARIANT") {
		t.Fatalf("status over the socket: %d %s %s", code, out.String(), errb.String())
	}
	cancel()
	<-exited
	if _, err := os.Stat(filepath.Join(data, api.SocketFile)); !os.IsNotExist(err) {
		t.Errorf("the socket outlived the agent: %v", err)
	}
}
