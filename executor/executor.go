// Package executor defines what an executor is (one running instance of one variant of the
// protected service), the Driver interface that starts and stops executors on some substrate
// (local processes, Docker, Kubernetes), and the registry of drivers by name.
//
// Drivers live in sub-packages (executor/process, executor/docker, executor/kubernetes) and register themselves
// from init(). The pool that keeps the desired set of healthy executors also lives in this
// package (pool.go). It must not import mimic, engine, enclave or cmd.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// Spec says how to start one variant of the service.
type Spec struct {
	Variant string // unique name of the variant, e.g. "go-nethttp", "nginx"
	Driver  string // registered driver ID without the "executor." prefix: "process", "docker"
	// Image is, for the process driver, a directory holding the known-good files and a
	// MANIFEST.sha256; for the docker driver, an image reference pinned by digest
	// (name@sha256:... or a local image ID sha256:...).
	Image string
	// Command is the argv to run. Every element is a text/template with {{.Port}} (the port
	// the executor must listen on), {{.Dir}} (its private work directory, process driver) and
	// {{.Addr}} (host:port). For docker it overrides the image's CMD when non-empty.
	Command []string
	Env     map[string]string
	// ContainerPort is the port the service listens on inside a container (docker driver).
	ContainerPort int
	// HealthPath is the HTTP path probed for health, e.g. "/healthz"; default "/".
	HealthPath string
	// HealthQuery, when set, makes the health probe a DNS query instead (the executor is a DNS
	// server): healthy is an answer to it over UDP and over TCP with rcode NOERROR and at least
	// one answer record. The docker driver publishes such an executor's port for UDP as well.
	HealthQuery *DNSQuery
	// Files are rendered for the executor before it starts: relative path -> text/template
	// with the fields Command has, e.g. a DNS server's configuration with its own address and
	// port. The process driver writes them into its private work directory (a path may not
	// name a file of the image), the docker driver into a directory of the container's own,
	// mounted read-only at docker.FilesDir.
	Files map[string]string
	// Traits are declared properties used by the gateway's diversity scheduler and by
	// relevance filtering: server: nginx, lang: go, os: debian, ...
	Traits map[string]string
	// AllowOutbound lets the executor open connections of its own to other hosts (an
	// upstream, a database); without it every connection it tries is refused. Addresses of
	// this host (the agent's API, gateway, metrics and enclave ports, sibling executors) stay
	// closed to it either way.
	AllowOutbound bool
}

// DNSQuery is the question of a DNS health probe.
type DNSQuery struct {
	Name string // fully qualified, "www.example.org."
	Type uint16 // a DNS RR type code (miekg/dns Type* constants), e.g. 1 for A
}

// State is where an executor is in its life.
type State string

// Executor states.
const (
	StateStarting    State = "starting"
	StateHealthy     State = "healthy"
	StateDraining    State = "draining"
	StateStopped     State = "stopped"
	StateQuarantined State = "quarantined"
	StateFailed      State = "failed"
)

// Instance is one running executor.
type Instance struct {
	ID          string            `json:"id"`
	Variant     string            `json:"variant"`
	Driver      string            `json:"driver"`
	Address     string            `json:"address"` // host:port the gateway sends requests to
	ImageDigest string            `json:"image_digest"`
	Started     time.Time         `json:"started"`
	Traits      map[string]string `json:"traits,omitempty"`
	// Handle is driver-private (a PID, a container ID); drivers put what List needs to find
	// the instance again after an agent restart.
	Handle string `json:"handle,omitempty"`
	// WorkDir is the private directory of a process executor (kept on quarantine for forensics).
	WorkDir string `json:"work_dir,omitempty"`
	// RootDir is, for a container whose engine is on this host and readable by the agent, the
	// host path of its root file system (the overlay's merged directory), which the
	// file-integrity sensor watches; empty otherwise.
	RootDir string `json:"root_dir,omitempty"`
	// Rendered lists the files the driver wrote into WorkDir from Spec.Files (relative slash
	// path -> lowercase hex SHA-256), which the file-integrity sensor checks beside the image's.
	Rendered map[string]string `json:"rendered,omitempty"`
	// Isolation says how the driver confines the instance, e.g. "full isolation: uid+gid
	// 600123, ns mnt+pid+ipc+uts, no_new_privs, seccomp, landlock v7, nftables, cgroup v1
	// memory+pids+cpu, rlimit nofile+nproc" or "degraded isolation (why): ...".
	Isolation string `json:"isolation,omitempty"`
}

// Driver starts and stops executors on one substrate. Implementations must be safe for
// concurrent use.
type Driver interface {
	// Start creates a fresh instance of spec from its known-good image. It returns once the
	// instance is started (not necessarily healthy: the pool probes health).
	Start(ctx context.Context, spec Spec) (*Instance, error)
	// Stop ends the instance gracefully, then forcefully after the driver's grace period,
	// and removes everything it created for it.
	Stop(ctx context.Context, inst *Instance) error
	// Quarantine freezes the instance and cuts it off, keeping its state for forensics.
	Quarantine(ctx context.Context, inst *Instance) error
	// List returns every instance this driver owns on the machine, including ones left by a
	// previous run of the agent (found through labels or pid files).
	List(ctx context.Context) ([]*Instance, error)
}

// Validator is implemented by drivers that can check a spec without starting anything.
type Validator interface {
	ValidateSpec(spec Spec) error
}

// Env is what a driver factory receives from the agent.
type Env struct {
	DataDir string // agent data directory; drivers keep their state below DataDir/executor/<driver>
	Logger  *slog.Logger
	Bus     *bus.Bus
	// StopGrace is how long Stop waits after the polite signal before killing; zero means
	// the driver's default.
	StopGrace time.Duration
	// Isolation confines executors; the zero value is IsolationOff (the agent's config
	// defaults to IsolationAuto).
	Isolation Isolation
	// Options is where a driver reads its own settings: the agent passes its config.Pool (the
	// kubernetes driver reads pool.kubernetes and pool.min from it); drivers without settings
	// ignore it.
	Options any
}

// Isolation modes.
const (
	IsolationOff      = ""         // executors run as the agent does (no confinement)
	IsolationAuto     = "auto"     // everything the machine allows; degraded when not root
	IsolationRequired = "required" // refuse to start executors unless isolation is full
)

// Isolation is how a driver confines each executor: its own uid and gid from a range,
// resource limits, and (process driver) namespaces, seccomp and Landlock.
type Isolation struct {
	Mode      string
	UIDFirst  int     // first uid (and gid) of the range handed to executors
	UIDCount  int     // size of the range
	Memory    int64   // bytes per executor; 0: unlimited
	Processes int     // processes and threads per executor; 0: unlimited
	OpenFiles int     // open files per process; 0: the inherited limit
	CPU       float64 // cores per executor; 0: unlimited
}

// Factory builds a driver.
type Factory func(env Env) (Driver, error)

// ErrUnknownDriver is returned by New for an ID no driver registered.
var ErrUnknownDriver = errors.New("executor: unknown driver")

// ErrTamperedImage is returned by Start when an image does not match its known-good digest.
var ErrTamperedImage = errors.New("executor: tampered image")

// Event kinds published on the bus by drivers and the pool.
const (
	EventStarted       = "executor.started"
	EventHealthy       = "executor.healthy"
	EventStopped       = "executor.stopped"
	EventFailed        = "executor.failed"
	EventQuarantined   = "executor.quarantined"
	EventTamperedImage = "executor.tampered-image"
	EventRotation      = "executor.rotation"
	// EventDenied is evidence that an executor tried something its confinement refused: a
	// syscall the seccomp filter kills (attr reason "seccomp"), the memory or process limit
	// ("memory", "processes"), or a connection the firewall dropped ("network").
	EventDenied = "executor.denied"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a driver available under id (e.g. "process"); duplicate IDs panic.
func Register(id string, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[id]; dup {
		panic(fmt.Sprintf("executor: driver %q registered twice", id))
	}
	registry[id] = f
}

// New builds the driver registered under id.
func New(id string, env Env) (Driver, error) {
	registryMu.RLock()
	f, ok := registry[id]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownDriver, id, Drivers())
	}
	return f(env)
}

// Drivers lists the registered driver IDs, sorted.
func Drivers() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	ids := make([]string, 0, len(registry))
	for id := range registry {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
