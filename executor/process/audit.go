package process

import (
	"fmt"
	"regexp"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/kaudit"
)

// What the fanotify decoys and the signal watch do not see, seen through the kernel's audit
// records (executor/internal/kaudit), with full isolation: a write outside the hidden
// directories that Landlock or the file permissions refuse (EACCES: /etc, a world-writable
// directory), or the ownership (EPERM), and a TCP connect Landlock refuses where there is no
// nftables (EACCES). The rules name only the executors' uid range, so the kernel records
// nothing of any other process; each record names the uid, and so the executor.

// startAudit installs the rules for the uid range [first, last]. They are keyed by the range,
// not by the agent: every agent (and test) with the same range shares one set, which stays
// when the agent ends (it matches only processes of the range, and the next agent replaces
// it), so none removes what another still reads.
func (d *Driver) startAudit(first, last int) {
	uids := kaudit.UIDRange(uint32(first), uint32(last))
	rules := append(kaudit.WriteRules(uids...),
		kaudit.Rule{Syscalls: []int{unix.SYS_CONNECT}, Exit: unix.EACCES, Fields: uids})
	w, err := kaudit.Open(fmt.Sprintf("process-%d-%d", first, last), rules)
	if err != nil {
		d.log.Warn("no audit evidence: writes Landlock refuses outside the hidden directories leave none", "err", err)
		return
	}
	d.iso.audit = w
	go w.Read(d.audited)
}

// Close stops reading the audit records (the pool calls it once every executor has
// stopped); the rules stay (see startAudit).
func (d *Driver) Close() error {
	if d.iso == nil || d.iso.audit == nil {
		return nil
	}
	return d.iso.audit.Stop()
}

// audited judges one audit event: the executor whose uid made the call is killed with the
// evidence (its work dir kept), as for the other tripwires.
func (d *Driver) audited(e kaudit.Event) {
	d.mu.Lock()
	var p *proc
	for _, q := range d.procs {
		if q.uid != 0 && q.uid == e.UID {
			p = q
			break
		}
	}
	d.mu.Unlock()
	if p == nil || p.inst == nil {
		return
	}
	errno := syscall.Errno(-e.Exit)
	call := kaudit.CallName(e.Syscall)
	by := map[syscall.Errno]string{unix.EROFS: "read-only file system (EROFS)",
		unix.EACCES: "Landlock or file permissions (EACCES)", unix.EPERM: "file ownership (EPERM)"}[errno] + ", seen by kernel audit"
	switch {
	case e.Syscall == unix.SYS_CONNECT:
		d.deny(p, p.inst, executor.Denial{Reason: executor.DeniedNetwork, RefusedBy: "Landlock (EACCES), seen by kernel audit",
			Attempted: "connect(2) a TCP socket, which Landlock refuses without nftables",
			Extra:     map[string]any{"pid": e.PID, "syscall": call}})
	case e.IsWrite() && ownThreadName(e.Path()):
		// pthread_setname_np: a server naming its own threads (BIND does), which Landlock
		// refuses on /proc; nothing an attacker gains, so no evidence.
	case e.IsWrite():
		path := e.Path()
		what := "write " + path
		if e.InParent() {
			what = "create a file in " + path
		}
		d.deny(p, p.inst, executor.Denial{Reason: executor.DeniedFile, Category: "integrity",
			Attempted: what + " (" + call + ")", RefusedBy: by,
			Extra: map[string]any{"path": path, "access": "write", "pid": e.PID, "syscall": call}})
	}
}

// ownThreadNameRe matches the files a process names its own threads through.
var ownThreadNameRe = regexp.MustCompile(`^/proc/(self|thread-self|[0-9]+)/(task/[0-9]+/)?comm$`)

func ownThreadName(path string) bool { return ownThreadNameRe.MatchString(path) }
