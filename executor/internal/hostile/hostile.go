// Package hostile is what the isolation tests run inside an executor to behave as a
// compromised one: Attack tries one thing an intruder would and reports whether the
// confinement stopped it. Both drivers' test servers use it (the process driver's test
// binary, the docker driver's FROM-scratch server); nothing else may import it.
package hostile

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// held keeps the files of the files attack open.
var held []*os.File

// Attack tries what q's "what" names:
//
//	read    path=P  read the file P (the agent's api.token, say)
//	write   path=P  create or overwrite the file P (a sibling's work dir, the image)
//	connect addr=A  open a TCP connection to A (a Unix socket when A is a path) and send an
//	                HTTP request
//	signal  pid=N   check it may signal process N (signal 0: nothing is delivered)
//	fork            start idle children (idle is their argv) until the system refuses
//	alloc           allocate and touch memory without bound
//	files           open files without bound and keep them open (it then cannot accept a
//	                connection)
//	ptrace          call ptrace
//	mount           mount a tmpfs
//	benign  path=P  what a healthy server does and no confinement may count against it:
//	                read its own file P, write a scratch file in /tmp, start an idle child,
//	                signal it (0, then SIGTERM) and reap it; answers "ok: ..." or
//	                "failed: ..."
//
// It answers "refused: <error>" when the attempt failed and "SUCCEEDED: ..." when it did
// not (an attack that ends the process answers nothing).
func Attack(q url.Values, idle []string) string {
	refused := func(err error) string { return "refused: " + err.Error() }
	switch q.Get("what") {
	case "read":
		b, err := os.ReadFile(q.Get("path"))
		if err != nil {
			return refused(err)
		}
		return fmt.Sprintf("SUCCEEDED: read %d bytes", len(b))
	case "write":
		if err := os.WriteFile(q.Get("path"), []byte("owned by a hostile executor\n"), 0o644); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: wrote " + q.Get("path")
	case "connect":
		network := "tcp"
		if strings.HasPrefix(q.Get("addr"), "/") {
			network = "unix" // a socket file: the Docker Engine's, say
		}
		c, err := net.DialTimeout(network, q.Get("addr"), 5*time.Second)
		if err != nil {
			return refused(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if n == 0 {
			return refused(fmt.Errorf("connected, then %v", err))
		}
		return fmt.Sprintf("SUCCEEDED: %q", buf[:n])
	case "signal":
		pid, err := strconv.Atoi(q.Get("pid"))
		if err != nil {
			return refused(err)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: may signal " + q.Get("pid")
	case "fork":
		for n := 0; n < 100000; n++ {
			if err := exec.Command(idle[0], idle[1:]...).Start(); err != nil {
				return refused(fmt.Errorf("after %d children: %w", n, err))
			}
		}
		return "SUCCEEDED: 100000 children"
	case "alloc":
		var keep [][]byte
		for n := 0; n < 1<<16; n++ {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		return fmt.Sprintf("SUCCEEDED: %d chunks", len(keep))
	case "files":
		for n := 0; n < 1<<20; n++ {
			f, err := os.Open(os.DevNull)
			if err != nil {
				return refused(fmt.Errorf("after %d files: %w", n, err))
			}
			held = append(held, f) // kept: a collected *os.File would close itself
		}
		return "SUCCEEDED: 1048576 open files"
	case "ptrace":
		if _, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0); e != 0 {
			return refused(e)
		}
		return "SUCCEEDED: ptrace"
	case "benign":
		if _, err := os.ReadFile(q.Get("path")); err != nil {
			return "failed: " + err.Error()
		}
		if err := os.WriteFile(filepath.Join(os.TempDir(), "proteus-benign"), []byte("scratch\n"), 0o600); err != nil {
			return "failed: " + err.Error()
		}
		child := exec.Command(idle[0], idle[1:]...)
		if err := child.Start(); err != nil {
			return "failed: " + err.Error()
		}
		for _, sig := range []syscall.Signal{0, syscall.SIGTERM} { // kill(2), as C servers do
			if err := syscall.Kill(child.Process.Pid, sig); err != nil {
				return fmt.Sprintf("failed: signal %d to its child: %v", sig, err)
			}
		}
		_ = child.Wait()
		return fmt.Sprintf("ok: read %s, wrote %s, signalled child %d", q.Get("path"), os.TempDir(), child.Process.Pid)
	case "mount":
		if err := syscall.Mount("tmpfs", "/mnt", "tmpfs", 0, ""); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: mount"
	}
	return "unknown attack"
}
