package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/enclave"
)

// The agent's enclave node answers `proteus enclave` commands through the agent's API, behind
// its token: with the node's own control file pointing nowhere, status and publish still work,
// and the API refuses the node's routes without the token or with a wrong one.
func TestEnclaveCommandsGoThroughTheAgentAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent with its executors and an enclave node")
	}
	dir := t.TempDir()
	code, out, errs := runCLI(t, "--data-dir", dir, "enclave", "id")
	if code != 0 {
		t.Fatalf("enclave id: %s", errs)
	}
	self := strings.TrimSpace(out)
	path := engineAgentConfig(t, filepath.Join(dir, "eve.json"))
	if err := os.WriteFile(filepath.Join(dir, "eve.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw) + fmt.Sprintf("enclave:\n  enabled: true\n  name: lab\n  allowlist: [%s]\n  listen: [/ip4/127.0.0.1/tcp/0]\n  exposure: %s\n", self, linuxExposure)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, dir, "-c", path, "--listen", "127.0.0.1:0")
	waitFile(t, filepath.Join(dir, enclave.ControlFile), a.exited, a.stderr.String)

	// The node's own control API is made unreachable: only the agent's API can answer now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ctl, _ := json.Marshal(enclave.ControlInfo{Addr: dead, Token: "not-the-token"})
	if err := os.WriteFile(filepath.Join(dir, enclave.ControlFile), ctl, 0o600); err != nil {
		t.Fatal(err)
	}

	code, got := a.cli("enclave", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("enclave status through the agent's API: exit %d: %s", code, got)
	}
	var st enclave.Status
	if err := json.Unmarshal([]byte(got), &st); err != nil || st.Peer != self {
		t.Fatalf("enclave status %q (%v), want the node %s", got, err, self)
	}
	code, got = a.cli("enclave", "publish", "--target", "203.0.113.50", "--ttl", "1m", "--action", "watch")
	if code != 0 || !strings.Contains(got, "203.0.113.50") {
		t.Fatalf("enclave publish through the agent's API: exit %d: %s", code, got)
	}

	addr, err := os.ReadFile(filepath.Join(dir, api.AddrFile))
	if err != nil {
		t.Fatal(err)
	}
	requireUnauthorized(t, "http://"+strings.TrimSpace(string(addr))+api.EnclaveNodePrefix+"/status")

	// With the agent gone (it removes the control file as it stops), the command says so.
	a.stop(t)
	code, got = a.cli("enclave", "status")
	if code == 0 || !strings.Contains(got, "no running node for data dir "+dir) {
		t.Fatalf("enclave status with no agent: exit %d: %s", code, got)
	}
}
