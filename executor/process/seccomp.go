package process

import (
	"fmt"
	"sync"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
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

var policyOnce = sync.OnceValues(buildPolicy)

func buildPolicy() (*seccomp.Policy, error) {
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
	if _, err := p.Assemble(); err != nil {
		return nil, err
	}
	return p, nil
}

// loadSeccomp installs the filter on the calling thread (no_new_privs is already set).
func loadSeccomp() error {
	p, err := policyOnce()
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Policy: *p})
}
