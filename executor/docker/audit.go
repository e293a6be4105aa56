package docker

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/kaudit"
	"github.com/proteus-defense/proteus/executor/internal/pidns"
)

// What a container's confinement refuses without a word, made evidence through the
// kernel's audit records (executor/internal/kaudit): the engine cannot hand the agent a
// seccomp listener (Docker 20.10 drops a profile's listenerPath), so the agent asks the
// kernel to record, for every process, the calls that failed in the ways a confined
// container fails, and keeps those of its own containers' processes (found by
// /proc/<pid>/cgroup):
//
//   - a signal (kill, tkill, tgkill, rt_*sigqueueinfo, pidfd_open) that failed with ESRCH,
//     naming a pid its PID namespace has never given out (pidns.Outside): the agent's, say;
//   - a write (an open with write flags, a create, remove, rename, link, change of mode,
//     owner, times or attributes) that failed with EROFS (its read-only root, and the
//     read-only decoys of its siblings' files), EACCES or EPERM (a path its user may not
//     write).
//
// The records come after the fact: the call has already failed, and the process may be
// gone by the time the agent reads /proc (a short-lived child's attempt can be missed).

// auditUsable reports whether the driver asks the kernel for audit records: root and a
// local engine (the records name this host's pids).
func (d *Driver) auditUsable() bool {
	return !d.opts.NoAudit && os.Geteuid() == 0 && strings.HasPrefix(d.host, "unix://")
}

// startAudit installs the rules and reads the records until Close.
func (d *Driver) startAudit() {
	w, err := kaudit.Open("docker-"+d.agent, kaudit.RefusalRules())
	if err != nil {
		d.log.Warn("no audit evidence: a container's refused signals and writes leave none", "err", err)
		return
	}
	if w.Enabled {
		d.log.Info("turned the kernel's syscall auditing on (it was off) for evidence of refused signals and writes")
	}
	d.audit = w
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		w.Read(d.audited)
	}()
}

// audited judges one audit event.
func (d *Driver) audited(e kaudit.Event) {
	inst := d.instanceOf(e.PID)
	if inst == nil {
		return
	}
	errno := syscall.Errno(-e.Exit)
	call := kaudit.CallName(e.Syscall)
	var den executor.Denial
	switch {
	case errno == unix.ESRCH && kaudit.IsSignal(e.Syscall):
		target := int32(e.Args[0])
		if target <= 1 || !pidns.Outside(e.PID, target) {
			return // its own namespace's (a child that has just exited), a group, or all
		}
		sigArg := 1
		if e.Syscall == unix.SYS_TGKILL || e.Syscall == unix.SYS_RT_TGSIGQUEUEINFO {
			sigArg = 2
		}
		sig := ""
		if e.Syscall != unix.SYS_PIDFD_OPEN {
			if sig = unix.SignalName(syscall.Signal(e.Args[sigArg])); sig == "" {
				sig = "signal " + strconv.FormatUint(e.Args[sigArg], 10)
			}
		}
		den = executor.Denial{Reason: executor.DeniedSignal,
			Attempted: strings.Join(strings.Fields(fmt.Sprintf("%s(%d) %s, a process outside its PID namespace", call, target, sig)), " "),
			RefusedBy: "pid namespace (ESRCH), seen by kernel audit",
			Extra:     map[string]any{"target_pid": int(target), "syscall": call, "pid": e.PID}}
	case (errno == unix.EROFS || errno == unix.EACCES || errno == unix.EPERM) && e.IsWrite():
		path := e.Path()
		what := "write " + path
		if e.InParent() {
			what = "create a file in " + path
		}
		if root := d.siblingsRoot(); root != "" && path != "" && within(path, root) {
			what += ", another container's files"
		}
		by := map[syscall.Errno]string{unix.EROFS: "read-only file system (EROFS)",
			unix.EACCES: "file permissions (EACCES)", unix.EPERM: "file ownership (EPERM)"}[errno]
		den = executor.Denial{Reason: executor.DeniedFile, Category: "integrity",
			Attempted: what + " (" + call + ")", RefusedBy: by + ", seen by kernel audit",
			Extra: map[string]any{"path": path, "access": "write", "pid": e.PID, "syscall": call}}
	default:
		return
	}
	if d.denied(inst, den) {
		d.watchers.Add(1)
		go func() { // not on the reader: it must keep up with the kernel
			defer d.watchers.Done()
			d.quarantineDenied(inst)
		}()
	}
}

// instanceOf is the running instance whose container process pid belongs to, nil for any
// other process.
func (d *Driver) instanceOf(pid int) *executor.Instance {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil
	}
	cg := string(b)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, inst := range d.running {
		if inst.Handle != "" && strings.Contains(cg, inst.Handle) {
			return inst
		}
	}
	return nil
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}
