package netguard

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proteus-defense/proteus/executor/internal/netnstest"
)

// A connection on a namespace's own loopback to a port a socket serves passes uncounted;
// one to a port nothing serves (the agent's API port, tried where it is not) is refused and
// counted.
func TestLoopbackCountsUnservedPorts(t *testing.T) {
	newGuard(t) // root and nftables, or skip
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	ns := fmt.Sprintf("pxl%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	holder := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// ip netns exec has entered the namespace once it has exec'd sleep.
	for i := 0; ; i++ {
		self, _ := os.Readlink("/proc/self/ns/net")
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)); err == nil && got != self {
			break
		}
		if i == 1000 {
			t.Fatal("the holder never entered the namespace")
		}
		time.Sleep(5 * time.Millisecond)
	}
	lo, err := GuardLoopback(holder.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()

	served, unserved := inNamespace(t, ns)
	if served != nil {
		t.Fatalf("a served port on its own loopback: %v", served)
	}
	if unserved == nil {
		t.Fatal("an unserved port accepted")
	}
	if n := lo.Refused(); n == 0 {
		t.Fatalf("refused %d connections, want the unserved one counted (%v)", n, unserved)
	}
}

// inNamespace dials, inside ns, a port it listens on and one it does not.
func inNamespace(t *testing.T, ns string) (served, unserved error) {
	t.Helper()
	netnstest.In(t, ns, func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		free, err := net.Listen("tcp", "127.0.0.1:0") // a port free in this namespace
		if err != nil {
			t.Fatal(err)
		}
		other := free.Addr().(*net.TCPAddr).Port
		free.Close()
		// Raw calls on this thread: net.Dial may finish its connect on another one.
		dial := func(port int) error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		}
		served = dial(l.Addr().(*net.TCPAddr).Port)
		unserved = dial(other)
	})
	return served, unserved
}
