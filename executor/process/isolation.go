package process

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/decoy"
	"github.com/proteus-defense/proteus/executor/internal/kaudit"
	"github.com/proteus-defense/proteus/executor/netguard"
)

// ErrIsolation is returned by New when the configuration requires full isolation and the
// machine or the agent's privileges do not allow it.
var ErrIsolation = errors.New("executor/process: isolation")

// probeArg makes the helper's probe run end at once with status 0.
const probeArg = "__proteus-exec-probe"

func init() {
	if len(os.Args) == 2 && os.Args[1] == probeArg {
		os.Exit(0)
	}
}

// isolation is what the driver found the machine and its privileges allow, decided once in
// New: full (root: own uid, namespaces, cgroups) or degraded (the agent's uid; what an
// unprivileged process can still do: a user namespace owning new mount, PID, IPC and UTS
// namespaces where the kernel allows it, rlimits, no_new_privs, Landlock, seccomp).
type isolation struct {
	cfg  executor.Isolation
	on   bool // the helper confines every executor
	full bool
	// userns: degraded, but in a user namespace of the agent's uid that owns new mount, PID,
	// IPC and UTS namespaces, so the private mounts and the PID namespace are there as in
	// full isolation (the helper holds CAP_SYS_ADMIN of that namespace, as an ambient
	// capability, until it execs the command).
	userns   bool
	degraded string // why not full
	landlock int
	seccomp  bool
	// tripwires: decoys watched by fanotify in the covers (full isolation only); signals:
	// signal calls handed to the agent by seccomp user notification (with a PID namespace).
	tripwires, signals bool
	cg                 *cgroups
	fw                 *netguard.Guard // nil: no nftables; Landlock then refuses TCP connects
	audit              *kaudit.Watch   // nil: no audit evidence (audit.go)
	summary            string          // for Instance.Isolation, without the uid
}

// namespaceFlags are the namespaces each executor gets when the agent is root.
const namespaceFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS

// setupIsolation decides the isolation from cfg and what this machine allows, proving it by
// starting one confined probe (the helper runs every step, then execs self in probe mode).
func (d *Driver) setupIsolation(cfg executor.Isolation) error {
	iso := &isolation{cfg: cfg}
	d.iso = iso
	switch cfg.Mode {
	case executor.IsolationOff:
		iso.summary = "off"
		d.log.Warn("executor isolation is off: executors run with the agent's uid and privileges")
		return nil
	case executor.IsolationAuto, executor.IsolationRequired:
	default:
		return fmt.Errorf("%w: unknown mode %q (want auto, required or off)", ErrIsolation, cfg.Mode)
	}
	iso.on = true
	iso.landlock = landlockABI()
	iso.seccomp = seccomp.Supported()
	if os.Geteuid() == 0 {
		if err := checkUIDRange(cfg.UIDFirst, cfg.UIDCount); err != nil {
			return fmt.Errorf("%w: %w", ErrIsolation, err)
		}
		var why []string
		iso.cg, why = findCgroups(d.agent)
		for _, w := range why {
			d.log.Info("cgroup controller not usable", "reason", w)
		}
		iso.full = true
		if err := d.probe(iso); err != nil {
			iso.full = false
			iso.degraded = fmt.Sprintf("namespaces or own uid refused: %v", err)
		}
		if iso.full {
			iso.tripwires = decoy.Usable()
			iso.signals = iso.seccomp && notifyUsable()
			if !iso.tripwires || !iso.signals {
				d.log.Warn("refused reads, writes or signals of executors leave no evidence here", "fanotify", iso.tripwires, "seccomp_notify", iso.signals)
			}
			fw, err := netguard.New()
			if err != nil {
				d.log.Warn("no nftables: executors' TCP connects are refused by Landlock alone, UDP is not filtered, and attempts leave no evidence", "err", err)
			}
			iso.fw = fw
			d.startAudit(cfg.UIDFirst, cfg.UIDFirst+cfg.UIDCount-1)
		}
	} else {
		iso.userns = true
		if err := d.probe(iso); err != nil {
			iso.userns = false
			d.log.Warn("no user namespace for executors: no private mounts, no PID namespace", "err", err)
		}
		// With a PID namespace the signal watch needs no privilege (seccomp user
		// notification under no_new_privs; the agent owns the executor's namespaces).
		iso.signals = iso.userns && iso.seccomp && notifyUsable()
		iso.degraded = fmt.Sprintf("agent runs as uid %d, not root: executors share its uid, no cgroups, no firewall", os.Geteuid())
		if !iso.userns {
			iso.degraded += ", no namespaces"
		}
	}
	if !iso.full && !iso.userns {
		iso.cg = nil
		if err := d.probe(iso); err != nil {
			return fmt.Errorf("%w: even degraded confinement fails: %w", ErrIsolation, err)
		}
	}
	iso.summary = iso.describe()
	if !iso.full {
		if cfg.Mode == executor.IsolationRequired {
			return fmt.Errorf("%w: pool.isolation.mode is required but isolation is degraded: %s", ErrIsolation, iso.degraded)
		}
		d.log.Warn("degraded isolation", "reason", iso.degraded, "isolation", iso.summary)
	} else {
		d.log.Info("executor isolation", "isolation", iso.summary, "uids", fmt.Sprintf("%d-%d", cfg.UIDFirst, cfg.UIDFirst+cfg.UIDCount-1))
	}
	return nil
}

func (iso *isolation) describe() string {
	var parts []string
	if iso.full {
		parts = append(parts, "full isolation: own uid+gid", "ns mnt+pid+ipc+uts")
	} else {
		parts = append(parts, "degraded isolation ("+iso.degraded+")")
		if iso.userns {
			parts = append(parts, "ns user+mnt+pid+ipc+uts")
		}
		parts = append(parts, "no_new_privs")
	}
	if iso.full {
		parts = append(parts, "no_new_privs")
	}
	if iso.seccomp {
		parts = append(parts, "seccomp")
	}
	if iso.tripwires {
		parts = append(parts, "fanotify tripwires")
	}
	if iso.signals {
		parts = append(parts, "signal watch")
	}
	if iso.landlock > 0 {
		parts = append(parts, fmt.Sprintf("landlock v%d", iso.landlock))
	}
	if iso.fw != nil {
		parts = append(parts, "nftables")
	}
	if iso.audit != nil {
		parts = append(parts, "audit")
	}
	if n := iso.cg.names(); len(n) > 0 {
		v := "v1"
		if iso.cg.v2 {
			v = "v2"
		}
		parts = append(parts, "cgroup "+v+" "+strings.Join(n, "+"))
	}
	var rl []string
	if iso.cfg.OpenFiles > 0 {
		rl = append(rl, "nofile")
	}
	if iso.full && iso.cfg.Processes > 0 {
		rl = append(rl, "nproc")
	}
	if iso.cfg.Memory > 0 && !slices.Contains(iso.cg.names(), "memory") {
		rl = append(rl, "data")
	}
	if len(rl) > 0 {
		parts = append(parts, "rlimit "+strings.Join(rl, "+"))
	}
	return strings.Join(parts, ", ")
}

// probe confines one throwaway process the way Start would, and checks that it ran.
func (d *Driver) probe(iso *isolation) error {
	dir, err := os.MkdirTemp(d.workDir, ".probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	uid := 0
	if iso.full {
		if uid, err = d.takeUID(".probe"); err != nil {
			return err
		}
		defer d.releaseUID(uid)
		if err := os.Chown(dir, uid, uid); err != nil {
			return err
		}
	}
	sb := d.sandboxFor(iso, uid, dir, d.self, nil, 0, false)
	cmd := d.helperCommand(iso, sb, []string{d.self, probeArg})
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// coverFor is the directory whose cover hides dataDir from an executor with its own uid:
// the topmost ancestor of dataDir that others may not search (the executor could not reach
// its work dir's mount point below it otherwise, so confinement would fail and degrade: /root
// for a data dir in root's home), or dataDir itself when every ancestor is searchable.
func coverFor(dataDir string) string {
	cover := dataDir
	for dir := filepath.Dir(dataDir); dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 == 0 {
			cover = dir
		}
	}
	return cover
}

// sandboxFor is the helper's instructions for one executor.
func (d *Driver) sandboxFor(iso *isolation, uid int, work, exe string, cgroups []string, port int, connect bool) sandbox {
	sb := sandbox{
		UID: uid, GID: uid, WorkDir: work, Exe: exe, Cgroups: cgroups, Port: port,
		// With nftables the firewall refuses (and counts) connects; Landlock would refuse
		// them before any packet exists, leaving no evidence.
		Connect:  connect || iso.fw != nil,
		Landlock: iso.landlock, Seccomp: iso.seccomp, NoFile: uint64(iso.cfg.OpenFiles),
	}
	if port > 0 && (iso.tripwires || iso.signals) { // not the probe: nobody would listen
		sb.Report, sb.Tripwires, sb.Signals = reportFD, iso.tripwires, iso.signals
	}
	if iso.namespaces() {
		sb.Mounts, sb.UserNS = true, iso.userns
		sb.Private = []string{"/tmp", "/var/tmp", "/dev/shm"}
		sb.Hide = []string{d.dataDir}
		if iso.full {
			sb.Hide = []string{coverFor(d.dataDir)}
		}
	}
	if iso.full {
		sb.NProc = uint64(iso.cfg.Processes)
		if slices.Contains(iso.cg.names(), "pids") {
			// The pids cgroup is the limit (its refusals are counted, so they are evidence);
			// the per-uid rlimit stays as a looser backstop for anything outside the group.
			sb.NProc *= 2
		}
	}
	if iso.cfg.Memory > 0 && !slices.Contains(iso.cg.names(), "memory") {
		sb.Data = uint64(iso.cfg.Memory)
	}
	return sb
}

// reportFD is the descriptor of the helper's socket to the agent (the first of ExtraFiles).
const reportFD = 3

// reportSocket makes the socket pair over which the helper hands its tripwires to the
// agent: the agent's end, and the helper's (for ExtraFiles, closed by the agent once the
// helper has started).
func reportSocket() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("tripwire socket: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "tripwires")
	defer mine.Close()
	c, err := net.FileConn(mine)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("tripwire socket: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "tripwires-helper"), nil
}

// namespaces reports whether executors get their own mount, PID, IPC and UTS namespaces.
func (iso *isolation) namespaces() bool { return iso.full || iso.userns }

// helperCommand runs argv through the helper with sb, in new namespaces when isolation is
// full or has a user namespace.
func (d *Driver) helperCommand(iso *isolation, sb sandbox, argv []string) *exec.Cmd {
	spec, _ := json.Marshal(sb) // plain data: cannot fail
	cmd := exec.Command(d.self, append([]string{helperArg, string(spec)}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	switch {
	case iso.full:
		cmd.SysProcAttr.Cloneflags = namespaceFlags
	case iso.userns:
		// The agent's own uid and gid, mapped to themselves: the executor is no one else
		// inside than outside. Unprivileged, the gid map needs setgroups denied.
		uid, gid := os.Geteuid(), os.Getegid()
		cmd.SysProcAttr.Cloneflags = namespaceFlags | syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
		cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN} // for the mounts; dropped before the command
	}
	return cmd
}

// checkUIDRange refuses a range that holds uid 0 or any user or group the system knows:
// an executor must never share an identity with anything else on the machine.
func checkUIDRange(first, count int) error {
	if first < 1 || count < 1 || first+count-1 > 1<<31-2 {
		return fmt.Errorf("uid range %d+%d: must be within [1, 2^31-2]", first, count)
	}
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		file, err := os.Open(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 3 {
				continue
			}
			id, err := strconv.Atoi(fields[2])
			if err == nil && id >= first && id < first+count {
				file.Close()
				return fmt.Errorf("uid range %d-%d holds %s %q (id %d) from %s", first, first+count-1,
					map[string]string{"/etc/passwd": "user", "/etc/group": "group"}[f], fields[0], id, f)
			}
		}
		file.Close()
	}
	return nil
}

// agentID is the first 16 hex digits of the SHA-256 of the data dir's absolute path: the
// cgroups and firewall rules of one driver are kept apart from those of another agent (or
// test) on the same machine, so its clean-up never touches theirs.
func agentID(dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sum := sha256.Sum256([]byte(dataDir))
	return hex.EncodeToString(sum[:8])
}

// fwKey names an instance's firewall rules: agent/instance.
func (d *Driver) fwKey(id string) string { return d.agent + "/" + id }

// uidLockDir holds one lock file per executor uid in use on the machine, shared by every
// driver (several agents, or tests running side by side): a uid is taken by holding an
// exclusive flock on its file, which the kernel drops when the holder dies, as systemd does
// for DynamicUser.
var uidLockDir = "/run/proteus/uids"

// takeUID reserves a free uid of the range for instance id (random, so a uid does not say
// how many executors came before).
func (d *Driver) takeUID(id string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	first, n := d.iso.cfg.UIDFirst, d.iso.cfg.UIDCount
	var b [8]byte
	_, _ = rand.Read(b[:])
	start := int(binary.BigEndian.Uint64(b[:]) % uint64(n))
	for i := range n {
		uid := first + (start+i)%n
		if _, used := d.uids[uid]; used {
			continue
		}
		f, err := lockUID(uid)
		if err != nil {
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // another driver on this machine holds it
			}
			return 0, err
		}
		d.uids[uid] = id
		d.uidLocks[uid] = f
		return uid, nil
	}
	return 0, fmt.Errorf("all %d uids of the range %d-%d are in use", n, first, first+n-1)
}

// lockUID takes uid's machine-wide lock without waiting.
func lockUID(uid int) (*os.File, error) {
	if err := os.MkdirAll(uidLockDir, 0o700); err != nil {
		return nil, fmt.Errorf("uid locks: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(uidLockDir, strconv.Itoa(uid)), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("uid lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (d *Driver) releaseUID(uid int) {
	if uid == 0 {
		return
	}
	d.mu.Lock()
	delete(d.uids, uid)
	if f := d.uidLocks[uid]; f != nil {
		f.Close()
		delete(d.uidLocks, uid)
	}
	d.mu.Unlock()
}

// holdLeftoverUID keeps the uid of an earlier agent's instance until it is stopped.
func (d *Driver) holdLeftoverUID(uid int, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.uids[uid] = id
	if f, err := lockUID(uid); err == nil {
		d.uidLocks[uid] = f
	}
}

// chownTree gives the work directory and everything in it to uid.
func chownTree(dir string, uid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

// resolveExe finds the command's file the way exec would, relative paths from the work dir,
// so that a missing or non-executable command fails Start rather than the helper.
func resolveExe(argv0, work string) (string, error) {
	if !strings.Contains(argv0, "/") {
		return exec.LookPath(argv0)
	}
	if !filepath.IsAbs(argv0) {
		argv0 = filepath.Join(work, argv0)
	}
	st, err := os.Stat(argv0)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", argv0)
	}
	return argv0, nil
}

// watchLimits polls the executor's cgroup and firewall counters while it runs: the first
// refused fork, OOM kill or refused packet is evidence (see deny). It returns when the
// executor has exited.
func (d *Driver) watchLimits(p *proc, inst *executor.Instance) {
	t := time.NewTicker(limitPoll)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		if d.limitHit(p, inst) {
			return
		}
	}
}

// limitPoll is how often the counters are read.
const limitPoll = 250 * time.Millisecond

// limitHit reports (and acts on) a refused fork, an OOM kill or a refused packet seen in
// inst's counters.
func (d *Driver) limitHit(p *proc, inst *executor.Instance) bool {
	forks, ooms := d.iso.cg.hits(p.cgroups)
	var packets uint64
	if d.iso.fw != nil && p.uid != 0 {
		packets = d.iso.fw.Refused(d.fwKey(inst.ID))
	}
	var den executor.Denial
	extra := map[string]any{"oom_kills": ooms, "refused_forks": forks, "refused_packets": packets}
	switch {
	case ooms > 0:
		den = executor.Denial{Reason: executor.DeniedMemory, RefusedBy: "cgroup memory (OOM kill)",
			Attempted: fmt.Sprintf("allocate beyond its memory limit (%d bytes)", d.iso.cfg.Memory)}
	case forks > 0:
		den = executor.Denial{Reason: executor.DeniedProcesses, RefusedBy: "cgroup pids (fork refused)",
			Attempted: fmt.Sprintf("start processes beyond its limit (%d)", d.iso.cfg.Processes)}
	case packets > 0:
		den = executor.Denial{Reason: executor.DeniedNetwork, RefusedBy: "nftables (table inet " + netguard.Table + ")",
			Attempted: fmt.Sprintf("open a connection it may not (%d packets refused)", packets)}
	default:
		return false
	}
	den.Extra = extra
	d.deny(p, inst, den)
	return true
}

// deny acts once per instance on evidence that it tried what its confinement refused: it
// publishes EventDenied, marks the work dir to be kept for forensics (as a quarantine
// would) and kills the executor, so the pool replaces it from its known-good image.
func (d *Driver) deny(p *proc, inst *executor.Instance, den executor.Denial) {
	if !p.denied.CompareAndSwap(false, true) {
		return
	}
	p.keep.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	den.Variant = inst.Variant
	if den.Extra == nil {
		den.Extra = map[string]any{}
	}
	den.Extra["work_dir"] = inst.WorkDir
	d.log.Warn("executor refused by its confinement: killed, work dir kept", "id", inst.ID, "variant", inst.Variant,
		"reason", den.Reason, "attempted", den.Attempted, "refused_by", den.RefusedBy)
	d.publish(executor.EventDenied, inst.ID, den.Attrs())
}

// exitEvidence looks at how a confined executor ended: SIGSYS is the seccomp filter
// killing it for a denied call; the cgroup counters tell a limit hit.
func (d *Driver) exitEvidence(p *proc, inst *executor.Instance, err error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGSYS {
			d.deny(p, inst, executor.Denial{Reason: executor.DeniedSeccomp, RefusedBy: "seccomp (killed with SIGSYS)",
				Attempted: "a system call its seccomp filter forbids (ptrace, mount, bpf, module loading, ...)",
				Extra:     map[string]any{"signal": "SIGSYS"}})
			return
		}
	}
	d.limitHit(p, inst)
}

// sweep removes what no record accounts for: cgroups of executors an earlier agent lost
// track of, and processes running with a uid of the range that no instance holds (an
// executor's child that escaped its group, say). Called by Cleanup.
func (d *Driver) sweep() error {
	if !d.iso.on {
		return nil
	}
	known := func(id string) bool {
		d.mu.Lock()
		_, live := d.procs[id]
		d.mu.Unlock()
		_, err := os.Stat(filepath.Join(d.runDir, id+".json"))
		return live || err == nil
	}
	var errs []error
	bases := map[string]bool{}
	for _, c := range cgroupControllers {
		if d.iso.cg != nil && d.iso.cg.bases[c] != "" {
			bases[d.iso.cg.bases[c]] = true
		}
	}
	for base := range bases {
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			if e.IsDir() && !known(e.Name()) {
				if err := removeCgroups([]string{filepath.Join(base, e.Name())}); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if d.iso.fw != nil {
		mine := d.agent + "/"
		if err := d.iso.fw.Remove(func(key string) bool {
			id, ok := strings.CutPrefix(key, mine)
			return ok && !known(id) // other agents' rules are theirs to remove
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if d.iso.full {
		first, n := d.iso.cfg.UIDFirst, d.iso.cfg.UIDCount
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			uid := procUID(pid)
			if uid < first || uid >= first+n {
				continue
			}
			d.mu.Lock()
			_, held := d.uids[uid]
			d.mu.Unlock()
			if held {
				continue
			}
			f, err := lockUID(uid)
			if err != nil {
				continue // held by another driver on this machine: its executor, not a stray
			}
			d.log.Warn("killing a stray process of the executor uid range", "pid", pid, "uid", uid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			f.Close()
		}
	}
	return errors.Join(errs...)
}

// procUID is the real uid of pid (-1 when unknown).
func procUID(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					return n
				}
			}
		}
	}
	return -1
}
