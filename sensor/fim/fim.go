// Package fim is the file-integrity sensor (ID "sensor.fim"): it watches, through inotify
// (github.com/fsnotify/fsnotify), the work directory of every running process executor, the
// root file system of every container the agent can read from the host, and the host paths
// the config lists. A file of a process executor is checked by SHA-256 against the manifest
// of the known-good image it was copied from (MANIFEST.sha256, the one the pool verifies at
// start), a container's against the manifest of its image's first container (ManifestOf),
// a host path against the hash it had when the sensor started. A changed,
// added or removed file is an event with the path and both hashes: in a running executor it
// is high-confidence tampering.
//
// It imports sensor, config and fsnotify; it must not import engine or executor (the engine
// tells it which executors run, with SetExecutors).
package fim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/proteus-defense/proteus/sensor"
)

// ID is the registry ID of the FIM sensor.
const ID = "sensor.fim"

// Settle is how long a file waits after its first unchecked change before it is hashed.
const Settle = 20 * time.Millisecond

// MaxHashed bounds the size of a file the sensor hashes; a bigger file is reported as
// changed with its size instead of a hash.
const MaxHashed = 64 << 20

// Executor is a running executor whose files the sensor checks.
type Executor struct {
	ID       string
	Variant  string
	Dir      string            // its work dir, a copy of the image
	Manifest map[string]string // slash-separated relative path -> lowercase hex SHA-256
	// Ignore lists relative paths the driver itself writes there (the executor's output log);
	// one ending in "/" is a directory whose whole tree is ignored (what the executor writes
	// itself, a DNS server's state).
	Ignore []string
}

// Options configure a Sensor.
type Options struct {
	Paths  []string
	Logger *slog.Logger
}

// Sensor is the FIM source. SetExecutors may be called at any time, also before Run.
type Sensor struct {
	o   Options
	log *slog.Logger

	mu        sync.Mutex
	executors map[string]Executor // by ID
	baseline  map[string]string   // host path -> hash at start
	reported  map[string]string   // path -> the hash last reported, so one change is one event
	w         *fsnotify.Watcher
	changed   chan struct{} // SetExecutors happened

	events, errors atomic.Uint64
}

var _ sensor.Source = (*Sensor)(nil)

// New returns a FIM sensor.
func New(o Options) *Sensor {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sensor{o: o, log: o.Logger.With("component", ID), executors: map[string]Executor{},
		baseline: map[string]string{}, reported: map[string]string{}, changed: make(chan struct{}, 1)}
}

// Name implements sensor.Source.
func (s *Sensor) Name() string { return "fim" }

// SetExecutors replaces the set of watched executors.
func (s *Sensor) SetExecutors(list []Executor) {
	s.mu.Lock()
	s.executors = map[string]Executor{}
	for _, e := range list {
		s.executors[e.ID] = e
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run implements sensor.Source.
func (s *Sensor) Run(ctx context.Context, out chan<- sensor.Event) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("fim: %w", err)
	}
	defer w.Close()
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
	for _, p := range s.o.Paths {
		s.addTree(p, true)
	}
	s.sync(ctx, out)
	// A file is checked once it has been quiet for Settle: a write in steps (create, then
	// write; truncate, then write) is one change with its final hash, not a report of each
	// step. A file kept busy is still checked every Settle.
	pending := map[string]time.Time{} // path -> first event not yet checked
	tick := time.NewTicker(Settle / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			s.sync(ctx, out)
		case now := <-tick.C:
			for p, first := range pending {
				if now.Sub(first) >= Settle {
					delete(pending, p)
					s.check(ctx, out, p)
				}
			}
		case err := <-w.Errors:
			s.errors.Add(1)
			s.log.Warn("inotify", "err", err)
		case ev := <-w.Events:
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					s.addTree(ev.Name, false)
					// Files made in the new directory before the watch was set.
					_ = filepath.WalkDir(ev.Name, func(p string, d fs.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							s.check(ctx, out, p)
						}
						return nil
					})
					continue
				}
			}
			if _, ok := pending[ev.Name]; !ok {
				pending[ev.Name] = time.Now()
			}
		}
	}
}

// addTree watches dir and every directory below it; with baseline, it records the hash of
// every file found (host paths).
func (s *Sensor) addTree(root string, baseline bool) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			s.log.Warn("cannot watch", "path", p, "err", err)
			return nil
		}
		if d.IsDir() {
			if err := s.w.Add(p); err != nil {
				s.log.Warn("cannot watch", "path", p, "err", err)
			}
			return nil
		}
		if baseline {
			if h, err := hashFile(p); err == nil {
				s.mu.Lock()
				s.baseline[p] = h
				s.mu.Unlock()
			}
		}
		return nil
	})
	if fi, err := os.Stat(root); err == nil && !fi.IsDir() {
		_ = s.w.Add(filepath.Dir(root)) // a single file: watch its directory
	}
}

// sync watches the current executors' trees and checks each of their files once (a file
// changed before the watch was set is found too).
func (s *Sensor) sync(ctx context.Context, out chan<- sensor.Event) {
	s.mu.Lock()
	execs := make([]Executor, 0, len(s.executors))
	for _, e := range s.executors {
		execs = append(execs, e)
	}
	// Forget what was reported about executors that are gone (bounded memory).
	for p := range s.reported {
		if _, host := s.baseline[p]; host || s.underHostPath(p) {
			continue
		}
		keep := false
		for _, e := range execs {
			if r, err := filepath.Rel(e.Dir, p); err == nil && !strings.HasPrefix(r, "..") {
				keep = true
				break
			}
		}
		if !keep {
			delete(s.reported, p)
		}
	}
	s.mu.Unlock()
	for _, e := range execs {
		s.addTree(e.Dir, false)
		_ = filepath.WalkDir(e.Dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				s.check(ctx, out, p)
			}
			return nil
		})
		for rel := range e.Manifest {
			p := filepath.Join(e.Dir, filepath.FromSlash(rel))
			if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
				s.check(ctx, out, p)
			}
		}
	}
}

// check compares path with what it should be and reports a difference once.
func (s *Sensor) check(ctx context.Context, out chan<- sensor.Event, path string) {
	s.mu.Lock()
	var ex *Executor
	var rel string
	for _, e := range s.executors {
		if r, err := filepath.Rel(e.Dir, path); err == nil && r != "." && !strings.HasPrefix(r, "..") {
			e := e
			ex, rel = &e, filepath.ToSlash(r)
			break
		}
	}
	want, inBaseline := s.baseline[path]
	s.mu.Unlock()
	var ok bool
	switch {
	case ex != nil:
		if ignored(ex.Ignore, rel) {
			return
		}
		want, ok = ex.Manifest[rel]
	case inBaseline:
		ok = true
	default:
		if !s.underHostPath(path) {
			return
		}
	}
	got, err := hashFile(path)
	kind := "file.changed"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !ok {
			return // a file that should not be there went away
		}
		kind, got = "file.removed", "absent"
	case err != nil:
		got = "unreadable: " + err.Error()
	case !ok:
		kind = "file.added"
	case got == want:
		s.mu.Lock()
		delete(s.reported, path)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if s.reported[path] == got {
		s.mu.Unlock()
		return
	}
	s.reported[path] = got
	s.mu.Unlock()
	e := sensor.Event{Time: time.Now(), Sensor: "fim", Kind: kind, Path: path, Attrs: map[string]string{"sha256": got}}
	if ok {
		e.Attrs["expected_sha256"] = want
	}
	where := "host"
	if ex != nil {
		where = "executor " + ex.ID + " (" + ex.Variant + ")"
		e.Attrs["executor"], e.Attrs["variant"], e.Attrs["relative"] = ex.ID, ex.Variant, rel
	}
	e.Summary = sensor.Excerpt(fmt.Sprintf("%s in %s: %s", kind, where, path))
	e.Excerpt = sensor.Excerpt(fmt.Sprintf("path=%s expected_sha256=%s sha256=%s", path, orNone(want, ok), got))
	if sensor.Send(ctx, out, e) {
		s.events.Add(1)
	}
}

func (s *Sensor) underHostPath(path string) bool {
	for _, p := range s.o.Paths {
		if r, err := filepath.Rel(p, path); err == nil && !strings.HasPrefix(r, "..") {
			return true
		}
	}
	return false
}

func orNone(s string, ok bool) string {
	if !ok {
		return "none (not in the image)"
	}
	return s
}

// hashFile is the lowercase hex SHA-256 of the regular file at p; a symbolic link or other
// non-regular file is reported by its type, a file over MaxHashed by its size.
func hashFile(p string) (string, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file: " + fi.Mode().Type().String(), nil
	}
	if fi.Size() > MaxHashed {
		return fmt.Sprintf("too large to hash: %d bytes", fi.Size()), nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, MaxHashed)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// MaxManifestFiles bounds the files ManifestOf hashes.
const MaxManifestFiles = 100_000

// ManifestOf hashes every file below dir, as the manifest of a known-good tree: for a
// container, its root file system seen from the host right after it started from its
// verified image (its root is read-only, so nothing of its own is in it yet). Symbolic links
// and other non-regular files are recorded by their type, as check compares them.
func ManifestOf(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if len(out) >= MaxManifestFiles {
			return fmt.Errorf("more than %d files", MaxManifestFiles)
		}
		h, err := hashFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fim: manifest of %s: %w", dir, err)
	}
	return out, nil
}

// ParseManifest reads a MANIFEST.sha256 ("<64 hex>  <relative path>" per line, as
// sha256sum writes it) into path -> hash. Absolute paths, ".." and malformed lines are
// refused.
func ParseManifest(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		sum, path, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 || strings.ToLower(sum) != sum {
			return nil, fmt.Errorf("fim: manifest line %d: want \"<sha256 hex>  <path>\"", n)
		}
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("fim: manifest line %d: %w", n, err)
		}
		if path == "" || strings.HasPrefix(path, "/") || filepath.ToSlash(filepath.Clean(path)) != path || path == ".." || strings.HasPrefix(path, "../") {
			return nil, fmt.Errorf("fim: manifest line %d: bad path %q", n, path)
		}
		if _, dup := out[path]; dup {
			return nil, fmt.Errorf("fim: manifest line %d: %s listed twice", n, path)
		}
		out[path] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fim: manifest: %w", err)
	}
	return out, nil
}

func init() {
	sensor.Register(ID, func(env sensor.Env) ([]sensor.Source, error) {
		c := env.Config.FIM
		if c == nil {
			return nil, nil
		}
		var paths []string
		for _, p := range c.Paths {
			if !filepath.IsAbs(p) {
				p = filepath.Join(env.BaseDir, p)
			}
			paths = append(paths, filepath.Clean(p))
		}
		srcs := []sensor.Source{New(Options{Paths: paths, Logger: env.Logger})}
		if r := c.AIDEReport; r != "" {
			if !filepath.IsAbs(r) {
				r = filepath.Join(env.BaseDir, r)
			}
			o := AIDEOptions{Report: filepath.Clean(r), Logger: env.Logger}
			if env.DataDir != "" {
				o.StateFile = filepath.Join(env.DataDir, AIDEStateFile)
			}
			srcs = append(srcs, NewAIDE(o))
		}
		return srcs, nil
	})
}

// Counters are what the sensor counted (changes reported, watch errors), for status and
// metrics.
func (s *Sensor) Counters() map[string]uint64 {
	return map[string]uint64{"events": s.events.Load(), "errors": s.errors.Load()}
}

// ignored says whether rel is one of ignore's paths or below one of its directories.
func ignored(ignore []string, rel string) bool {
	for _, p := range ignore {
		if p == rel || strings.HasSuffix(p, "/") && (strings.HasPrefix(rel, p) || rel+"/" == p) {
			return true
		}
	}
	return false
}
