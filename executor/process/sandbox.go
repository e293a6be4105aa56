package process

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/proteus-defense/proteus/executor/internal/decoy"
)

// The sandbox helper. Start runs the driver's own binary as
//
//	<self> __proteus-exec-init <sandbox JSON> <command argv...>
//
// in new mount, PID, IPC and UTS namespaces (when the agent is root; otherwise, where the
// kernel allows it, in a new user namespace of the agent's uid that owns them). Before any main or
// TestMain, this package's init recognises the marker, confines the process step by step —
// join the executor's cgroups, hide the agent's directories behind private mounts, drop to
// the executor's uid and gid, resource limits, no_new_privs, Landlock, seccomp — and then
// execve's the real command in place, so the command keeps the pid the driver knows. Any
// step that fails ends the helper with status 125 and the reason on stderr (captured in
// the executor's output file): an executor never runs with less confinement than the
// driver announced.
const helperArg = "__proteus-exec-init"

// helperExit is the helper's status when confinement could not be set up.
const helperExit = 125

// sandbox is what the helper is told to do. It comes from the driver (argv[2]), never from
// the executor.
type sandbox struct {
	UID int `json:"uid,omitempty"` // 0: keep the agent's uid (degraded)
	GID int `json:"gid,omitempty"`
	// Mounts: in a new mount namespace, cover Hide (the agent's data dir, the image dir) and
	// Private (/tmp, /dev/shm) with fresh tmpfs, bind the work dir back at its own path, and
	// mount a /proc of the new PID namespace.
	Mounts bool `json:"mounts,omitempty"`
	// UserNS: the namespaces belong to a user namespace of the agent's uid; the helper's
	// ambient CAP_SYS_ADMIN (for the mounts) is dropped before the command runs.
	UserNS  bool     `json:"userns,omitempty"`
	Hide    []string `json:"hide,omitempty"`
	Private []string `json:"private,omitempty"`
	WorkDir string   `json:"work_dir"`
	Exe     string   `json:"exe"` // absolute path of the command, opened before the mounts
	Cgroups []string `json:"cgroups,omitempty"`
	// Limits (0: leave as inherited).
	NoFile uint64 `json:"nofile,omitempty"`
	NProc  uint64 `json:"nproc,omitempty"`
	Data   uint64 `json:"data,omitempty"`
	// Landlock is the ABI to use (0: none); Port the only TCP port the executor may bind;
	// Connect lets it connect out (when false no TCP connect is allowed at all).
	Landlock int  `json:"landlock,omitempty"`
	Port     int  `json:"port"`
	Connect  bool `json:"connect,omitempty"`
	Seccomp  bool `json:"seccomp,omitempty"`
	// Report is the descriptor of the socket to the agent that receives the tripwires (see
	// tripwire.go); 0: none. Tripwires fills the covers of Hide with decoys watched by
	// fanotify; Signals hands the signal calls to the agent (seccomp user notification).
	Report    int  `json:"report,omitempty"`
	Tripwires bool `json:"tripwires,omitempty"`
	Signals   bool `json:"signals,omitempty"`
}

func init() {
	if len(os.Args) < 4 || os.Args[1] != helperArg {
		return
	}
	// Everything below runs on this one OS thread: the credentials, no_new_privs, Landlock
	// domain and seccomp filter set here are per thread, and execve keeps only this thread.
	runtime.LockOSThread()
	var sb sandbox
	if err := json.Unmarshal([]byte(os.Args[2]), &sb); err != nil {
		helperFail("spec", err)
	}
	err := sb.enter(os.Args[3:])
	helperFail("exec", err)
}

func helperFail(step string, err error) {
	fmt.Fprintf(os.Stderr, "proteus-exec: %s: %v\n", step, err)
	os.Exit(helperExit)
}

// enter confines the calling thread and execs argv; it returns only on failure.
func (sb *sandbox) enter(argv []string) error {
	for _, cg := range sb.Cgroups {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("0"), 0); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	// Opened while the path is still visible and traversable; exec goes through the fd. No
	// O_CLOEXEC: a script's interpreter reads the script through /dev/fd/N.
	exe, err := unix.Open(sb.Exe, unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", sb.Exe, err)
	}
	var decoys []string
	if sb.Mounts {
		if decoys, err = sb.mount(); err != nil {
			return fmt.Errorf("mounts: %w", err)
		}
	}
	fan := -1
	if sb.Tripwires && len(decoys) > 0 {
		if fan, err = decoy.Arm(decoys); err != nil {
			return fmt.Errorf("tripwires: %w", err)
		}
	} else {
		decoys = nil
	}
	if sb.UID != 0 {
		if err := dropTo(sb.UID, sb.GID); err != nil {
			return fmt.Errorf("drop privileges: %w", err)
		}
	}
	for _, l := range []struct {
		res int
		v   uint64
	}{{unix.RLIMIT_NOFILE, sb.NoFile}, {unix.RLIMIT_NPROC, sb.NProc}, {unix.RLIMIT_DATA, sb.Data}} {
		if l.v == 0 {
			continue
		}
		if err := unix.Prlimit(0, l.res, &unix.Rlimit{Cur: l.v, Max: l.v}, nil); err != nil {
			return fmt.Errorf("rlimit %d: %w", l.res, err)
		}
	}
	if sb.UserNS {
		// Without it the command (same uid, not root) would keep CAP_SYS_ADMIN of the
		// namespace across exec and could undo the mounts.
		if err := dropCaps(); err != nil {
			return fmt.Errorf("drop capabilities: %w", err)
		}
	}
	if _, _, e := unix.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	if sb.Landlock > 0 {
		if err := landlockRestrict(sb.Landlock, sb.writable(), decoys, sb.Port, sb.Connect); err != nil {
			return fmt.Errorf("landlock: %w", err)
		}
	}
	listener := -1
	if sb.Seccomp {
		if listener, err = loadSeccomp(sb.Signals); err != nil {
			return fmt.Errorf("seccomp: %w", err)
		}
	}
	if sb.Report > 0 {
		if err := handOver(sb.Report, fan, listener); err != nil {
			return fmt.Errorf("hand tripwires to the agent: %w", err)
		}
	}
	return execveat(exe, argv, os.Environ())
}

// writable are the only paths Landlock lets the executor change: its work dir, the private
// tmpfs mounts (only when they are private) and the character devices (/dev/null, ttys).
func (sb *sandbox) writable() []string {
	w := []string{sb.WorkDir}
	if sb.Mounts {
		w = append(w, sb.Private...)
	}
	return w
}

// mount builds the executor's view of the file system in its new mount namespace; with
// Tripwires it returns the decoy files it made in the covers of Hide.
func (sb *sandbox) mount() ([]string, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make / private: %w", err)
	}
	work, err := unix.Open(sb.WorkDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open work dir: %w", err)
	}
	// What the covers will hide, listed while it is still visible (a Hide dir may be below
	// a Private one: the image in /tmp).
	plans := map[string][]decoy.Entry{}
	if sb.Tripwires {
		for _, dir := range sb.Hide {
			plans[dir] = decoy.Plan(dir, sb.WorkDir)
		}
	}
	defer unix.Close(work)
	var covered []string
	cover := func(dir, opts string) error {
		for _, c := range covered {
			if decoy.Within(dir, c) {
				return nil // already hidden under an earlier cover
			}
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil // nothing there to hide
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
		covered = append(covered, dir)
		return nil
	}
	for _, dir := range sb.Private {
		if err := cover(dir, "mode=1777,size=64m"); err != nil {
			return nil, err
		}
	}
	for _, dir := range sb.Hide {
		if err := cover(dir, "mode=0755,size=1m"); err != nil {
			return nil, err
		}
	}
	var decoys []string
	for _, dir := range sb.Hide {
		files, err := decoy.Make(dir, plans[dir])
		if err != nil {
			return nil, fmt.Errorf("decoys in %s: %w", dir, err)
		}
		decoys = append(decoys, files...)
	}
	if err := os.MkdirAll(sb.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir mount point: %w", err)
	}
	src := fmt.Sprintf("/proc/self/fd/%d", work)
	if err := unix.Mount(src, sb.WorkDir, "", unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return nil, fmt.Errorf("bind work dir: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("proc: %w", err)
	}
	// localhost: a name every /etc/hosts resolves, so a server that looks up its own host
	// name (Knot does at start) finds it without a DNS query, which its firewall refuses
	// (and counts as evidence against it) unless it may connect out.
	if err := unix.Sethostname([]byte("localhost")); err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	return decoys, nil
}

// dropTo sets the calling thread's groups, gid and uid. Raw syscalls on purpose: the C
// library and the Go runtime would change every thread, and only this one execs.
func dropTo(uid, gid int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", uid, e)
	}
	return nil
}

// dropCaps clears the calling thread's ambient, inheritable, permitted and effective
// capabilities (raw syscalls: this thread only, as for dropTo).
func dropCaps() error {
	if _, _, e := unix.RawSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clear ambient: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := unix.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}

// execveat runs the file behind fd in place of the calling process.
func execveat(fd int, argv, env []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	empty, _ := syscall.BytePtrFromString("")
	_, _, e := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return fmt.Errorf("execveat %s: %w", argv[0], e)
}
