// Package sensor defines how evidence enters Proteus: a Source watches one thing (an IDS log,
// a file tree, an AIDE report) and writes Events to a channel it does not own; a Supervisor
// owns that channel, runs every source, restarts a failing one with backoff and reports each
// source's state. A source never stops the agent: an error or a panic restarts it.
//
// Sources register a Factory by ID ("sensor.eve", "sensor.fim") from init(); the engine
// builds every registered source from the config's sensors section.
//
// It imports the standard library and config only; it must not import engine, store or the
// gateway (the engine imports it).
package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/config"
)

// MaxExcerpt bounds the raw excerpt an Event carries (the EVE line, the request, the file).
const MaxExcerpt = 2048

// Event is one piece of evidence from any sensor, in the one model the engine reasons on.
type Event struct {
	Time   time.Time `json:"time"`
	Sensor string    `json:"sensor"` // "eve", "fim", "aide", "gateway", "enclave"
	Kind   string    `json:"kind"`   // e.g. "alert", "anomaly", "file.changed", "dissent"
	// Source is the address the evidence accuses (an attacker); invalid when unknown (a
	// changed file has no source address).
	Source   netip.Addr `json:"source,omitzero"`
	Dest     netip.Addr `json:"dest,omitzero"`
	DestPort uint16     `json:"dest_port,omitempty"`
	// Asset names the protected asset when the sensor knows it (an executor's variant); the
	// engine otherwise maps Dest/DestPort to an asset.
	Asset       string `json:"asset,omitempty"`
	Signature   string `json:"signature,omitempty"`
	SignatureID int64  `json:"signature_id,omitempty"`
	Category    string `json:"category,omitempty"`
	// Severity follows Suricata: 1 is the most severe; 0 means unknown.
	Severity int    `json:"severity,omitempty"`
	Proto    string `json:"proto,omitempty"`
	AppProto string `json:"app_proto,omitempty"`
	// Path is a file path (FIM, AIDE) or a request path (gateway).
	Path    string `json:"path,omitempty"`
	Summary string `json:"summary"`
	// Excerpt is the raw evidence, at most MaxExcerpt bytes.
	Excerpt string            `json:"excerpt,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	// Strength in (0, 1] scales the matching rule's weight, for evidence that carries its own
	// confidence (a peer sighting: the enclave's reputation-weighted evidence); 0 means 1.
	Strength float64 `json:"strength,omitempty"`
}

// Excerpt returns s cut to MaxExcerpt bytes (on a UTF-8 boundary), marked when cut.
func Excerpt(s string) string {
	if len(s) <= MaxExcerpt {
		return s
	}
	cut := MaxExcerpt - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// Source is one sensor. Run writes events to out until ctx is done and then returns nil;
// any other return (or a panic) is a failure and the Supervisor restarts the source. Run
// must never close out.
type Source interface {
	Name() string
	Run(ctx context.Context, out chan<- Event) error
}

// Send writes e to out unless ctx ends first; it reports whether e was sent. A source that
// reads a log may wait here (the log keeps what it has not read yet).
func Send(ctx context.Context, out chan<- Event, e Event) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// Env is what a Factory gets.
type Env struct {
	Config  config.Sensors
	BaseDir string // directory relative paths in Config are resolved against
	DataDir string // where a source may keep its state (a read position); "" for none
	Logger  *slog.Logger
	// Canaries are the decoy executor's canary tokens (pool.decoy.canaries), for the sources
	// that report their use (the decoys).
	Canaries []string
}

// Factory builds the sources of one kind from the config; none when that kind is not
// configured.
type Factory func(Env) ([]Source, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes a source kind available under id ("sensor.eve"); duplicate IDs panic.
func Register(id string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[id]; dup {
		panic(fmt.Sprintf("sensor: source %q registered twice", id))
	}
	registry[id] = f
}

// Build builds the sources of every registered kind, in ID order.
func Build(env Env) ([]Source, error) {
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	regMu.RLock()
	ids := make([]string, 0, len(registry))
	for id := range registry {
		ids = append(ids, id)
	}
	regMu.RUnlock()
	sort.Strings(ids)
	var out []Source
	for _, id := range ids {
		regMu.RLock()
		f := registry[id]
		regMu.RUnlock()
		srcs, err := f(env)
		if err != nil {
			return nil, fmt.Errorf("sensor: build %s: %w", id, err)
		}
		out = append(out, srcs...)
	}
	return out, nil
}

// ErrStopped is what the Supervisor records when a source returned nil before its context
// ended (a source must not stop on its own).
var ErrStopped = errors.New("sensor: source stopped on its own")
