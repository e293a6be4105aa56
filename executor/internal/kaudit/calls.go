package kaudit

import (
	"maps"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// SignalCalls are the calls that name a process to signal (or to open a pidfd of): a
// failure with ESRCH from inside a PID namespace means the process is not in it. The target
// is argument 0 of each.
var SignalCalls = []int{unix.SYS_KILL, unix.SYS_TKILL, unix.SYS_TGKILL,
	unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_TGSIGQUEUEINFO, unix.SYS_PIDFD_OPEN}

// OpenFlags are the open flags that make an open a write.
const OpenFlags = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC

// WriteCalls are the calls that change a file or a directory other than through an open:
// create, remove, rename, link, change mode, owner, times or extended attributes.
var WriteCalls = append([]int{unix.SYS_MKDIRAT, unix.SYS_MKNODAT, unix.SYS_UNLINKAT,
	unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2, unix.SYS_LINKAT, unix.SYS_SYMLINKAT,
	unix.SYS_FCHMODAT, unix.SYS_FCHOWNAT, unix.SYS_UTIMENSAT, unix.SYS_TRUNCATE,
	unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR}, legacyWriteCalls...)

// OpenCalls maps each open call to the argument holding its flags (openat2 keeps them in a
// structure a rule cannot read: -1).
var OpenCalls = mergeOpen(map[int]int{unix.SYS_OPENAT: 2, unix.SYS_OPENAT2: -1}, legacyOpenCalls)

func mergeOpen(a, b map[int]int) map[int]int {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// IsWrite tells whether an event's call changes a file (an open with write flags, or one
// of WriteCalls).
func (e Event) IsWrite() bool {
	if arg, ok := OpenCalls[e.Syscall]; ok {
		return arg < 0 || e.Args[arg]&OpenFlags != 0
	}
	for _, nr := range WriteCalls {
		if nr == e.Syscall {
			return true
		}
	}
	return false
}

// RefusalRules are the rules for what a confinement refuses silently: a signal to a process
// outside the caller's PID namespace (ESRCH) and the writes of WriteRules; extra narrows
// every rule (to the executors' uids, say).
func RefusalRules(extra ...Field) []Rule {
	return append([]Rule{{Syscalls: SignalCalls, Exit: unix.ESRCH, Fields: extra}}, WriteRules(extra...)...)
}

// WriteRules are the rules for a write refused by a read-only file system (EROFS), by file
// permissions or Landlock (EACCES) or by ownership (EPERM).
func WriteRules(extra ...Field) []Rule {
	var opens, eaccesOpens []Rule
	all := append([]int(nil), WriteCalls...)
	for _, nr := range slices.Sorted(maps.Keys(OpenCalls)) {
		arg := OpenCalls[nr]
		all = append(all, nr)
		switch {
		case nr == unix.SYS_OPENAT2: // its flags are out of a rule's reach; a read never fails with EROFS
		case arg < 0:
			eaccesOpens = append(eaccesOpens, Rule{Syscalls: []int{nr}, Exit: unix.EACCES, Fields: extra})
		default:
			eaccesOpens = append(eaccesOpens, Rule{Syscalls: []int{nr}, Exit: unix.EACCES,
				Fields: append([]Field{ArgMask(arg, OpenFlags)}, extra...)})
		}
	}
	opens = append(opens, Rule{Syscalls: all, Exit: unix.EROFS, Fields: extra})
	return append(append([]Rule{
		{Syscalls: WriteCalls, Exit: unix.EACCES, Fields: extra},
		{Syscalls: WriteCalls, Exit: unix.EPERM, Fields: extra},
	}, opens...), eaccesOpens...)
}

// IsSignal tells whether nr is one of SignalCalls.
func IsSignal(nr int) bool { return slices.Contains(SignalCalls, nr) }

// CallName is the name of a call of SignalCalls, WriteCalls or OpenCalls ("syscall N"
// for any other).
func CallName(nr int) string {
	if n, ok := callNames[nr]; ok {
		return n
	}
	return "syscall " + strconv.Itoa(nr)
}

var callNames = mergeNames(map[int]string{
	unix.SYS_KILL: "kill", unix.SYS_TKILL: "tkill", unix.SYS_TGKILL: "tgkill",
	unix.SYS_RT_SIGQUEUEINFO: "rt_sigqueueinfo", unix.SYS_RT_TGSIGQUEUEINFO: "rt_tgsigqueueinfo",
	unix.SYS_PIDFD_OPEN: "pidfd_open", unix.SYS_OPENAT: "openat", unix.SYS_OPENAT2: "openat2",
	unix.SYS_MKDIRAT: "mkdirat", unix.SYS_MKNODAT: "mknodat", unix.SYS_UNLINKAT: "unlinkat",
	unix.SYS_RENAMEAT: "renameat", unix.SYS_RENAMEAT2: "renameat2", unix.SYS_LINKAT: "linkat",
	unix.SYS_SYMLINKAT: "symlinkat", unix.SYS_FCHMODAT: "fchmodat", unix.SYS_FCHOWNAT: "fchownat",
	unix.SYS_UTIMENSAT: "utimensat", unix.SYS_TRUNCATE: "truncate", unix.SYS_SETXATTR: "setxattr",
	unix.SYS_LSETXATTR: "lsetxattr", unix.SYS_REMOVEXATTR: "removexattr", unix.SYS_LREMOVEXATTR: "lremovexattr",
}, legacyCallNames)

func mergeNames(a, b map[int]string) map[int]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}
