package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/sensor/fim"
)

type fakeMembers []executor.MemberStatus

func (f fakeMembers) Members() []executor.MemberStatus { return f }
func (f fakeMembers) Config() executor.PoolConfig      { return executor.PoolConfig{} }

// Containers whose root file system the agent can read are watched against their image's
// manifest, taken from the image's first container; a quarantined one is not watched.
// (executor/docker's TestContainerRootWatchedByFIM does the same on real containers.)
func TestContainerRootsAreWatched(t *testing.T) {
	roots := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	for _, r := range roots {
		if err := os.WriteFile(filepath.Join(r, "server"), []byte("known good"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	members := fakeMembers{
		{Instance: &executor.Instance{ID: "c1", Variant: "v", Driver: "docker", ImageDigest: "sha256:aa", RootDir: roots[0]}, State: executor.StateHealthy},
		{Instance: &executor.Instance{ID: "c2", Variant: "v", Driver: "docker", ImageDigest: "sha256:aa", RootDir: roots[1]}, State: executor.StateHealthy},
		{Instance: &executor.Instance{ID: "c3", Variant: "v", Driver: "docker", ImageDigest: "sha256:aa", RootDir: roots[2]}, State: executor.StateQuarantined},
		{Instance: &executor.Instance{ID: "remote", Variant: "v", Driver: "docker", ImageDigest: "sha256:aa"}, State: executor.StateHealthy},
	}
	s := fim.New(fim.Options{})
	w := &executorWatcher{pools: []Members{members}, sensors: []*fim.Sensor{s}, manifests: map[string]map[string]string{}}
	w.sync()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan sensor.Event, 8)
	go s.Run(ctx, out)
	for _, r := range roots {
		if err := os.WriteFile(filepath.Join(r, "server"), []byte("tampered"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case e := <-out:
			id := e.Attrs["executor"]
			if e.Kind != "file.changed" || e.Attrs["relative"] != "server" || (id != "c1" && id != "c2") {
				t.Fatalf("event %s %v", e.Kind, e.Attrs)
			}
			seen[id] = true // a write caught half-way by the sensor's first pass is reported twice
		case <-time.After(time.Minute):
			t.Fatalf("tampered containers reported: %v, want c1 and c2", seen)
		}
	}
	quiet := time.After(300 * time.Millisecond)
	for {
		select {
		case e := <-out:
			if e.Attrs["executor"] != "c1" && e.Attrs["executor"] != "c2" {
				t.Fatalf("event %s %v (only c1 and c2 are watched)", e.Kind, e.Attrs)
			}
		case <-quiet:
			return
		}
	}
}
