package engine

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/sensor/fim"
)

// Members is what the file-integrity wiring needs from the executor pool: the running
// instances and the variants' images.
type Members interface {
	Members() []executor.MemberStatus
	Config() executor.PoolConfig
}

// executorWatcher keeps the FIM sensors' set of watched executors equal to the pools' running
// executors (the voting pool's, and the decoy executor's): process executors with the
// manifest of the image they were copied from, containers whose root file system is readable
// here with their image's (see rootManifest).
type executorWatcher struct {
	pools     []Members
	sensors   []*fim.Sensor
	mu        sync.Mutex
	manifests map[string]map[string]string // image dir, or "image " + digest for containers -> manifest
}

func fimSensors(srcs []sensor.Source) []*fim.Sensor {
	var out []*fim.Sensor
	for _, s := range srcs {
		if f, ok := s.(*fim.Sensor); ok {
			out = append(out, f)
		}
	}
	return out
}

// sync reads the pools and hands the sensors the executors to watch.
func (w *executorWatcher) sync() {
	var list []fim.Executor
	for _, p := range w.pools {
		list = w.appendWatched(list, p)
	}
	for _, s := range w.sensors {
		s.SetExecutors(list)
	}
}

// appendWatched appends pool p's running executors that can be watched to list.
func (w *executorWatcher) appendWatched(list []fim.Executor, p Members) []fim.Executor {
	images := map[string]string{}
	for _, v := range p.Config().Variants {
		images[v.Variant] = v.Image
	}
	for _, m := range p.Members() {
		in := m.Instance
		if m.State != executor.StateHealthy && m.State != executor.StateStarting {
			continue
		}
		if in.WorkDir == "" {
			if mf := w.rootManifest(in); mf != nil {
				list = append(list, fim.Executor{ID: in.ID, Variant: in.Variant, Dir: in.RootDir, Manifest: mf})
			}
			continue
		}
		mf := w.manifest(images[in.Variant])
		if mf == nil {
			continue
		}
		if len(in.Rendered) > 0 { // the files the driver rendered from the variant's templates
			mf = maps.Clone(mf)
			maps.Copy(mf, in.Rendered)
		}
		list = append(list, fim.Executor{ID: in.ID, Variant: in.Variant, Dir: in.WorkDir, Manifest: mf,
			Ignore: []string{process.OutputFile, process.RecordFile, process.StateDir + "/"}})
	}
	return list
}

// manifest parses (once per image) the image's MANIFEST.sha256; nil when unreadable.
func (w *executorWatcher) manifest(image string) map[string]string {
	if image == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.manifests[image]; ok {
		return m
	}
	data, err := os.ReadFile(filepath.Join(image, process.ManifestName))
	var m map[string]string
	if err == nil {
		m, _ = fim.ParseManifest(data)
	}
	w.manifests[image] = m
	return m
}

// rootManifest is the manifest of a container's image: its first container's root file system
// hashed from the host (fim.ManifestOf), once per image; nil when the container's root is not
// readable here (a remote engine, an agent that is not root).
func (w *executorWatcher) rootManifest(in *executor.Instance) map[string]string {
	if in.RootDir == "" || in.ImageDigest == "" {
		return nil
	}
	key := "image " + in.ImageDigest
	w.mu.Lock()
	defer w.mu.Unlock()
	if m, ok := w.manifests[key]; ok {
		return m
	}
	m, err := fim.ManifestOf(in.RootDir)
	if err != nil {
		return nil // not kept: the next container of the image tries again
	}
	w.manifests[key] = m
	return m
}

// run re-syncs on every executor event of the buses (each pool's) until ctx ends.
func (w *executorWatcher) run(ctx context.Context, buses ...*bus.Bus) {
	changed := make(chan struct{}, 1) // a burst is one sync
	for _, b := range buses {
		ch, cancel := b.Subscribe(256, bus.KindPrefix("executor."))
		defer cancel() // closes ch, which ends its forwarder
		go func() {
			for range ch {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}()
	}
	w.sync()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			w.sync()
		}
	}
}
