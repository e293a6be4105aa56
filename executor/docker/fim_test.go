package docker

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/sensor"
	"github.com/proteus-defense/proteus/sensor/fim"
)

// A container's root file system is watched from the host: a file added or changed in a
// running container is a file-integrity event naming the container, and two honest containers
// of one image match the manifest taken from the first.
func TestContainerRootWatchedByFIM(t *testing.T) {
	_, pin := fixture(t)
	if os.Geteuid() != 0 {
		t.Skip("a container's root file system is readable from the host only as root")
	}
	d := newTestDriver(t, t.TempDir(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := d.Start(ctx, serverSpec("fim-a", pin))
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Start(ctx, serverSpec("fim-b", pin))
	if err != nil {
		t.Fatal(err)
	}
	if a.RootDir == "" || b.RootDir == "" {
		t.Fatalf("no root dir: %q %q", a.RootDir, b.RootDir)
	}
	mf, err := fim.ManifestOf(a.RootDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mf["httpserver"]; !ok {
		t.Fatalf("manifest of %s has no httpserver: %v", a.RootDir, mf)
	}
	s := fim.New(fim.Options{})
	s.SetExecutors([]fim.Executor{
		{ID: a.ID, Variant: a.Variant, Dir: a.RootDir, Manifest: mf},
		{ID: b.ID, Variant: b.Variant, Dir: b.RootDir, Manifest: mf},
	})
	out := make(chan sensor.Event, 16)
	go s.Run(ctx, out)
	// Nothing is reported about honest containers (the sensor checks every file at its start).
	select {
	case e := <-out:
		t.Fatalf("event about an untouched container: %s %s %v", e.Kind, e.Path, e.Attrs)
	case <-time.After(500 * time.Millisecond):
	}
	// Tampering from outside the container (the container's own root is read-only): a new
	// file and a changed binary in b.
	if err := os.WriteFile(filepath.Join(b.RootDir, "injected.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The running binary cannot be written (ETXTBSY); replacing it is how it is tampered with.
	fake := filepath.Join(b.RootDir, ".httpserver.new")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho owned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fake, filepath.Join(b.RootDir, "httpserver")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"injected.sh": "file.added", "httpserver": "file.changed"}
	seen := map[string]bool{}
	deadline := time.After(time.Minute)
	for len(want) > 0 {
		select {
		case e := <-out:
			rel := e.Attrs["relative"]
			if rel == ".httpserver.new" || seen[rel] {
				continue // seen before the rename, or a write caught half-way, on a slow machine
			}
			seen[rel] = true
			if e.Attrs["executor"] != b.ID || want[rel] != e.Kind {
				t.Fatalf("event %s %s %v, want one of %v about %s", e.Kind, e.Path, e.Attrs, want, b.ID)
			}
			if rel == "httpserver" && (e.Attrs["expected_sha256"] != mf["httpserver"] || e.Attrs["sha256"] == mf["httpserver"]) {
				t.Fatalf("changed binary: hashes %v, manifest %s", e.Attrs, mf["httpserver"])
			}
			delete(want, rel)
		case <-deadline:
			t.Fatalf("no event for %v", want)
		}
	}
}
