package process

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/decoy"
	"github.com/proteus-defense/proteus/executor/internal/pidns"
)

// Tripwires turn the attempts that the executor's confinement refuses without telling
// anyone (the file is not there, the process is not there) into evidence.
//
// Files. Everything an intruder wants on disk, the agent's data dir (api.token, the other
// executors' work dirs) and the image, is hidden behind a private tmpfs in the executor's
// mount namespace, so a read or write of it fails with ENOENT and nothing in the kernel
// notices. The helper therefore fills the covers with decoys: before covering a directory
// it lists it (breadth first, at most maxDecoys entries), and after covering it makes the
// same directories (root's, 0755) and the same regular files (empty, sparse to the real
// size, 0666 so that the ordinary permissions let any open through to the next check).
// Each decoy file is marked in a fanotify group (FAN_OPEN_PERM, inode marks only, so no
// other open of the executor ever waits for the agent) and is writable for Landlock, so
// every open of a decoy, for reading or writing, stops in the kernel until the agent
// answers. The agent answers FAN_DENY (the open fails with EPERM) and publishes
// EventDenied, reason "file".
//
// Signals. In its own PID namespace the executor cannot name the agent or any other
// process of the host: kill(agent's pid) fails with ESRCH, silently. The seccomp filter
// hands the signal calls that may name another process (kill, tkill, tgkill,
// rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open, except for its own pid 1 and process
// group, the Go runtime's preemption signals) to the agent through a seccomp user
// notification listener. The agent always lets the call continue (the namespace, not the
// agent, refuses), and when the pid it names does not exist in the executor's namespace
// publishes EventDenied, reason "signal".
//
// The helper hands both file descriptors to the agent over a socket (Sandbox.Report)
// just before it execs the command, and closes its own copies: the executor never holds
// them.

// handover is the header the helper sends with the descriptors, in this order.
type handover struct {
	Fanotify bool `json:"fanotify,omitempty"`
	Seccomp  bool `json:"seccomp,omitempty"`
}

// handOver sends the tripwires' descriptors (-1: none) to the agent over sock and closes
// them and sock.
func handOver(sock, fan, listener int) error {
	h := handover{Fanotify: fan >= 0, Seccomp: listener >= 0}
	var fds []int
	for _, fd := range []int{fan, listener} {
		if fd >= 0 {
			fds = append(fds, fd)
		}
	}
	msg, _ := json.Marshal(h)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	err := unix.Sendmsg(sock, msg, oob, nil, 0)
	for _, fd := range append(fds, sock) {
		unix.Close(fd)
	}
	return err
}

// receiveTripwires reads the helper's handover from conn (nil files when the helper ended
// before sending one).
func receiveTripwires(conn *net.UnixConn) (fan, listener *os.File, err error) {
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(2*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil || n == 0 {
		return nil, nil, err
	}
	var h handover
	if err := json.Unmarshal(buf[:n], &h); err != nil {
		return nil, nil, fmt.Errorf("handover: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, nil, fmt.Errorf("handover: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err != nil {
				return nil, nil, fmt.Errorf("handover: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	want := 0
	for _, b := range []bool{h.Fanotify, h.Seccomp} {
		if b {
			want++
		}
	}
	if len(fds) != want {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, nil, fmt.Errorf("handover: %d descriptors, want %d", len(fds), want)
	}
	if h.Fanotify {
		fan = os.NewFile(uintptr(fds[0]), "fanotify")
		fds = fds[1:]
	}
	if h.Seccomp {
		if err := unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			return fan, nil, err
		}
		listener = os.NewFile(uintptr(fds[0]), "seccomp-notify")
	}
	return fan, listener, nil
}

// watchTripwires takes the helper's handover from conn and answers the tripwires until the
// executor has exited.
func (d *Driver) watchTripwires(p *proc, inst *executor.Instance, conn *net.UnixConn) {
	fan, listener, err := receiveTripwires(conn)
	conn.Close()
	if err != nil {
		d.log.Warn("tripwires not received", "id", inst.ID, "err", err)
	}
	for _, f := range []*os.File{fan, listener} {
		if f != nil {
			go func() { <-p.done; f.Close() }()
		}
	}
	if listener != nil {
		go d.watchSignals(p, inst, listener)
	}
	if fan != nil {
		d.watchFiles(p, inst, fan)
	}
}

// watchFiles denies every open of a decoy and reports the first as evidence.
func (d *Driver) watchFiles(p *proc, inst *executor.Instance, fan *os.File) {
	decoy.Watch(fan, func(o decoy.Open) bool {
		d.deny(p, inst, executor.Denial{Reason: executor.DeniedFile,
			Attempted: fmt.Sprintf("open %s for %s", o.Path, o.Access),
			RefusedBy: "fanotify (EPERM: a decoy in its private view of a hidden directory)",
			Extra:     map[string]any{"path": o.Path, "access": o.Access, "pid": o.Pid}})
		return true
	})
}

// seccompNotif and seccompNotifResp are struct seccomp_notif and seccomp_notif_resp.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// signalTargets are the calls the filter hands to the agent, by number: the argument that
// names the process.
var signalTargets = map[int32]string{
	unix.SYS_KILL: "kill", unix.SYS_TKILL: "tkill", unix.SYS_TGKILL: "tgkill",
	unix.SYS_RT_SIGQUEUEINFO: "rt_sigqueueinfo", unix.SYS_RT_TGSIGQUEUEINFO: "rt_tgsigqueueinfo",
	unix.SYS_PIDFD_OPEN: "pidfd_open",
}

// watchSignals lets every handed signal call continue (the executor's PID namespace is
// what confines it) and reports the first that names a process outside that namespace.
func (d *Driver) watchSignals(p *proc, inst *executor.Instance, listener *os.File) {
	rc, err := listener.SyscallConn()
	if err != nil {
		return
	}
	lim := pacer{per: time.Second / maxSignalCalls}
	for {
		var n seccompNotif
		var ierr error
		err := rc.Read(func(fd uintptr) bool {
			n = seccompNotif{}
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(unix.SECCOMP_IOCTL_NOTIF_RECV), uintptr(unsafe.Pointer(&n)))
			if e == unix.EAGAIN || e == unix.EINTR {
				return false
			}
			if e != 0 {
				ierr = e
			}
			return true
		})
		if err != nil {
			return // closed once the executor has exited
		}
		if ierr != nil {
			if ierr == unix.ENOENT && !hungUp(rc) {
				continue // the caller was interrupted before we read it
			}
			return // no task uses the filter any more (the executor has exited)
		}
		// Read the target before answering: the caller's /proc view is only certain while
		// it waits.
		target := int32(n.Args[0])
		outside := target > 1 && pidns.Outside(int(n.Pid), target)
		lim.wait()
		resp := seccompNotifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
		_ = rc.Control(func(fd uintptr) {
			unix.Syscall(unix.SYS_IOCTL, fd, uintptr(unix.SECCOMP_IOCTL_NOTIF_SEND), uintptr(unsafe.Pointer(&resp)))
		})
		if !outside {
			continue
		}
		name := signalTargets[n.Nr]
		sig := ""
		switch n.Nr {
		case unix.SYS_KILL, unix.SYS_TKILL, unix.SYS_RT_SIGQUEUEINFO:
			sig = unix.SignalName(syscall.Signal(n.Args[1]))
		case unix.SYS_TGKILL, unix.SYS_RT_TGSIGQUEUEINFO:
			sig = unix.SignalName(syscall.Signal(n.Args[2]))
		}
		if sig == "" && n.Nr != unix.SYS_PIDFD_OPEN {
			sig = "signal " + strconv.FormatUint(n.Args[1], 10)
		}
		attempted := fmt.Sprintf("%s(%d) %s, a process outside its PID namespace", name, target, sig)
		d.deny(p, inst, executor.Denial{Reason: executor.DeniedSignal,
			Attempted: strings.Join(strings.Fields(attempted), " "),
			RefusedBy: "pid namespace (ESRCH), seen by seccomp user notification",
			Extra:     map[string]any{"target_pid": int(target), "syscall": name, "pid": int(n.Pid)}})
	}
}

// hungUp reports whether the listener says that no task uses its filter any more.
func hungUp(rc syscall.RawConn) bool {
	hup := false
	_ = rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 {
			hup = pfd[0].Revents&unix.POLLHUP != 0
		}
	})
	return hup
}

// maxSignalCalls bounds how many handed signal calls of one executor the agent answers per
// second: an executor signalling its own processes in a loop waits for the agent instead of
// making it spend a core on the answers.
const maxSignalCalls = 2000

// pacer spaces calls at least per apart on average (bursts of up to a second's worth pass
// at once).
type pacer struct {
	per  time.Duration
	next time.Time
}

func (p *pacer) wait() {
	now := time.Now()
	if floor := now.Add(-time.Second); p.next.Before(floor) {
		p.next = floor
	}
	p.next = p.next.Add(p.per)
	if d := p.next.Sub(now); d > 0 {
		time.Sleep(d)
	}
}

// notifyUsable reports whether the kernel has seccomp user notification with "continue"
// (Linux 5.5).
func notifyUsable() bool {
	var sizes [3]uint16
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sizes))); e != 0 {
		return false
	}
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action))); e != 0 {
		return false
	}
	// struct seccomp_notif and seccomp_notif_resp as this file declares them.
	return sizes[0] == uint16(unsafe.Sizeof(seccompNotif{})) && sizes[1] == uint16(unsafe.Sizeof(seccompNotifResp{}))
}
