// Package netnstest runs a piece of a test inside a named network namespace (one `ip netns
// add` made, /run/netns/NAME): the sockets it opens stay there once the thread is back in
// its own. Tests only; it imports the standard library, testing and x/sys.
package netnstest

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// In calls fn on one locked OS thread inside the network namespace ns.
func In(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // this thread must not go back to the scheduler in the other namespace
		}
	}()
	fn()
}
