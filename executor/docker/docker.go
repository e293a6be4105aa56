// Package docker is the executor driver that runs each executor as a Docker container
// created fresh from a known-good image pinned by digest, and destroys it on rotation.
//
// It owns everything Proteus does to a Docker Engine: checking an image against its pin
// before every start (a mismatch is executor.ErrTamperedImage and an
// executor.tampered-image bus event), creating hardened containers (read-only root file
// system, a tmpfs scratch at /tmp, no-new-privileges, every capability dropped, memory and
// pids limits, one fresh random 127.0.0.1 host port, for UDP too when the spec is a DNS
// server's, the spec's files rendered and bound read-only at FilesDir), turning what their
// confinement refuses into executor.denied evidence (decoys.go, audit.go, confine.go),
// labelling what it owns, stopping and removing, quarantining (pause, disconnect, keep for forensics), listing what a previous
// run left behind, and building FROM-scratch images from a static binary (BuildScratchImage)
// or a distribution's dynamically linked one with its libraries (BuildImage, elflibs.go).
//
// It talks to the engine through the moby client (github.com/docker/docker/client,
// v28.2.2+incompatible, API version negotiated so engines down to API 1.41 work). It
// registers itself as the "docker" driver from init(). It must not import the pool's
// callers (mimic, engine, enclave, cmd) nor other drivers.
package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/kaudit"
	"github.com/proteus-defense/proteus/executor/internal/render"
	"github.com/proteus-defense/proteus/executor/netguard"
)

// Labels Proteus puts on every container it creates. Only containers carrying
// LabelOwner=OwnerValue and this agent's LabelAgent are ever listed, stopped or removed.
const (
	LabelOwner       = "io.proteus.owner"
	LabelAgent       = "io.proteus.agent"
	LabelVariant     = "io.proteus.variant"
	LabelInstance    = "io.proteus.instance"
	LabelImage       = "io.proteus.image"    // the pinned reference from the spec
	LabelImageID     = "io.proteus.image-id" // the image ID that was verified and run
	LabelPort        = "io.proteus.container-port"
	LabelStarted     = "io.proteus.started"
	LabelTraits      = "io.proteus.traits" // JSON object of Spec.Traits
	OwnerValue       = "proteus"
	quarantineSuffix = "-quarantined"
)

// ErrEngineUnreachable is wrapped by every error caused by not reaching the Docker Engine.
var ErrEngineUnreachable = errors.New("engine unreachable")

// ErrInvalidSpec is wrapped by ValidateSpec errors.
var ErrInvalidSpec = errors.New("invalid spec")

// ErrNotOwned is returned when asked to stop or quarantine a container that does not carry
// this agent's labels.
var ErrNotOwned = errors.New("container not owned by this agent")

// DefaultHost is the engine address used when neither Options.Host nor DOCKER_HOST is set.
const DefaultHost = "unix:///var/run/docker.sock"

// Options configure a Driver. Zero values take the documented defaults.
type Options struct {
	Host      string        // engine address; default $DOCKER_HOST, else DefaultHost
	DataDir   string        // agent data directory; its hash is the io.proteus.agent label
	Memory    int64         // bytes per container; default 256 MiB (swap is disabled)
	PidsLimit int64         // processes per container; default 256
	NanoCPUs  int64         // CPU quota in 1e-9 CPUs; default 0 (no quota)
	TmpfsSize string        // size of the /tmp tmpfs; default "64m"
	Network   string        // network to attach containers to; default "bridge"
	StopGrace time.Duration // SIGTERM to SIGKILL; default 5s
	OpTimeout time.Duration // bound on each engine call that has no larger deadline; default 15s
	PortMin   int           // host port range for the random 127.0.0.1 binding; default 20000
	PortMax   int           // inclusive; default 60999
	// VerifyInterval is how long a passed content check of an image (its configuration and
	// layers re-hashed from an export, see Start) is trusted; default 10 minutes, negative
	// checks on every start. SkipContentCheck turns the content check off (the ID/pin check
	// always runs).
	VerifyInterval   time.Duration
	SkipContentCheck bool
	Logger           *slog.Logger
	Bus              *bus.Bus
	ClientOpts       []client.Opt // extra moby client options (tests)
	// NoFirewall leaves containers' traffic to Docker's own rules. By default, as root, the
	// driver refuses (and counts, as evidence) every connection a container starts to this
	// host, and to anywhere else unless its variant allows outbound traffic (netguard).
	NoFirewall bool
	// NoAudit leaves the kernel's audit alone. By default, as root with a local engine, the
	// driver installs audit rules for the signals and writes a container's confinement
	// refuses silently, and takes their records as evidence (audit.go).
	NoAudit bool
}

// Driver runs executors as Docker containers. It is safe for concurrent use.
type Driver struct {
	cli   *client.Client
	host  string
	agent string
	opts  Options
	log   *slog.Logger
	bus   *bus.Bus
	// content remembers which image IDs passed the content check, and when.
	content contentCache

	// life ends with Close; it bounds the goroutines that watch for exits.
	life     context.Context
	shutdown context.CancelFunc
	mu       sync.Mutex
	exits    map[string]chan struct{} // instance ID -> closed when its container stops running
	watchers sync.WaitGroup
	guard    *netguard.Guard // nil: no firewall (not root, no nftables, or NoFirewall)
	// withDecoys: containers get decoys of the data dir (decoys.go); decoys holds the
	// fanotify group of each running container's, refused the instances already reported.
	withDecoys bool
	decoys     map[string]*decoySet
	refused    sync.Map
	// running holds the instances started and not yet removed, by ID; audit is the kernel
	// audit watch (nil: none), dataRoot the engine's data root once read (for the decoys of
	// the siblings' files).
	running  map[string]*executor.Instance
	audit    *kaudit.Watch
	rootOnce sync.Once
	dataRoot string
}

var (
	_ executor.Driver      = (*Driver)(nil)
	_ executor.Validator   = (*Driver)(nil)
	_ executor.ExitWatcher = (*Driver)(nil)
)

func init() {
	executor.Register("docker", func(env executor.Env) (executor.Driver, error) {
		o := Options{DataDir: env.DataDir, Logger: env.Logger, Bus: env.Bus, StopGrace: env.StopGrace}
		if iso := env.Isolation; iso.Mode != executor.IsolationOff {
			// The pool's isolation limits apply to containers as well.
			o.Memory, o.PidsLimit, o.NanoCPUs = iso.Memory, int64(iso.Processes), int64(iso.CPU*1e9)
		}
		return New(o)
	})
}

// New builds a driver. It does not contact the engine: an unreachable engine shows up as
// ErrEngineUnreachable on the first call, so the agent can start and keep serving without it.
func New(o Options) (*Driver, error) {
	if o.Host == "" {
		o.Host = os.Getenv("DOCKER_HOST")
	}
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.Memory == 0 {
		o.Memory = 256 << 20
	}
	if o.PidsLimit == 0 {
		o.PidsLimit = 256
	}
	if o.TmpfsSize == "" {
		o.TmpfsSize = "64m"
	}
	if o.Network == "" {
		o.Network = "bridge"
	}
	if o.StopGrace == 0 {
		o.StopGrace = 5 * time.Second
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 15 * time.Second
	}
	if o.VerifyInterval == 0 {
		o.VerifyInterval = 10 * time.Minute
	}
	if o.PortMin == 0 {
		o.PortMin = 20000
	}
	if o.PortMax == 0 {
		o.PortMax = 60999
	}
	if o.PortMin < 1024 || o.PortMax > 65535 || o.PortMin > o.PortMax {
		return nil, fmt.Errorf("executor/docker: new: port range %d-%d: want 1024 <= min <= max <= 65535", o.PortMin, o.PortMax)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	copts := append([]client.Opt{client.WithHost(o.Host), client.WithAPIVersionNegotiation()}, o.ClientOpts...)
	cli, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return nil, fmt.Errorf("executor/docker: new: client for %s: %w", o.Host, err)
	}
	life, shutdown := context.WithCancel(context.Background())
	d := &Driver{
		life:     life,
		shutdown: shutdown,
		exits:    map[string]chan struct{}{},
		decoys:   map[string]*decoySet{},
		running:  map[string]*executor.Instance{},
		cli:      cli,
		host:     o.Host,
		agent:    AgentID(o.DataDir),
		opts:     o,
		log:      logger.With("component", "executor/docker"),
		bus:      o.Bus,
	}
	if !o.NoFirewall && os.Geteuid() == 0 {
		if d.guard, err = netguard.New(); err != nil {
			d.log.Warn("no firewall for containers: they can reach this host's services bound beyond loopback and, through Docker's NAT, the network", "err", err)
		}
	}
	d.withDecoys = d.decoysUsable()
	if d.auditUsable() {
		d.startAudit()
	}
	return d, nil
}

// AgentID is the io.proteus.agent label value for an agent data directory: the first 16
// hex digits of the SHA-256 of its absolute path, so two agents on one host never touch
// each other's containers.
func AgentID(dataDir string) string {
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	sum := sha256.Sum256([]byte(dataDir))
	return hex.EncodeToString(sum[:8])
}

// Client returns the moby client the driver uses (for BuildScratchImage and tools).
func (d *Driver) Client() *client.Client { return d.cli }

// Host is the engine address the driver talks to.
func (d *Driver) Host() string { return d.host }

// Close stops watching for exits and releases the client's connections. Containers keep
// running: a restarted agent finds them with List.
func (d *Driver) Close() error {
	d.shutdown()
	if d.audit != nil {
		if err := d.audit.Close(); err != nil {
			d.log.Warn("audit rules left", "err", err)
		}
	}
	d.watchers.Wait()
	return d.cli.Close()
}

// opCtx bounds one engine call by OpTimeout unless ctx already has an earlier deadline.
func (d *Driver) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.opts.OpTimeout)
}

// wrap gives every error the package prefix, the operation and subject, and marks engine
// connection failures with ErrEngineUnreachable and the engine address.
func (d *Driver) wrap(op, subject string, err error) error {
	if err == nil {
		return nil
	}
	if client.IsErrConnectionFailed(err) || isDialError(err) {
		return fmt.Errorf("executor/docker: %w at %s: %s %s: %w", ErrEngineUnreachable, d.host, op, subject, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The socket accepted but the engine did not answer in time (hung or overloaded).
		return fmt.Errorf("executor/docker: %w at %s: %s %s: no answer in time: %w", ErrEngineUnreachable, d.host, op, subject, err)
	}
	return fmt.Errorf("executor/docker: %s %s: %w", op, subject, err)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ValidateSpec checks a spec without contacting the engine: the image must be pinned by
// digest, the container port must be set, command templates must parse.
func (d *Driver) ValidateSpec(spec executor.Spec) error {
	return validateSpec(spec)
}

func validateSpec(spec executor.Spec) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("executor/docker: validate %s: %w: %s", spec.Variant, ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	if spec.Variant == "" {
		return bad("variant name is empty")
	}
	if _, err := ParsePin(spec.Image); err != nil {
		return bad("image: %v", err)
	}
	if spec.ContainerPort < 1 || spec.ContainerPort > 65535 {
		return bad("container_port %d: want 1..65535", spec.ContainerPort)
	}
	if spec.HealthPath != "" && !strings.HasPrefix(spec.HealthPath, "/") {
		return bad("health_path %q: must start with /", spec.HealthPath)
	}
	for name := range spec.Files {
		if err := checkFileName(name); err != nil {
			return bad("files: %v", err)
		}
	}
	if err := render.Check(spec.Command, spec.Files, containerData(spec)); err != nil {
		return bad("%v", err)
	}
	for k := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("env name %q: must be non-empty without '=' or NUL", k)
		}
	}
	return nil
}

// templateData is what command and file templates see inside a container.
type templateData struct {
	Port  int    // the container port the service must listen on (TCP, and UDP for a DNS server)
	IP    string // the address it listens on: 0.0.0.0
	Addr  string // 0.0.0.0:Port
	Dir   string // the writable scratch directory (/tmp)
	State string // the same /tmp, named as the process driver names its state directory
	Files string // FilesDir, where the rendered Spec.Files are (read-only)
}

// FilesDir is where a container finds its rendered Spec.Files: a read-only bind mount of
// a directory the driver writes for each container (DataDir/executor/docker/files/<name>).
const FilesDir = "/etc/proteus"

func containerData(spec executor.Spec) templateData {
	return templateData{Port: spec.ContainerPort, IP: "0.0.0.0", Addr: "0.0.0.0:" + strconv.Itoa(spec.ContainerPort),
		Dir: "/tmp", State: "/tmp", Files: FilesDir}
}

func renderCommand(spec executor.Spec) ([]string, error) {
	return render.Argv(spec.Command, containerData(spec))
}

// checkFileName accepts a clean relative slash path that stays in FilesDir.
func checkFileName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") ||
		strings.ContainsAny(name, "\x00\\") {
		return fmt.Errorf("%q: want a clean relative path inside %s", name, FilesDir)
	}
	return nil
}

// filesDir is the host directory of the rendered files of the container named name.
func (d *Driver) filesDir(name string) string {
	return filepath.Join(d.opts.DataDir, "executor", "docker", "files", name)
}

// writeFiles renders spec.Files for the container named name into a fresh filesDir,
// readable by the container's user (directories 0555, files 0444: the container only
// reads them), and returns their hashes.
func (d *Driver) writeFiles(spec executor.Spec, name string) (map[string]string, error) {
	if d.opts.DataDir == "" {
		return nil, errors.New("files: the driver has no data dir to render them into")
	}
	dir := d.filesDir(name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	sums, err := render.Files(spec.Files, dir, containerData(spec), 0o755, 0o444)
	if err == nil {
		err = os.Chmod(dir, 0o555)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return sums, nil
}

// removeFiles removes the rendered files of the container named name, if any.
func (d *Driver) removeFiles(name string) {
	if d.opts.DataDir == "" || name == "" {
		return
	}
	dir := d.filesDir(name)
	if _, err := os.Lstat(dir); err != nil {
		return
	}
	_ = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			_ = os.Chmod(p, 0o700) // 0555 directories: make them removable
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		d.log.Warn("rendered files left", "instance", name, "err", err)
	}
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// containerName is proteus-<variant>-<random>, with the variant reduced to the characters
// Docker allows in names.
func containerName(variant string) string {
	v := strings.Trim(unsafeName.ReplaceAllString(variant, "-"), "-._")
	if v == "" {
		v = "x"
	}
	if len(v) > 40 {
		v = v[:40]
	}
	return fmt.Sprintf("proteus-%s-%016x", v, rand.Uint64())
}

// Start verifies the image against its pin, then creates and starts a hardened container
// with a fresh random 127.0.0.1 host port bound to spec.ContainerPort.
func (d *Driver) Start(ctx context.Context, spec executor.Spec) (*executor.Instance, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	pin, _ := ParsePin(spec.Image)
	imageID, err := d.verifyImage(ctx, spec.Variant, pin)
	if err != nil {
		return nil, err
	}
	cmd, err := renderCommand(spec)
	if err != nil {
		return nil, d.wrap("start", spec.Variant, err)
	}
	traits, err := json.Marshal(spec.Traits)
	if err != nil {
		return nil, d.wrap("start", spec.Variant, err)
	}
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)

	udp := spec.HealthQuery != nil // a DNS server: its port is published for UDP as well
	const attempts = 8             // a port taken between our check and the engine's bind is retried
	var lastErr error
	for range attempts {
		port, err := d.freePort(udp)
		if err != nil {
			return nil, d.wrap("start", spec.Variant, err)
		}
		inst, err := d.createAndStart(ctx, spec, imageID, cmd, env, string(traits), port)
		if err == nil {
			return inst, nil
		}
		lastErr = err
		if !isPortConflict(err) {
			return nil, err
		}
		d.log.Debug("host port taken, retrying", "variant", spec.Variant, "port", port)
	}
	return nil, lastErr
}

func isPortConflict(err error) bool {
	s := err.Error()
	return strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use")
}

// freePort picks a random port in the configured range that nothing on 127.0.0.1 listens on
// over TCP (and, with udp, over UDP).
func (d *Driver) freePort(udp bool) (int, error) {
	span := d.opts.PortMax - d.opts.PortMin + 1
	for range 64 {
		p := d.opts.PortMin + rand.IntN(span)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		if udp {
			c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				continue
			}
			c.Close()
		}
		return p, nil
	}
	return 0, fmt.Errorf("no free 127.0.0.1 port in %d-%d after 64 tries", d.opts.PortMin, d.opts.PortMax)
}

func (d *Driver) createAndStart(ctx context.Context, spec executor.Spec, imageID string, cmd, env []string, traits string, hostPort int) (*executor.Instance, error) {
	name := containerName(spec.Variant)
	started := time.Now().UTC()
	cport := nat.Port(strconv.Itoa(spec.ContainerPort) + "/tcp")
	binding := []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: strconv.Itoa(hostPort)}}
	exposed, bindings := nat.PortSet{cport: struct{}{}}, nat.PortMap{cport: binding}
	if spec.HealthQuery != nil { // a DNS server: the same host port over UDP
		uport := nat.Port(strconv.Itoa(spec.ContainerPort) + "/udp")
		exposed[uport], bindings[uport] = struct{}{}, binding
	}
	cfg := &container.Config{
		Image:        imageID, // run the verified ID, never a name that could move after the check
		Env:          env,
		ExposedPorts: exposed,
		Labels: map[string]string{
			LabelOwner:    OwnerValue,
			LabelAgent:    d.agent,
			LabelVariant:  spec.Variant,
			LabelInstance: name,
			LabelImage:    spec.Image,
			LabelImageID:  imageID,
			LabelPort:     strconv.Itoa(spec.ContainerPort),
			LabelStarted:  started.Format(time.RFC3339Nano),
			LabelTraits:   traits,
		},
	}
	if len(cmd) > 0 {
		cfg.Cmd = cmd
	}
	if user, err := d.imageUser(ctx, imageID); err != nil {
		return nil, d.wrap("start", spec.Variant, err)
	} else if runsAsRoot(user) {
		cfg.User = NobodyUser // never root, even without capabilities
	}
	memory := d.opts.Memory
	pids := d.opts.PidsLimit
	hc := &container.HostConfig{
		NetworkMode:    container.NetworkMode(d.opts.Network),
		PortBindings:   bindings,
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,noexec,size=" + d.opts.TmpfsSize},
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		IpcMode:        container.IPCModePrivate,
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory, // equal to Memory: no swap
			PidsLimit:  &pids,
			NanoCPUs:   d.opts.NanoCPUs,
		},
	}
	var rendered map[string]string
	if len(spec.Files) > 0 {
		sums, err := d.writeFiles(spec, name)
		if err != nil {
			return nil, d.wrap("start", spec.Variant, err)
		}
		rendered = sums
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: d.filesDir(name), Target: FilesDir, ReadOnly: true})
	}
	var decoys *decoySet
	if d.withDecoys {
		ms, set, err := d.makeDecoys(name)
		if err != nil {
			d.removeFiles(name)
			return nil, d.wrap("start", spec.Variant, err)
		}
		hc.Mounts, decoys = append(hc.Mounts, ms...), set
	}
	fail := func(id string, err error) (*executor.Instance, error) {
		if id != "" {
			d.removeQuietly(id)
		}
		if decoys != nil {
			decoys.close()
			os.RemoveAll(d.decoyDir(name))
		}
		d.removeFiles(name)
		return nil, d.wrap("start", spec.Variant, err)
	}
	cctx, cancel := d.opCtx(ctx)
	defer cancel()
	created, err := d.cli.ContainerCreate(cctx, cfg, hc, nil, nil, name)
	if err != nil {
		return fail("", fmt.Errorf("create container: %w", err))
	}
	if err := d.cli.ContainerStart(cctx, created.ID, container.StartOptions{}); err != nil {
		return fail(created.ID, fmt.Errorf("start container %s: %w", name, err))
	}
	if err := d.confine(cctx, name, created.ID, spec.AllowOutbound); err != nil {
		return fail(created.ID, err)
	}
	inst := &executor.Instance{
		ID:          name,
		Variant:     spec.Variant,
		Driver:      "docker",
		Address:     net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort)),
		ImageDigest: imageID,
		Started:     started,
		Traits:      cloneMap(spec.Traits),
		Handle:      created.ID,
		RootDir:     d.rootDir(cctx, created.ID),
		Rendered:    rendered,
	}
	d.log.Info("container started", "variant", spec.Variant, "instance", name, "container", shortID(created.ID), "address", inst.Address, "image", shortID(imageID))
	d.watchExit(inst)
	if decoys != nil {
		d.watchDecoys(inst, decoys)
	}
	d.watchLimits(inst)
	d.bus.Publish(bus.Event{Kind: executor.EventStarted, Source: "executor/docker", Subject: name,
		Attrs: map[string]any{"variant": spec.Variant, "address": inst.Address, "image": imageID, "container": created.ID}})
	return inst, nil
}

// rootDir is the host path of the container's root file system (its overlay's merged
// directory) when the agent can read it (a local engine, the agent root); "" otherwise.
func (d *Driver) rootDir(ctx context.Context, id string) string {
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil || info.GraphDriver.Data == nil {
		return ""
	}
	dir := info.GraphDriver.Data["MergedDir"]
	if dir == "" || !filepath.IsAbs(dir) {
		return ""
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return ""
	}
	return dir
}

// NobodyUser is the user a container runs as when its image would run it as root.
const NobodyUser = "65534:65534"

// imageUser is the user the image's configuration runs its command as.
func (d *Driver) imageUser(ctx context.Context, imageID string) (string, error) {
	ictx, cancel := d.opCtx(ctx)
	defer cancel()
	img, err := d.cli.ImageInspect(ictx, imageID)
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", shortID(imageID), err)
	}
	if img.Config == nil {
		return "", nil
	}
	return img.Config.User, nil
}

// runsAsRoot reports whether a container user ("", "root", "0", "0:0", "root:staff", ...)
// is uid 0. A named user other than root is resolved by the image's /etc/passwd, which the
// driver cannot see; it is taken as not root.
func runsAsRoot(user string) bool {
	u, _, _ := strings.Cut(user, ":")
	return u == "root" || strings.Trim(u, "0") == ""
}

// removeQuietly force-removes a container we just created and could not start, with a
// fresh context so a cancelled caller still leaves nothing behind.
func (d *Driver) removeQuietly(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.OpTimeout)
	defer cancel()
	if err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("remove of unstarted container failed", "container", shortID(id), "err", err)
	}
}

// handle is the container a given instance refers to.
func handle(inst *executor.Instance) string {
	if inst.Handle != "" {
		return inst.Handle
	}
	return inst.ID
}

// owned inspects the container and checks it carries this agent's labels.
func (d *Driver) owned(ctx context.Context, op string, inst *executor.Instance) (container.InspectResponse, error) {
	ictx, cancel := d.opCtx(ctx)
	defer cancel()
	info, err := d.cli.ContainerInspect(ictx, handle(inst))
	if err != nil {
		return info, d.wrap(op, inst.ID, err)
	}
	if info.Config == nil || info.Config.Labels[LabelOwner] != OwnerValue || info.Config.Labels[LabelAgent] != d.agent {
		return info, d.wrap(op, inst.ID, ErrNotOwned)
	}
	return info, nil
}

// Stop sends SIGTERM, waits up to StopGrace, kills, then removes the container and its
// anonymous volumes. A container that is already gone is not an error. A quarantined
// container is kept as it is (frozen, disconnected) for forensics, like the process driver
// keeps a quarantined work directory: Stop only lets go of it; Remove destroys it.
func (d *Driver) Stop(ctx context.Context, inst *executor.Instance) error {
	return d.stop(ctx, "stop", inst, false)
}

// Remove destroys the instance's container whatever its state, quarantined ones included
// (once they have been examined).
func (d *Driver) Remove(ctx context.Context, inst *executor.Instance) error {
	return d.stop(ctx, "remove", inst, true)
}

func (d *Driver) stop(ctx context.Context, op string, inst *executor.Instance, evenQuarantined bool) error {
	info, err := d.owned(ctx, op, inst)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			d.log.Debug("container already gone", "instance", inst.ID)
			d.forget(inst)
			d.unguard(inst)
			d.removeFiles(inst.ID)
			return nil
		}
		return err
	}
	if quarantined(info) && !evenQuarantined {
		d.forget(inst)
		d.unguard(inst) // disconnected from every network: nothing left to filter
		d.log.Warn("keeping quarantined container for forensics", "instance", inst.ID, "container", shortID(info.ID))
		d.bus.Publish(bus.Event{Kind: executor.EventStopped, Source: "executor/docker", Subject: inst.ID,
			Attrs: map[string]any{"variant": inst.Variant, "container": info.ID, "kept": true}})
		return nil
	}
	grace := int((d.opts.StopGrace + time.Second - 1) / time.Second) // the engine counts whole seconds
	sctx, cancel := context.WithTimeout(ctx, d.opts.StopGrace+d.opts.OpTimeout)
	defer cancel()
	if info.State != nil && info.State.Paused {
		// A paused container cannot handle SIGTERM: forced removal kills it.
		d.log.Info("removing paused container", "instance", inst.ID)
	} else if err := d.cli.ContainerStop(sctx, info.ID, container.StopOptions{Timeout: &grace}); err != nil && !cerrdefs.IsNotFound(err) {
		return d.wrap(op, inst.ID, err)
	}
	if err := d.cli.ContainerRemove(sctx, info.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return d.wrap(op, inst.ID, fmt.Errorf("remove: %w", err))
	}
	d.forget(inst)
	d.unguard(inst)
	d.removeFiles(inst.ID)
	d.log.Info("container stopped and removed", "variant", inst.Variant, "instance", inst.ID, "container", shortID(info.ID))
	d.bus.Publish(bus.Event{Kind: executor.EventStopped, Source: "executor/docker", Subject: inst.ID,
		Attrs: map[string]any{"variant": inst.Variant, "container": info.ID}})
	return nil
}

// quarantined tells a container Quarantine has handled (renamed, or at least paused).
func quarantined(info container.InspectResponse) bool {
	return strings.HasSuffix(info.Name, quarantineSuffix) || (info.State != nil && info.State.Paused)
}

// Quarantine freezes the container (cgroup freezer), disconnects it from every network so
// its published port goes dark, renames it with a "-quarantined" suffix (labels cannot be
// changed after creation), and writes the engine's inspect output to
// DataDir/executor/docker/quarantine/<container>.json for forensics. The container is kept:
// List no longer reports it, Stop leaves it alone; ListQuarantined finds it, Remove ends it.
func (d *Driver) Quarantine(ctx context.Context, inst *executor.Instance) error {
	info, err := d.owned(ctx, "quarantine", inst)
	if err != nil {
		return err
	}
	qctx, cancel := d.opCtx(ctx)
	defer cancel()
	if info.State == nil || !info.State.Paused {
		if err := d.cli.ContainerPause(qctx, info.ID); err != nil {
			return d.wrap("quarantine", inst.ID, fmt.Errorf("pause: %w", err))
		}
	}
	var errs []error
	if info.NetworkSettings != nil {
		for netName := range info.NetworkSettings.Networks {
			if err := d.cli.NetworkDisconnect(qctx, netName, info.ID, true); err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("disconnect from %s: %w", netName, err))
			}
		}
	}
	name := strings.TrimPrefix(info.Name, "/")
	if !strings.HasSuffix(name, quarantineSuffix) {
		if err := d.cli.ContainerRename(qctx, info.ID, name+quarantineSuffix); err != nil {
			errs = append(errs, fmt.Errorf("rename: %w", err))
		}
	}
	if err := d.saveForensics(info); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return d.wrap("quarantine", inst.ID, err)
	}
	d.log.Warn("container quarantined", "variant", inst.Variant, "instance", inst.ID, "container", shortID(info.ID))
	d.bus.Publish(bus.Event{Kind: executor.EventQuarantined, Source: "executor/docker", Subject: inst.ID,
		Attrs: map[string]any{"variant": inst.Variant, "container": info.ID, "name": name + quarantineSuffix}})
	return nil
}

func (d *Driver) saveForensics(info container.InspectResponse) error {
	if d.opts.DataDir == "" {
		return nil
	}
	dir := filepath.Join(d.opts.DataDir, "executor", "docker", "quarantine")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("forensics: %w", err)
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("forensics: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, info.ID+".json"), b, 0o600); err != nil {
		return fmt.Errorf("forensics: %w", err)
	}
	return nil
}

// List returns every container this agent owns that is not quarantined, running or not,
// including ones a previous run of the agent left behind.
func (d *Driver) List(ctx context.Context) ([]*executor.Instance, error) {
	all, err := d.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []listed
	for _, c := range all {
		if !c.quarantined {
			out = append(out, c)
		}
	}
	return instances(out), nil
}

// ListQuarantined returns the quarantined containers this agent owns (kept for forensics;
// destroy them with Remove once examined).
func (d *Driver) ListQuarantined(ctx context.Context) ([]*executor.Instance, error) {
	all, err := d.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []listed
	for _, c := range all {
		if c.quarantined {
			out = append(out, c)
		}
	}
	return instances(out), nil
}

type listed struct {
	inst        *executor.Instance
	quarantined bool
}

func instances(ls []listed) []*executor.Instance {
	out := make([]*executor.Instance, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.inst)
	}
	return out
}

func (d *Driver) list(ctx context.Context) ([]listed, error) {
	lctx, cancel := d.opCtx(ctx)
	defer cancel()
	f := filters.NewArgs(
		filters.Arg("label", LabelOwner+"="+OwnerValue),
		filters.Arg("label", LabelAgent+"="+d.agent),
	)
	cs, err := d.cli.ContainerList(lctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, d.wrap("list", "containers", err)
	}
	out := make([]listed, 0, len(cs))
	for _, c := range cs {
		out = append(out, listed{inst: summaryInstance(c), quarantined: isQuarantined(c)})
	}
	return out, nil
}

func isQuarantined(c container.Summary) bool {
	for _, n := range c.Names {
		if strings.HasSuffix(n, quarantineSuffix) {
			return true
		}
	}
	return false
}

// summaryInstance rebuilds an Instance from what the engine remembers about a container.
func summaryInstance(c container.Summary) *executor.Instance {
	l := c.Labels
	inst := &executor.Instance{
		ID:          l[LabelInstance],
		Variant:     l[LabelVariant],
		Driver:      "docker",
		ImageDigest: l[LabelImageID],
		Handle:      c.ID,
	}
	if inst.ID == "" && len(c.Names) > 0 {
		inst.ID = strings.TrimPrefix(c.Names[0], "/")
	}
	if t, err := time.Parse(time.RFC3339Nano, l[LabelStarted]); err == nil {
		inst.Started = t
	} else {
		inst.Started = time.Unix(c.Created, 0).UTC()
	}
	if raw := l[LabelTraits]; raw != "" && raw != "null" {
		var tr map[string]string
		if json.Unmarshal([]byte(raw), &tr) == nil && len(tr) > 0 {
			inst.Traits = tr
		}
	}
	if cport, err := strconv.Atoi(l[LabelPort]); err == nil {
		for _, p := range c.Ports {
			if int(p.PrivatePort) == cport && p.PublicPort != 0 && p.Type == "tcp" {
				ip := p.IP
				if ip == "" || ip == "0.0.0.0" {
					ip = "127.0.0.1"
				}
				inst.Address = net.JoinHostPort(ip, strconv.Itoa(int(p.PublicPort)))
				break
			}
		}
	}
	return inst
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
