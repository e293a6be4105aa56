// Package nfttest gives tests and benchmarks outside countermeasure a throwaway network
// namespace to program nftables in, so the host's ruleset is never touched. Tests only.
//
// It imports the standard library only.
package nfttest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"
)

// NetNS creates a network namespace, returns its name and an open fd (for
// countermeasure.NFTablesOptions.NetNS), and deletes it when tb ends. It skips tb when not
// root or when ip or nft is missing.
func NetNS(tb testing.TB) (string, int) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (CAP_NET_ADMIN) to create a network namespace")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("needs %q on PATH (iproute2, nftables packages)", tool)
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "proteus-nt-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Skipf("cannot create a network namespace (ip netns add: %v: %s)", err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return name, int(f.Fd())
}

// List returns `nft list table inet TABLE` inside namespace ns.
func List(tb testing.TB, ns, table string) string {
	tb.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", table).CombinedOutput()
	if err != nil {
		tb.Fatalf("nft list table inet %s: %v: %s", table, err, out)
	}
	return string(out)
}
