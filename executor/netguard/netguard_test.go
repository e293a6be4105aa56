package netguard

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// dialEnv makes the re-executed test binary dial the address in it and exit 0 on success,
// 3 when refused. rawEnv ("port flags") makes it send one bare TCP segment with those flags
// to 127.0.0.1:port from a raw socket (exit 0 when sent, 3 when the send was refused).
const (
	dialEnv = "NETGUARD_TEST_DIAL"
	rawEnv  = "NETGUARD_TEST_RAW"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(rawEnv); spec != "" {
		if err := sendSegment(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	if addr := os.Getenv(dialEnv); addr != "" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newGuard(t *testing.T) *Guard {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to program nftables")
	}
	g, err := New()
	if err != nil {
		t.Skipf("nftables not usable here: %v", err)
	}
	return g
}

// sendSegment sends one TCP segment "port flags" (decimal) from 127.0.0.1:40000 to
// 127.0.0.1:port, with no connection behind it: what a late FIN, RST or ACK looks like to
// conntrack once it has forgotten the connection.
func sendSegment(spec string) error {
	var port, flags int
	if _, err := fmt.Sscanf(spec, "%d %d", &port, &flags); err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer syscall.Close(fd)
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], 40000)
	binary.BigEndian.PutUint16(seg[2:], uint16(port))
	binary.BigEndian.PutUint32(seg[4:], 0x1badb002) // sequence
	binary.BigEndian.PutUint32(seg[8:], 0x0badcafe) // acknowledgment
	seg[12] = 5 << 4                                // header length: 5 words
	seg[13] = byte(flags)
	binary.BigEndian.PutUint16(seg[14:], 65535) // window
	// Checksum over the pseudo-header (127.0.0.1 to 127.0.0.1, TCP, length) and the segment.
	pseudo := append([]byte{127, 0, 0, 1, 127, 0, 0, 1, 0, syscall.IPPROTO_TCP, 0, byte(len(seg))}, seg...)
	var sum uint32
	for i := 0; i+1 < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(seg[16:], ^uint16(sum))
	return syscall.Sendto(fd, seg, 0, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
}

// sendAs sends one bare segment with flags to 127.0.0.1:port as uid (given CAP_NET_RAW for
// the raw socket, nothing else); it reports whether the send went through.
func sendAs(t *testing.T, uid, port, flags int) bool {
	t.Helper()
	return runAs(t, uid, fmt.Sprintf("%s=%d %d", rawEnv, port, flags), unix.CAP_NET_RAW)
}

// A late packet of a connection conntrack has forgotten (a retransmitted FIN, an RST, a
// stray ACK: no conntrack entry behind any of them) is not an attempt: it passes and is not
// counted, so a healthy executor is never quarantined for one. A new SYN still is counted
// and refused, and so is a SYN after the late packets.
func TestLatePacketsAreNotAttempts(t *testing.T) {
	g := newGuard(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	uid := 652000 + os.Getpid()%1000
	id := "netguard-late-" + strconv.Itoa(os.Getpid())
	if err := g.AllowUID(id, uid, false); err != nil {
		t.Fatal(err)
	}
	defer g.Remove(func(x string) bool { return x == id })
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	for _, c := range []struct {
		name  string
		flags int
	}{{"FIN", fin}, {"FIN+ACK", fin | ack}, {"RST", rst}, {"RST+ACK", rst | ack}, {"ACK", ack}} {
		if !sendAs(t, uid, port, c.flags) {
			t.Errorf("a late %s was refused", c.name)
		}
		if n := g.Refused(id); n != 0 {
			t.Fatalf("a late %s was counted as an attempt (%d): it would quarantine a healthy executor", c.name, n)
		}
	}
	if sendAs(t, uid, port, syn) {
		t.Error("a new SYN went through")
	}
	if n := g.Refused(id); n != 1 {
		t.Errorf("a new SYN counted %d times, want 1", n)
	}
}

// dialAs connects to addr as uid; it reports whether the connection was made.
func dialAs(t *testing.T, uid int, addr string) bool {
	t.Helper()
	return runAs(t, uid, dialEnv+"="+addr)
}

// runAs runs the test binary in the role env names as uid with only the ambient
// capabilities caps; it reports whether the role succeeded (false: exit 3, refused).
func runAs(t *testing.T, uid int, env string, caps ...uintptr) bool {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary sits in a directory only root may enter: run it through a copy
	// anyone may execute.
	cmd := exec.Command(copyExe(t, self))
	cmd.Env = []string{env}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}, AmbientCaps: caps}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Logf("uid %d, %s: %s", uid, env, out)
		return false
	}
	if err != nil {
		t.Fatalf("%s as uid %d: %v %s", env, uid, err, out)
	}
	return true
}

func copyExe(t *testing.T, src string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "netguard-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := dir + "/dialer"
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// A uid under a guard cannot connect to this host, and each attempt is counted; another
// uid can; removing the rules lifts the refusal.
func TestAllowUIDRefusesAndCounts(t *testing.T) {
	g := newGuard(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	guarded, free := 650000+os.Getpid()%1000, 651000+os.Getpid()%1000
	id := "netguard-test-" + strconv.Itoa(os.Getpid())
	for _, outbound := range []bool{false, true} { // to this host: refused either way
		t.Run(fmt.Sprintf("outbound=%v", outbound), func(t *testing.T) {
			if err := g.AllowUID(id, guarded, outbound); err != nil {
				t.Fatal(err)
			}
			defer g.Remove(func(x string) bool { return x == id })
			if g.Refused(id) != 0 {
				t.Fatal("counter not zero before any attempt")
			}
			if dialAs(t, guarded, ln.Addr().String()) {
				t.Fatal("the guarded uid connected")
			}
			if n := g.Refused(id); n == 0 {
				t.Error("the refused attempt was not counted")
			}
			if !dialAs(t, free, ln.Addr().String()) {
				t.Error("an unguarded uid was refused")
			}
		})
	}
	if !dialAs(t, guarded, ln.Addr().String()) {
		t.Error("still refused after Remove")
	}
}

// Rules an earlier instance left for a uid (its agent died without removing them) are
// replaced when a new instance takes the uid, whatever the old instance's ID: left in place,
// the old deny rules come first and refuse what the new one may do (a resolver allowed
// outbound could not reach its upstream), and count its attempts as the old one's.
func TestAllowUIDReplacesStaleRules(t *testing.T) {
	g := newGuard(t)
	uid := 652000 + os.Getpid()%1000
	old, fresh := "netguard-old-"+strconv.Itoa(os.Getpid()), "netguard-fresh-"+strconv.Itoa(os.Getpid())
	other := 653000 + os.Getpid()%1000
	if err := g.AllowUID(old, uid, false); err != nil {
		t.Fatal(err)
	}
	if err := g.AllowUID(old+"-other", other, false); err != nil {
		t.Fatal(err)
	}
	defer g.Remove(func(x string) bool { return x == old || x == fresh || x == old+"-other" })
	if err := g.AllowUID(fresh, uid, true); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	byID, err := g.rules(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(byID[old]) != 0 || len(byID[fresh]) != 3 || len(byID[old+"-other"]) != 3 {
		t.Fatalf("rules: old %d, fresh %d, another uid's %d; want 0, 3, 3", len(byID[old]), len(byID[fresh]), len(byID[old+"-other"]))
	}
}

func TestRemoveIsSelective(t *testing.T) {
	g := newGuard(t)
	a, b := "netguard-a-"+strconv.Itoa(os.Getpid()), "netguard-b-"+strconv.Itoa(os.Getpid())
	if err := g.AllowAddr(a, netip.MustParseAddr("192.0.2.7"), false); err != nil {
		t.Fatal(err)
	}
	if err := g.AllowAddr(b, netip.MustParseAddr("2001:db8::7"), true); err != nil {
		t.Fatal(err)
	}
	defer g.Remove(func(x string) bool { return x == a || x == b })
	count := func() map[string]int {
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		byID, err := g.rules(c)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]int{a: len(byID[a]), b: len(byID[b])}
	}
	// a: accept and two denies (TCP, the rest) in input and forward; b (outbound allowed):
	// input only.
	if got := count(); got[a] != 6 || got[b] != 3 {
		t.Fatalf("rules %v, want %s:6 %s:3", got, a, b)
	}
	if err := g.Remove(func(x string) bool { return x == a }); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[a] != 0 || got[b] != 3 {
		t.Fatalf("after removing %s: %v", a, got)
	}
	// A new container on b's address (b's agent died without removing its rules) replaces
	// them: the old rules would count the new container's attempts.
	if err := g.AllowAddr(a, netip.MustParseAddr("2001:db8::7"), false); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[a] != 6 || got[b] != 0 {
		t.Fatalf("after reusing b's address: %v", got)
	}
}
