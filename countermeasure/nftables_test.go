package countermeasure

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testNetNS creates a throwaway network namespace, returns its name and an open fd, and
// deletes it when the test ends. The host's ruleset is never touched.
func testNetNS(t *testing.T) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nftables tests need root (CAP_NET_ADMIN) to create a network namespace")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("nftables tests need %q on PATH (iproute2, nftables packages)", tool)
		}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "proteus-test-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (ip netns add: %v: %s)", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return name, int(f.Fd())
}

func nftList(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", NFTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table inet %s: %v: %s", NFTable, err, out)
	}
	return string(out)
}

// setLine returns the elements line of set name in an `nft list` output ("" if empty).
func setElements(listing, name string) string {
	i := strings.Index(listing, "set "+name+" {")
	if i < 0 {
		return "<no set " + name + ">"
	}
	rest := listing[i:]
	rest = rest[:strings.Index(rest, "}")]
	j := strings.Index(rest, "elements = {")
	if j < 0 {
		return ""
	}
	return rest[j:]
}

func TestNFTablesInNetNS(t *testing.T) {
	ns, fd := testNetNS(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	n, err := NewNFTables(NFTablesOptions{NetNS: fd, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	listing := nftList(t, ns)
	for _, want := range []string{"table inet proteus", "set blocked4", "set blocked6", "set blocked_ports",
		"flags interval,timeout", "hook input priority filter - 10", "hook forward", "ip saddr @blocked4 drop",
		"ip6 saddr @blocked6 drop", "tcp dport @blocked_ports drop", "udp dport @blocked_ports drop"} {
		if !strings.Contains(listing, want) {
			t.Errorf("fresh table lacks %q:\n%s", want, listing)
		}
	}
	if e := setElements(listing, NFSet4); e != "" {
		t.Fatalf("fresh blocked4 not empty: %s", e)
	}

	ip := Action{ID: "a1", Actuator: NFTablesID, Kind: KindBlock, Target: AddrTarget(netip.MustParseAddr("203.0.113.7")), Expires: now.Add(time.Hour)}
	cidr := Action{ID: "a2", Actuator: NFTablesID, Kind: KindBlock, Target: PrefixTarget(netip.MustParsePrefix("198.51.100.0/24")), Expires: now.Add(2 * time.Hour)}
	inner := Action{ID: "a3", Actuator: NFTablesID, Kind: KindBlock, Target: PrefixTarget(netip.MustParsePrefix("198.51.100.128/25")), Expires: now.Add(30 * time.Minute)}
	v6 := Action{ID: "a4", Actuator: NFTablesID, Kind: KindBlock, Target: PrefixTarget(netip.MustParsePrefix("2001:db8:1::/48")), Expires: now.Add(time.Hour)}
	port := Action{ID: "a5", Actuator: NFTablesID, Kind: KindBlock, Target: PortTarget(2222), Expires: now.Add(time.Hour)}
	for _, a := range []Action{ip, cidr, inner, v6, port} {
		if err := n.Apply(ctx, a); err != nil {
			t.Fatalf("apply %s: %v", a.ID, err)
		}
	}
	listing = nftList(t, ns)
	e4 := setElements(listing, NFSet4)
	for _, want := range []string{"203.0.113.7 timeout 1h", "198.51.100.0/24 timeout 2h"} {
		if !strings.Contains(e4, want) {
			t.Errorf("blocked4 lacks %q: %s", want, e4)
		}
	}
	if strings.Contains(e4, "198.51.100.128") {
		t.Errorf("overlapping /25 not merged into the /24: %s", e4)
	}
	if e6 := setElements(listing, NFSet6); !strings.Contains(e6, "2001:db8:1::/48 timeout 1h") {
		t.Errorf("blocked6: %s", e6)
	}
	if ep := setElements(listing, NFSetPorts); !strings.Contains(ep, "2222 timeout 1h") {
		t.Errorf("blocked_ports: %s", ep)
	}

	// Reverting the /24 leaves the /25 another action still wants.
	if err := n.Revert(ctx, cidr); err != nil {
		t.Fatal(err)
	}
	e4 = setElements(nftList(t, ns), NFSet4)
	if strings.Contains(e4, "198.51.100.0/24") || !strings.Contains(e4, "198.51.100.128/25") {
		t.Errorf("after reverting the /24: %s", e4)
	}
	for _, a := range []Action{ip, inner, v6, port, port} { // reverting twice is fine
		if err := n.Revert(ctx, a); err != nil {
			t.Fatalf("revert %s: %v", a.ID, err)
		}
	}
	listing = nftList(t, ns)
	for _, s := range []string{NFSet4, NFSet6, NFSetPorts} {
		if e := setElements(listing, s); e != "" {
			t.Errorf("%s not empty after reverts: %s", s, e)
		}
	}

	// A new range alone is added without rewriting the set; an adjacent one is merged with its
	// neighbour (the set rewritten), and reverting it splits them again.
	x := Action{ID: "b1", Actuator: NFTablesID, Kind: KindBlock, Target: PrefixTarget(netip.MustParsePrefix("192.0.2.0/24")), Expires: now.Add(time.Hour)}
	y := Action{ID: "b2", Actuator: NFTablesID, Kind: KindBlock, Target: PrefixTarget(netip.MustParsePrefix("192.0.3.0/24")), Expires: now.Add(time.Hour)}
	z := Action{ID: "b3", Actuator: NFTablesID, Kind: KindBlock, Target: AddrTarget(netip.MustParseAddr("10.9.0.1")), Expires: now.Add(time.Hour)}
	for _, a := range []Action{x, z} {
		if !n.aloneLocked(a) {
			t.Fatalf("%s not alone", a.Target)
		}
		if err := n.Apply(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if n.aloneLocked(y) {
		t.Fatal("an adjacent range counted as alone")
	}
	if err := n.Apply(ctx, y); err != nil {
		t.Fatal(err)
	}
	if e4 := setElements(nftList(t, ns), NFSet4); !strings.Contains(e4, "192.0.2.0/23") || !strings.Contains(e4, "10.9.0.1") {
		t.Errorf("adjacent /24s not merged, or the lone address lost: %s", e4)
	}
	if err := n.Revert(ctx, y); err != nil {
		t.Fatal(err)
	}
	if e4 := setElements(nftList(t, ns), NFSet4); !strings.Contains(e4, "192.0.2.0/24") || strings.Contains(e4, "192.0.3") {
		t.Errorf("after reverting the adjacent /24: %s", e4)
	}
	for _, a := range []Action{x, z} {
		if err := n.Revert(ctx, a); err != nil {
			t.Fatal(err)
		}
	}

	// A new actuator replaces a leftover table with an empty one (the Manager re-applies).
	if err := n.Apply(ctx, ip); err != nil {
		t.Fatal(err)
	}
	n2, err := NewNFTables(NFTablesOptions{NetNS: fd, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if e := setElements(nftList(t, ns), NFSet4); e != "" {
		t.Errorf("recreated table kept elements: %s", e)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil || strings.Contains(string(out), NFTable) {
		t.Fatalf("table left after Close: %v: %s", err, out)
	}
}

// TestNFTablesDropsTraffic proves the rules drop packets, not just that elements exist,
// without timing: inside the namespace, datagram "A" is sent over loopback while its
// source is blocked, then the block is reverted and "B" is sent; the receiver's first
// datagram must be "B". (Loopback keeps order, so had A passed it would arrive first.)
// Likewise for a blocked destination port.
func TestNFTablesDropsTraffic(t *testing.T) {
	ns, fd := testNetNS(t)
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	n, err := NewNFTables(NFTablesOptions{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	recv, send := udpPairInNetNS(t, fd)
	ctx := context.Background()
	port := uint16(recv.LocalAddr().(*net.UDPAddr).Port)
	for _, a := range []Action{
		{ID: "src", Actuator: NFTablesID, Kind: KindBlock, Target: AddrTarget(netip.MustParseAddr("127.0.0.1")), Expires: time.Now().Add(time.Hour)},
		{ID: "port", Actuator: NFTablesID, Kind: KindBlock, Target: PortTarget(port), Expires: time.Now().Add(time.Hour)},
	} {
		t.Run(a.ID, func(t *testing.T) {
			if err := n.Apply(ctx, a); err != nil {
				t.Fatal(err)
			}
			if _, err := send.WriteTo([]byte("A"), recv.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if err := n.Revert(ctx, a); err != nil {
				t.Fatal(err)
			}
			if _, err := send.WriteTo([]byte("B"), recv.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			k, _, err := recv.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:k]); got != "B" {
				t.Fatalf("first datagram %q: the block did not drop A", got)
			}
		})
	}
}

// udpPairInNetNS opens two UDP sockets on 127.0.0.1 inside the namespace fd: sockets keep
// the namespace they were created in, so only this goroutine's thread switches, briefly.
func udpPairInNetNS(t *testing.T, fd int) (recv, send net.PacketConn) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns: %v", err)
	}
	recv, err1 := net.ListenPacket("udp4", "127.0.0.1:0")
	send, err2 := net.ListenPacket("udp4", "127.0.0.1:0")
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with the goroutine instead of serving others
		// in the wrong namespace.
		t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
	if err1 != nil || err2 != nil {
		t.Fatalf("listen in netns: %v %v", err1, err2)
	}
	t.Cleanup(func() { recv.Close(); send.Close() })
	return recv, send
}

func TestNFTablesNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root; the non-root error path is not reachable")
	}
	if _, err := NewNFTables(NFTablesOptions{}); err == nil || !strings.Contains(err.Error(), "root") {
		t.Fatalf("err %v, want ErrNotRoot", err)
	}
}

// TestManagerWithNFTablesSurvivesRestart: a block applied through the Manager is in the
// kernel; after an agent "restart" (a new actuator recreates the table empty, a new
// Manager replays the journal) it is back; when it expires it is gone.
func TestManagerWithNFTablesSurvivesRestart(t *testing.T) {
	ns, fd := testNetNS(t)
	dir := t.TempDir()
	c := &clock{t: t0}
	ctx := context.Background()
	start := func() *Manager {
		n, err := NewNFTables(NFTablesOptions{NetNS: fd, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return newTestManager(t, dir, c, nil, n)
	}
	m := start()
	a := Action{Actuator: NFTablesID, Kind: KindBlock, Source: "indicator--x", Target: PrefixTarget(netip.MustParsePrefix("198.51.100.0/24")), Expires: t0.Add(time.Hour)}
	if _, err := m.Apply(ctx, a); err != nil {
		t.Fatal(err)
	}
	if e := setElements(nftList(t, ns), NFSet4); !strings.Contains(e, "198.51.100.0/24 timeout 1h") {
		t.Fatalf("after apply: %s", e)
	}
	c.Set(t0.Add(15 * time.Minute))
	m = start()
	if e := setElements(nftList(t, ns), NFSet4); !strings.Contains(e, "198.51.100.0/24 timeout 45m") {
		t.Fatalf("after restart, want the remaining 45m: %s", e)
	}
	c.Set(t0.Add(time.Hour))
	if n, err := m.RevertExpired(ctx); n != 1 || err != nil {
		t.Fatalf("revert expired: %d %v", n, err)
	}
	if e := setElements(nftList(t, ns), NFSet4); e != "" {
		t.Fatalf("after expiry: %s", e)
	}
}
