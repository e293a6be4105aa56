package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"testing"
)

// vethPair links network namespace a (the host's own when "") to namespace b with a veth
// pair of addresses in 10.<net>.x.y/30 (one /16 per test, so tests do not collide) and
// returns a's address and b's. It skips t when the pair cannot be made; the pair is deleted
// when t ends.
func vethPair(t *testing.T, a, b string, net int) (string, string) {
	t.Helper()
	var r [2]byte
	_, _ = rand.Read(r[:])
	aIf, bIf := "pv"+hex.EncodeToString(r[:])+"a", "pv"+hex.EncodeToString(r[:])+"b"
	q := int(r[1] & 0xfc)
	aIP, bIP := fmt.Sprintf("10.%d.%d.%d", net, r[0], q+1), fmt.Sprintf("10.%d.%d.%d", net, r[0], q+2)
	in := func(ns string, c ...string) []string {
		if ns == "" {
			return c
		}
		return append([]string{"ip", "netns", "exec", ns}, c...)
	}
	cmds := [][]string{{"ip", "link", "add", aIf, "type", "veth", "peer", "name", bIf}}
	if a != "" {
		cmds = append(cmds, []string{"ip", "link", "set", aIf, "netns", a})
	}
	cmds = append(cmds, [][]string{
		{"ip", "link", "set", bIf, "netns", b},
		in(a, "ip", "addr", "add", aIP+"/30", "dev", aIf),
		in(a, "ip", "link", "set", aIf, "up"),
		in(b, "ip", "addr", "add", bIP+"/30", "dev", bIf),
		in(b, "ip", "link", "set", bIf, "up"),
		in(b, "ip", "link", "set", "lo", "up"),
	}...)
	if a != "" {
		cmds = append(cmds, in(a, "ip", "link", "set", "lo", "up"))
	}
	del := in(a, "ip", "link", "del", aIf) // takes its peer with it
	t.Cleanup(func() { _ = exec.Command(del[0], del[1:]...).Run() })
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Skipf("cannot set up the veth pair (%v: %v: %s)", c, err, out)
		}
	}
	return aIP, bIP
}

// netNS creates a network namespace for t (deleted when t ends), with no nftables or links
// but its loopback; it skips t when it cannot.
func netNS(t *testing.T, prefix string) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := prefix + hex.EncodeToString(r[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (ip netns add: %v: %s)", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}
