// Package process is the embedded executor driver: it runs each executor as a local process
// started from a known-good image directory. Every start verifies the image against its
// MANIFEST.sha256 while copying it into a fresh private work directory, picks a fresh random
// loopback port, and starts the command in its own process group with its output captured
// (bounded) in the work directory. Stop sends SIGTERM to the group and SIGKILL after a grace
// period; Quarantine sends SIGSTOP and keeps the work directory for forensics. A record file
// per instance lets a restarted agent find and clean up what a killed agent left behind.
//
// State lives below <data-dir>/executor/process: run/<id>.json (records) and work/<id>/ (work
// directories). It registers itself as the driver "process". It must not import the pool's
// users (mimic, mtd, api, engine) or cmd.
package process

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/render"
)

// ID is the name the driver registers under.
const ID = "process"

// Defaults.
const (
	DefaultGrace = 5 * time.Second
	// MaxOutput bounds the captured stdout+stderr of one executor; later output is dropped.
	MaxOutput = 1 << 20
	// OutputFile is the name of the captured output inside the work directory.
	OutputFile = "proteus-output.log"
	// RecordFile is the copy of the instance record kept in a quarantined work directory.
	RecordFile     = "proteus-record.json"
	portLo, portHi = 20000, 32767 // below Linux's ephemeral range, so no client socket holds them
)

func init() {
	executor.Register(ID, func(env executor.Env) (executor.Driver, error) { return New(env) })
}

var (
	_ executor.Driver      = (*Driver)(nil)
	_ executor.Validator   = (*Driver)(nil)
	_ executor.ExitWatcher = (*Driver)(nil)
	_ executor.Cleaner     = (*Driver)(nil)
)

// Driver runs executors as local processes. It is safe for concurrent use.
type Driver struct {
	dataDir         string
	agent           string // short hash of the data dir: scopes this driver's cgroups and firewall rules
	runDir, workDir string
	iso             *isolation
	grace           time.Duration
	self            string
	log             *slog.Logger
	bus             *bus.Bus

	mu    sync.Mutex
	procs map[string]*proc // started by this driver and not yet stopped
	ports map[int]bool     // ports handed out to live instances
	uids  map[int]string   // executor uids in use (live instances and leftovers), by instance ID
	// uidLocks hold the machine-wide locks of the uids in use (see lockUID).
	uidLocks map[int]*os.File
}

type proc struct {
	cmd         *exec.Cmd
	done        chan struct{} // closed when the process has exited
	quarantined bool
	stopping    atomic.Bool // Stop has begun: an exit is expected
	out         *capWriter
	uid         int                // the executor's own uid (0: the agent's)
	cgroups     []string           // its cgroup directories
	fwID        string             // set when firewall rules were installed for it
	report      *net.UnixConn      // the agent's end of the helper's tripwire socket
	reportChild *os.File           // the helper's end, closed once it has started
	inst        *executor.Instance // set once started
	denied      atomic.Bool        // EventDenied was published
	keep        atomic.Bool        // ended by a denied action: keep the work dir like a quarantine
}

// record is what run/<id>.json holds: enough to find and kill the process group after an
// agent restart without hitting an unrelated process that reused the pid.
type record struct {
	Instance    *executor.Instance `json:"instance"`
	PID         int                `json:"pid"`
	StartTicks  string             `json:"start_ticks,omitempty"` // /proc/<pid>/stat field 22
	Quarantined bool               `json:"quarantined,omitempty"`
	UID         int                `json:"uid,omitempty"`
	Cgroups     []string           `json:"cgroups,omitempty"`
}

// WorkDir is the work directory of the process executor id of the agent with dataDir: a
// copy of its image, its command's current directory (kept for forensics when quarantined).
func WorkDir(dataDir, id string) string { return filepath.Join(dataDir, "executor", ID, "work", id) }

// New builds a driver keeping its state below env.DataDir/executor/process. With
// env.Isolation on, it finds out (and proves, with one confined probe) how far this machine
// and the agent's privileges let it confine executors; see isolation.go.
func New(env executor.Env) (*Driver, error) {
	if env.DataDir == "" {
		return nil, errors.New("executor/process: no data dir")
	}
	base := filepath.Join(env.DataDir, "executor", ID)
	d := &Driver{
		dataDir:  filepath.Clean(env.DataDir),
		agent:    agentID(env.DataDir),
		uids:     map[int]string{},
		uidLocks: map[int]*os.File{},
		runDir:   filepath.Join(base, "run"),
		workDir:  filepath.Join(base, "work"),
		grace:    env.StopGrace,
		log:      env.Logger,
		bus:      env.Bus,
		procs:    map[string]*proc{},
		ports:    map[int]bool{},
	}
	if d.grace <= 0 {
		d.grace = DefaultGrace
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("component", "executor/process")
	for _, dir := range []string{d.runDir, d.workDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("executor/process: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("executor/process: own executable: %w", err)
	}
	d.self = self
	if err := d.setupIsolation(env.Isolation); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(d.runDir); err == nil {
		for _, e := range ents { // leftovers keep their uids until they are stopped
			if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
				if rec, err := d.readRecord(id); err == nil && rec.UID != 0 {
					d.holdLeftoverUID(rec.UID, id)
				}
			}
		}
	}
	return d, nil
}

// Isolation describes how the driver confines executors ("off", "full isolation: ...",
// "degraded isolation (reason): ...").
func (d *Driver) Isolation() string { return d.iso.summary }

func (d *Driver) publish(kind, subject string, attrs map[string]any) {
	d.bus.Publish(bus.Event{Kind: kind, Source: "executor/process", Subject: subject, Attrs: attrs})
}

// TemplateData is what every element of Spec.Command and every Spec.Files template may use.
type TemplateData struct {
	Port int    // the fresh loopback port the executor must listen on (TCP and UDP)
	IP   string // the address it listens on: 127.0.0.1
	Addr string // IP:Port
	Dir  string // the private work directory (holding the image copy); also the process's cwd
	// State is Dir/state, an empty directory for what the executor writes itself (a DNS
	// server's pid file, cache or journal); the file-integrity sensor does not check it.
	State string
	Self  string // path of the running proteus binary (for the built-in demo servers)
	// Files is where the rendered Spec.Files are: Dir (the docker driver has them in a
	// directory of their own), so a template naming {{.Files}} serves both drivers.
	Files string
}

// StateDir is the name of TemplateData.State inside the work directory.
const StateDir = "state"

var variantRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidateSpec checks a spec without starting anything.
func (d *Driver) ValidateSpec(spec executor.Spec) error {
	if !variantRe.MatchString(spec.Variant) {
		return fmt.Errorf("executor/process: variant %q: must match %s", spec.Variant, variantRe)
	}
	if spec.Image == "" {
		return fmt.Errorf("executor/process: variant %s: no image directory", spec.Variant)
	}
	if len(spec.Command) == 0 {
		return fmt.Errorf("executor/process: variant %s: no command", spec.Variant)
	}
	for name := range spec.Files {
		if err := checkFileName(name); err != nil {
			return fmt.Errorf("executor/process: variant %s: files: %w", spec.Variant, err)
		}
	}
	if err := render.Check(spec.Command, spec.Files, TemplateData{}); err != nil {
		return fmt.Errorf("executor/process: variant %s: %w", spec.Variant, err)
	}
	for k := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("executor/process: variant %s: bad env name %q", spec.Variant, k)
		}
	}
	return nil
}

// checkFileName accepts a clean relative slash path that stays in the work directory and
// names none of the driver's own files.
func checkFileName(name string) error {
	switch {
	case name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") ||
		strings.ContainsAny(name, "\x00\\"):
		return fmt.Errorf("%q: want a clean relative path inside the work directory", name)
	case name == ManifestName || name == OutputFile || name == RecordFile || name == StateDir || strings.HasPrefix(name, StateDir+"/"):
		return fmt.Errorf("%q: the driver's own file or directory", name)
	}
	return nil
}

func newID(variant string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return variant + "-" + hex.EncodeToString(b[:])
}

// Start verifies and copies the image, then starts the command on a fresh port.
func (d *Driver) Start(ctx context.Context, spec executor.Spec) (*executor.Instance, error) {
	if err := d.ValidateSpec(spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	id := newID(spec.Variant)
	work := filepath.Join(d.workDir, id)
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(work)
		}
	}()
	digest, err := copyVerified(spec.Image, work)
	if err != nil {
		var te *tamperError
		if errors.As(err, &te) {
			d.log.Error("tampered image refused", "variant", spec.Variant, "image", spec.Image, "reason", te.detail)
			d.bus.Publish(bus.Event{Kind: executor.EventTamperedImage, Source: "executor/process", Subject: spec.Variant,
				Attrs: map[string]any{"image": spec.Image, "reason": te.detail}})
			return nil, fmt.Errorf("executor/process: start %s: %w: %s", spec.Variant, executor.ErrTamperedImage, te.detail)
		}
		return nil, fmt.Errorf("executor/process: start %s: copy image: %w", spec.Variant, err)
	}
	port, err := d.pickPort()
	if err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	defer func() {
		if !ok {
			d.releasePort(port)
		}
	}()
	data := TemplateData{Port: port, IP: "127.0.0.1", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: work,
		State: filepath.Join(work, StateDir), Self: d.self, Files: work}
	argv, err := render.Argv(spec.Command, data)
	if err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	if err := os.Mkdir(data.State, 0o700); err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	rendered, err := render.Files(spec.Files, work, data, 0o700, 0o644)
	if err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	p := &proc{done: make(chan struct{})}
	cmd, isolation, err := d.command(id, spec, argv, work, port, p)
	if err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	defer func() {
		if !ok {
			d.unconfine(p.fwID, p.cgroups, p.uid)
			if p.reportChild != nil {
				p.reportChild.Close()
				p.report.Close()
			}
		}
	}()
	out, err := newCapWriter(filepath.Join(work, OutputFile), MaxOutput)
	if err != nil {
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	cmd.Dir = work
	cmd.Env = childEnv(spec.Env, id, port, p.uid != 0, work)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	if p.reportChild != nil {
		p.reportChild.Close()
	}
	if err != nil {
		out.Close()
		if p.report != nil {
			p.report.Close()
		}
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	inst := &executor.Instance{
		ID: id, Variant: spec.Variant, Driver: ID, Address: data.Addr, ImageDigest: digest,
		Started: time.Now(), Traits: spec.Traits, Handle: strconv.Itoa(cmd.Process.Pid), WorkDir: work,
		Isolation: isolation, Rendered: rendered,
	}
	p.cmd, p.out, p.inst = cmd, out, inst
	go func() {
		err := cmd.Wait()
		out.Close()
		if d.iso.on {
			d.exitEvidence(p, inst, err)
		}
		if !p.stopping.Load() {
			// An exit nobody asked for: keep the reason in the agent's log, since the work
			// directory (and the output file in it) goes away with the instance.
			d.log.Warn("executor exited", "id", id, "variant", spec.Variant, "err", err, "output_tail", tail(filepath.Join(work, OutputFile), 1024))
		}
		close(p.done)
	}()
	if len(p.cgroups) > 0 || p.fwID != "" {
		go d.watchLimits(p, inst)
	}
	if p.report != nil {
		go d.watchTripwires(p, inst, p.report)
	}
	rec := record{Instance: inst, PID: cmd.Process.Pid, StartTicks: startTicks(cmd.Process.Pid), UID: p.uid, Cgroups: p.cgroups}
	if err := d.writeRecord(rec); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return nil, fmt.Errorf("executor/process: start %s: %w", spec.Variant, err)
	}
	d.mu.Lock()
	d.procs[id] = p
	d.mu.Unlock()
	ok = true
	d.log.Info("started", "id", id, "variant", spec.Variant, "addr", inst.Address, "pid", rec.PID, "image", digest, "isolation", isolation)
	d.publish(executor.EventStarted, id, map[string]any{"variant": spec.Variant, "address": inst.Address, "pid": rec.PID,
		"image_digest": digest, "isolation": isolation})
	return inst, nil
}

// command builds the executor's command: plain (isolation off) or through the sandbox
// helper, with its own uid, work dir ownership and cgroups set up (recorded in p).
func (d *Driver) command(id string, spec executor.Spec, argv []string, work string, port int, p *proc) (*exec.Cmd, string, error) {
	iso := d.iso
	if !iso.on {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd, iso.summary, nil
	}
	exe, err := resolveExe(argv[0], work)
	if err != nil {
		return nil, "", err
	}
	summary := iso.summary
	if iso.full {
		uid, err := d.takeUID(id)
		if err != nil {
			return nil, "", err
		}
		p.uid = uid
		if err := chownTree(work, uid); err != nil {
			return nil, "", fmt.Errorf("give work dir to uid %d: %w", uid, err)
		}
		summary = strings.Replace(summary, "own uid+gid", fmt.Sprintf("uid+gid %d", uid), 1)
		if iso.fw != nil {
			p.fwID = d.fwKey(id)
			if err := iso.fw.AllowUID(p.fwID, uid, spec.AllowOutbound); err != nil {
				p.fwID = ""
				return nil, "", err
			}
		}
	}
	cgs, err := iso.cg.create(id, limits{memory: iso.cfg.Memory, processes: iso.cfg.Processes, cpu: iso.cfg.CPU})
	if err != nil {
		return nil, "", fmt.Errorf("cgroups: %w", err)
	}
	p.cgroups = cgs
	sb := d.sandboxFor(iso, p.uid, work, exe, cgs, port, spec.AllowOutbound)
	if filepath.IsAbs(spec.Image) {
		sb.Hide = append(sb.Hide, filepath.Clean(spec.Image))
	}
	cmd := d.helperCommand(iso, sb, argv)
	if sb.Report != 0 {
		if p.report, p.reportChild, err = reportSocket(); err != nil {
			return nil, "", err
		}
		cmd.ExtraFiles = []*os.File{p.reportChild} // fd 3 = reportFD
	}
	return cmd, summary, nil
}

// unconfine removes an ended executor's firewall rules and cgroups and frees its uid.
func (d *Driver) unconfine(fwID string, cgroups []string, uid int) error {
	var errs []error
	if fwID != "" && d.iso.fw != nil {
		errs = append(errs, d.iso.fw.Remove(func(id string) bool { return id == fwID }))
	}
	errs = append(errs, removeCgroups(cgroups))
	d.releaseUID(uid)
	return errors.Join(errs...)
}

// childEnv is a small, explicit environment: the agent's own secrets never reach executors.
// An executor with its own uid gets its work dir as HOME.
func childEnv(extra map[string]string, id string, port int, ownUID bool, work string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "PROTEUS_EXECUTOR_ID=" + id, "PROTEUS_PORT=" + strconv.Itoa(port)}
	if ownUID {
		env = append(env, "HOME="+work)
	} else if h := os.Getenv("HOME"); h != "" {
		env = append(env, "HOME="+h)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// pickPort draws a random loopback port, free for TCP and UDP, that no live instance of this
// driver uses.
func (d *Driver) pickPort() (int, error) {
	for range 64 {
		var b [2]byte
		_, _ = rand.Read(b[:])
		port := portLo + int(binary.BigEndian.Uint16(b[:]))%(portHi-portLo+1)
		d.mu.Lock()
		taken := d.ports[port]
		if !taken {
			d.ports[port] = true
		}
		d.mu.Unlock()
		if taken {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			d.releasePort(port)
			continue
		}
		pc, err := net.ListenPacket("udp", addr) // free for UDP too: a DNS server takes both
		ln.Close()
		if err != nil {
			d.releasePort(port)
			continue
		}
		pc.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port found")
}

func (d *Driver) releasePort(port int) {
	d.mu.Lock()
	delete(d.ports, port)
	d.mu.Unlock()
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Exited returns a channel closed when the instance's process has exited (crash or stop). For
// an instance this driver did not start (a leftover), it returns nil.
func (d *Driver) Exited(inst *executor.Instance) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.procs[inst.ID]; p != nil {
		return p.done
	}
	return nil
}

// Stop ends the process group: SIGTERM, then SIGKILL after the grace period (at once for a
// quarantined instance). It removes the work directory unless the instance was quarantined.
func (d *Driver) Stop(ctx context.Context, inst *executor.Instance) error {
	d.mu.Lock()
	p := d.procs[inst.ID]
	d.mu.Unlock()
	quarantined := false
	if p != nil {
		p.stopping.Store(true)
		pid := p.cmd.Process.Pid
		quarantined = p.quarantined
		// In its own PID namespace the command is that namespace's init, which the kernel
		// shields from every signal it has no handler for: a SIGTERM it does not catch would
		// be dropped and cost the whole grace period. Its default action would have ended
		// it without any cleanup, so SIGKILL at once does the same.
		polite := !d.iso.namespaces() || catches(pid, syscall.SIGTERM)
		if !quarantined && !p.keep.Load() && polite {
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			t := time.NewTimer(d.grace)
			select {
			case <-p.done:
			case <-t.C:
				d.log.Warn("grace period over, killing", "id", inst.ID, "grace", d.grace)
			case <-ctx.Done():
			}
			t.Stop()
		}
		// Kill whatever is left of the group (a forked worker, or the leader itself).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
		quarantined = quarantined || p.keep.Load()
		if err := d.unconfine(p.fwID, p.cgroups, p.uid); err != nil {
			d.log.Warn("confinement left behind", "id", inst.ID, "err", err)
		}
		d.mu.Lock()
		delete(d.procs, inst.ID)
		d.mu.Unlock()
	} else {
		rec, err := d.readRecord(inst.ID)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("executor/process: stop %s: %w", inst.ID, err)
		}
		if err == nil {
			quarantined = rec.Quarantined
			if err := killLeftover(rec); err != nil {
				return fmt.Errorf("executor/process: stop %s: %w", inst.ID, err)
			}
			fwID := ""
			if rec.UID != 0 {
				fwID = d.fwKey(inst.ID)
			}
			if err := d.unconfine(fwID, rec.Cgroups, rec.UID); err != nil {
				return fmt.Errorf("executor/process: stop %s: %w", inst.ID, err)
			}
		}
	}
	if err := d.finish(inst, quarantined); err != nil {
		return fmt.Errorf("executor/process: stop %s: %w", inst.ID, err)
	}
	d.releasePort(portOf(inst.Address))
	d.log.Info("stopped", "id", inst.ID, "variant", inst.Variant, "kept_work_dir", quarantined)
	d.bus.Publish(bus.Event{Kind: executor.EventStopped, Source: "executor/process", Subject: inst.ID,
		Attrs: map[string]any{"variant": inst.Variant, "kept_work_dir": quarantined}})
	return nil
}

// finish removes the record and, unless the instance is kept for forensics, its work dir.
// A kept work dir gets a copy of the record so an operator knows what it was.
func (d *Driver) finish(inst *executor.Instance, keep bool) error {
	recPath := filepath.Join(d.runDir, inst.ID+".json")
	work := filepath.Join(d.workDir, inst.ID)
	if keep {
		if data, err := os.ReadFile(recPath); err == nil {
			_ = writeInto(work, RecordFile, data)
		}
	} else if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.Remove(recPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// killLeftover kills the process group of a record written by an earlier agent, if the pid
// still belongs to that process, and waits (bounded) until the leader is gone.
func killLeftover(rec record) error {
	if rec.PID <= 1 || !alive(rec.PID) {
		return nil
	}
	if rec.StartTicks != "" && startTicks(rec.PID) != rec.StartTicks {
		return nil // the pid was reused by an unrelated process
	}
	if err := syscall.Kill(-rec.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for i := 0; i < 500 && alive(rec.PID); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(rec.PID) {
		return fmt.Errorf("pid %d survived SIGKILL", rec.PID)
	}
	return nil
}

// Quarantine freezes the process group with SIGSTOP and marks the instance so that Stop and
// a restarted agent keep its work directory.
func (d *Driver) Quarantine(ctx context.Context, inst *executor.Instance) error {
	d.mu.Lock()
	p := d.procs[inst.ID]
	if p != nil {
		p.quarantined = true
	}
	d.mu.Unlock()
	rec, err := d.readRecord(inst.ID)
	if err != nil {
		return fmt.Errorf("executor/process: quarantine %s: %w", inst.ID, err)
	}
	pid := rec.PID
	if p != nil {
		pid = p.cmd.Process.Pid
	}
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("executor/process: quarantine %s: %w", inst.ID, err)
	}
	rec.Quarantined = true
	if err := d.writeRecord(rec); err != nil {
		return fmt.Errorf("executor/process: quarantine %s: %w", inst.ID, err)
	}
	if data, err := json.MarshalIndent(rec, "", "  "); err == nil {
		_ = writeInto(filepath.Join(d.workDir, inst.ID), RecordFile, data)
	}
	d.log.Warn("quarantined", "id", inst.ID, "variant", inst.Variant, "work_dir", inst.WorkDir)
	d.bus.Publish(bus.Event{Kind: executor.EventQuarantined, Source: "executor/process", Subject: inst.ID,
		Attrs: map[string]any{"variant": inst.Variant, "work_dir": filepath.Join(d.workDir, inst.ID)}})
	return nil
}

// List returns every instance with a record: this agent's and those left by an earlier one.
func (d *Driver) List(ctx context.Context) ([]*executor.Instance, error) {
	ents, err := os.ReadDir(d.runDir)
	if err != nil {
		return nil, fmt.Errorf("executor/process: list: %w", err)
	}
	var out []*executor.Instance
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		rec, err := d.readRecord(id)
		if err != nil || rec.Instance == nil {
			d.log.Warn("unreadable record", "file", e.Name(), "err", err)
			continue
		}
		out = append(out, rec.Instance)
	}
	return out, nil
}

// Cleanup removes work directories that have neither a record nor a quarantine record: an
// agent killed between creating a work directory and writing its record leaves those. Call it
// after stopping the leftovers List returned, while no Start is running.
func (d *Driver) Cleanup(ctx context.Context) error {
	ents, err := os.ReadDir(d.workDir)
	if err != nil {
		return fmt.Errorf("executor/process: cleanup: %w", err)
	}
	var errs []error
	for _, e := range ents {
		id := e.Name()
		d.mu.Lock()
		live := d.procs[id] != nil
		d.mu.Unlock()
		if live {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.runDir, id+".json")); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.workDir, id, RecordFile)); err == nil {
			continue // kept for forensics
		}
		if err := os.RemoveAll(filepath.Join(d.workDir, id)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.sweep(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("executor/process: cleanup: %w", errors.Join(errs...))
	}
	return nil
}

func (d *Driver) writeRecord(rec record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.runDir, "."+rec.Instance.ID+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.runDir, rec.Instance.ID+".json"))
}

func (d *Driver) readRecord(id string) (record, error) {
	var rec record
	data, err := os.ReadFile(filepath.Join(d.runDir, id+".json"))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, err
	}
	if rec.Instance == nil || rec.Instance.ID != id {
		return rec, fmt.Errorf("record %s names another instance", id)
	}
	return rec, nil
}

// procStat returns the state letter and start time (clock ticks since boot) of pid from
// /proc; ok is false when the process does not exist.
func procStat(pid int) (state byte, ticks string, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, "", false
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 20 {
		return 0, "", false
	}
	return f[0][0], f[19], true
}

// catches reports whether pid has a handler for sig (SigCgt in /proc/<pid>/status).
func catches(pid int, sig syscall.Signal) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true // unknown: be polite
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return true
}

func startTicks(pid int) string {
	_, t, _ := procStat(pid)
	return t
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if st, _, ok := procStat(pid); ok {
		return st != 'Z' && st != 'X'
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		return false // /proc works and has no entry for pid
	}
	return syscall.Kill(pid, 0) == nil
}

// writeInto writes a fresh file name in dir, a directory the executor owns: whatever it
// left under that name (a symbolic link to a file of the agent's, say) is removed first, and
// the file is created exclusively without following links.
func writeInto(dir, name string, data []byte) error {
	p := filepath.Join(dir, name)
	_ = os.Remove(p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// tail returns the last n bytes of the file at path (empty when unreadable or not a regular
// file: the executor may have replaced its output file with a link to a secret).
func tail(path string, n int64) string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.TrimSpace(string(b))
}

// capWriter writes to a file until max bytes, then counts and drops the rest.
type capWriter struct {
	mu      sync.Mutex
	f       *os.File
	n, max  int64
	dropped int64
}

func newCapWriter(path string, max int64) (*capWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &capWriter{f: f, max: max}, nil
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return len(p), nil
	}
	room := w.max - w.n
	keep := int64(len(p))
	if keep > room {
		keep = max(room, 0)
	}
	if keep > 0 {
		k, err := w.f.Write(p[:keep])
		w.n += int64(k)
		if err != nil {
			return len(p), nil // output capture must never block or kill the executor
		}
	}
	w.dropped += int64(len(p)) - keep
	return len(p), nil
}

func (w *capWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	if w.dropped > 0 {
		fmt.Fprintf(w.f, "\n[proteus: %d bytes of output dropped after the %d-byte limit]\n", w.dropped, w.max)
	}
	_ = w.f.Close()
	w.f = nil
}
