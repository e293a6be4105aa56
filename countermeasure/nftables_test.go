package countermeasure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/countermeasure/nfttest"
	"golang.org/x/sys/unix"
)

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
	ns, fd := nfttest.NetNS(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	n, err := NewNFTables(NFTablesOptions{NetNS: fd, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	listing := nfttest.List(t, ns, NFTable)
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
	listing = nfttest.List(t, ns, NFTable)
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
	e4 = setElements(nfttest.List(t, ns, NFTable), NFSet4)
	if strings.Contains(e4, "198.51.100.0/24") || !strings.Contains(e4, "198.51.100.128/25") {
		t.Errorf("after reverting the /24: %s", e4)
	}
	for _, a := range []Action{ip, inner, v6, port, port} { // reverting twice is fine
		if err := n.Revert(ctx, a); err != nil {
			t.Fatalf("revert %s: %v", a.ID, err)
		}
	}
	listing = nfttest.List(t, ns, NFTable)
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
	if e4 := setElements(nfttest.List(t, ns, NFTable), NFSet4); !strings.Contains(e4, "192.0.2.0/23") || !strings.Contains(e4, "10.9.0.1") {
		t.Errorf("adjacent /24s not merged, or the lone address lost: %s", e4)
	}
	if err := n.Revert(ctx, y); err != nil {
		t.Fatal(err)
	}
	if e4 := setElements(nfttest.List(t, ns, NFTable), NFSet4); !strings.Contains(e4, "192.0.2.0/24") || strings.Contains(e4, "192.0.3") {
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
	if e := setElements(nfttest.List(t, ns, NFTable), NFSet4); e != "" {
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
	ns, fd := nfttest.NetNS(t)
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

// udpPairInNetNS opens two UDP sockets on 127.0.0.1 inside the namespace fd.
func udpPairInNetNS(t *testing.T, fd int) (recv, send net.PacketConn) {
	t.Helper()
	var err1, err2 error
	inNetNS(t, fd, func() {
		recv, err1 = net.ListenPacket("udp4", "127.0.0.1:0")
		send, err2 = net.ListenPacket("udp4", "127.0.0.1:0")
	})
	if err1 != nil || err2 != nil {
		t.Fatalf("listen in netns: %v %v", err1, err2)
	}
	t.Cleanup(func() { recv.Close(); send.Close() })
	return recv, send
}

// inNetNS runs fn with the calling goroutine's thread in the namespace fd: sockets keep the
// namespace they were created in, so only this thread switches, briefly.
func inNetNS(t *testing.T, fd int, fn func()) {
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
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with the goroutine instead of serving others
		// in the wrong namespace.
		t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
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
	ns, fd := nfttest.NetNS(t)
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
	if e := setElements(nfttest.List(t, ns, NFTable), NFSet4); !strings.Contains(e, "198.51.100.0/24 timeout 1h") {
		t.Fatalf("after apply: %s", e)
	}
	c.Set(t0.Add(15 * time.Minute))
	m = start()
	if e := setElements(nfttest.List(t, ns, NFTable), NFSet4); !strings.Contains(e, "198.51.100.0/24 timeout 45m") {
		t.Fatalf("after restart, want the remaining 45m: %s", e)
	}
	c.Set(t0.Add(time.Hour))
	if n, err := m.RevertExpired(ctx); n != 1 || err != nil {
		t.Fatalf("revert expired: %d %v", n, err)
	}
	if e := setElements(nfttest.List(t, ns, NFTable), NFSet4); e != "" {
		t.Fatalf("after expiry: %s", e)
	}
}

// TestNFTablesRedirectsFlaggedSource: from a client namespace over a veth, a connection to
// the redirected port reaches the real service until the client's address is redirected,
// then the decoy; the client's other address still reaches the real service, the redirected
// address is not blocked, and after the revert it reaches the real service again. IPv4 and
// IPv6.
func TestNFTablesRedirectsFlaggedSource(t *testing.T) {
	srvNS, srvFD := nfttest.NetNS(t)
	cliNS, cliFD := nfttest.NetNS(t)
	for _, args := range [][]string{
		{"-n", srvNS, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns", cliNS},
		{"-n", srvNS, "addr", "add", "192.0.2.1/24", "dev", "vs"},
		{"-n", srvNS, "addr", "add", "2001:db8::1/64", "dev", "vs", "nodad"},
		{"-n", cliNS, "addr", "add", "192.0.2.2/24", "dev", "vc"},
		{"-n", cliNS, "addr", "add", "192.0.2.3/24", "dev", "vc"},
		{"-n", cliNS, "addr", "add", "2001:db8::2/64", "dev", "vc", "nodad"},
		{"-n", cliNS, "addr", "add", "2001:db8::3/64", "dev", "vc", "nodad"},
		{"-n", srvNS, "link", "set", "vs", "up"},
		{"-n", cliNS, "link", "set", "vc", "up"},
		{"-n", srvNS, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// The real service on 8080 and the decoy on 2222, both on every address of the server.
	for _, svc := range []struct{ addr, name string }{{"[::]:8080", "real"}, {"[::]:2222", "decoy"}} {
		var ln net.Listener
		var err error
		inNetNS(t, srvFD, func() { ln, err = net.Listen("tcp", svc.addr) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(svc.name))
				c.Close()
			}
		}()
	}
	answer := func(from, to string) string {
		t.Helper()
		var c net.Conn
		var err error
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second} // hang guard
		inNetNS(t, cliFD, func() { c, err = d.Dial("tcp", net.JoinHostPort(to, "8080")) })
		if err != nil {
			t.Fatalf("from %s: %v", from, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("from %s: %v", from, err)
		}
		return string(b)
	}

	n, err := NewNFTables(NFTablesOptions{NetNS: srvFD, Redirects: []PortRedirect{{Port: 8080, To: 2222}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := answer("192.0.2.2", "192.0.2.1"); got != "real" {
		t.Fatalf("before any redirect: %q", got)
	}
	ctx := context.Background()
	flagged := []Action{
		{ID: "r4", Actuator: NFTablesID, Kind: KindRedirect, Target: AddrTarget(netip.MustParseAddr("192.0.2.2")), Expires: time.Now().Add(time.Hour)},
		{ID: "r6", Actuator: NFTablesID, Kind: KindRedirect, Target: AddrTarget(netip.MustParseAddr("2001:db8::2")), Expires: time.Now().Add(time.Hour)},
	}
	for _, a := range flagged {
		if err := n.Apply(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	listing := nfttest.List(t, srvNS, NFTable)
	for _, want := range []string{"hook prerouting priority dstnat - 10", "ip saddr @redir4 tcp dport 8080 redirect to :2222",
		"ip6 saddr @redir6 tcp dport 8080 redirect to :2222"} {
		if !strings.Contains(listing, want) {
			t.Errorf("table lacks %q:\n%s", want, listing)
		}
	}
	if e := setElements(listing, NFSet4); e != "" {
		t.Errorf("a redirected address is in the block set: %s", e)
	}
	for _, c := range []struct{ from, to, want string }{
		{"192.0.2.2", "192.0.2.1", "decoy"}, {"192.0.2.3", "192.0.2.1", "real"},
		{"2001:db8::2", "2001:db8::1", "decoy"}, {"2001:db8::3", "2001:db8::1", "real"},
	} {
		if got := answer(c.from, c.to); got != c.want {
			t.Errorf("redirected 192.0.2.2 and 2001:db8::2; from %s: %q, want %q", c.from, got, c.want)
		}
	}
	for _, a := range flagged {
		if err := n.Revert(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if got, got6 := answer("192.0.2.2", "192.0.2.1"), answer("2001:db8::2", "2001:db8::1"); got != "real" || got6 != "real" {
		t.Errorf("after the revert: %q, %q", got, got6)
	}
	for _, s := range []string{NFSetRedir4, NFSetRedir6} {
		if e := setElements(nfttest.List(t, srvNS, NFTable), s); e != "" {
			t.Errorf("%s not empty after the reverts: %s", s, e)
		}
	}
}

// Without redirected ports, or for more than one address, a redirect is refused rather
// than turned into something else (a block, or nothing said).
func TestNFTablesRedirectRefused(t *testing.T) {
	ns, fd := nfttest.NetNS(t)
	ctx := context.Background()
	one := Action{ID: "r", Actuator: NFTablesID, Kind: KindRedirect, Target: AddrTarget(netip.MustParseAddr("192.0.2.2")), Expires: time.Now().Add(time.Hour)}
	plain, err := NewNFTables(NFTablesOptions{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Apply(ctx, one); !errors.Is(err, ErrUnsupportedTarget) {
		t.Errorf("redirect without redirected ports: %v", err)
	}
	if l := nfttest.List(t, ns, NFTable); setElements(l, NFSet4) != "" || strings.Contains(l, "redir") {
		t.Errorf("a refused redirect left something:\n%s", l)
	}
	withPorts, err := NewNFTables(NFTablesOptions{NetNS: fd, Redirects: []PortRedirect{{Port: 80, To: 8081}}})
	if err != nil {
		t.Fatal(err)
	}
	defer withPorts.Close()
	wide := one
	wide.Target = PrefixTarget(netip.MustParsePrefix("192.0.2.0/24"))
	if err := withPorts.Apply(ctx, wide); !errors.Is(err, ErrUnsupportedTarget) {
		t.Errorf("redirect of a /24: %v", err)
	}
}
