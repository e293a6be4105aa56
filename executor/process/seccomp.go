package process

import (
	"fmt"
	"sync"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls are what a web server never needs and an intruder wants: debugging other
// processes, changing mounts, namespaces, the kernel, its modules, BPF programs, the clock,
// swap or the machine's power. A call ends the executor at once with SIGSYS, which the
// driver reports as evidence (EventDenied, reason "seccomp").
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
	"open_tree", "mount_setattr", "setns", "unshare",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
	"bpf", "perf_event_open", "userfaultfd", "open_by_handle_at", "name_to_handle_at",
	"swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup", "lookup_dcookie",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
}

// refusedSyscalls answer EPERM instead: libraries probe them and cope with a refusal
// (io_uring, the kernel keyring), so killing would break benign servers.
var refusedSyscalls = []string{"io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key"}

// cloneNamespaceFlags in clone's flags would make a new user namespace, the unprivileged
// way to every other namespace: killed like unshare. clone3 hides its flags behind a
// pointer a filter cannot read, so it answers ENOSYS and the C library falls back to clone.
const cloneNamespaceFlags = unix.CLONE_NEWUSER

// policies are the filter without (false) and with (true) the signal calls handed to the
// agent (see tripwire.go).
var policies = map[bool]func() (*seccomp.Policy, error){
	false: sync.OnceValues(func() (*seccomp.Policy, error) { return buildPolicy(false) }),
	true:  sync.OnceValues(func() (*seccomp.Policy, error) { return buildPolicy(true) }),
}

// notifiedSignals are the calls that may name another process, with the argument
// that names it: the agent is told of each unless it names the executor's own pid 1 (or,
// for kill, its process group), which is what the Go runtime's preemption signals do.
var notifiedSignals = []string{"kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open"}

func buildPolicy(notify bool) (*seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	present := func(names []string) []string {
		var out []string
		for _, n := range names {
			if _, ok := info.SyscallNames[n]; ok {
				out = append(out, n)
			}
		}
		return out
	}
	p := &seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionKillProcess, Names: present(deniedSyscalls)},
			{Action: seccomp.ActionKillProcess, NamesWithCondtions: []seccomp.NameWithConditions{{
				Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: cloneNamespaceFlags}},
			}}},
			{Action: seccomp.ActionErrno | seccomp.Action(unix.EPERM), Names: present(refusedSyscalls)},
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: present([]string{"clone3"})},
		},
	}
	if notify {
		var calls []seccomp.NameWithConditions
		for _, name := range present(notifiedSignals) {
			conds := seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.NotEqual, Value: 1}}
			if name == "kill" {
				conds = append(conds, seccomp.Condition{Argument: 0, Operation: seccomp.NotEqual, Value: 0})
			}
			calls = append(calls, seccomp.NameWithConditions{Name: name, Conditions: conds})
		}
		p.Syscalls = append(p.Syscalls, seccomp.SyscallGroup{Action: seccomp.Action(unix.SECCOMP_RET_USER_NOTIF), NamesWithCondtions: calls})
	}
	if _, err := p.Assemble(); err != nil {
		return nil, err
	}
	return p, nil
}

// loadSeccomp installs the filter on the calling thread (no_new_privs is already set). With
// notify it returns the filter's user notification listener, else -1.
func loadSeccomp(notify bool) (int, error) {
	p, err := policies[notify]()
	if err != nil {
		return -1, fmt.Errorf("policy: %w", err)
	}
	insts, err := p.Assemble()
	if err != nil {
		return -1, fmt.Errorf("policy: %w", err)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return -1, fmt.Errorf("policy: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	var flags uintptr
	if notify {
		flags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return -1, fmt.Errorf("load filter: %w", e)
	}
	if !notify {
		return -1, nil
	}
	return int(fd), nil
}
