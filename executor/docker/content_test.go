package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

func sha(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

type tarEntry struct {
	name string
	data []byte
}

func tarOf(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tarFile(tw, e.name, e.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// savedImage builds a legacy-layout `docker save` archive for one image with the given
// layers, and returns it with the image ID.
func savedImage(t testing.TB, layers ...[]byte) ([]tarEntry, string) {
	t.Helper()
	var diffIDs, names []string
	var entries []tarEntry
	for i, l := range layers {
		name := fmt.Sprintf("l%d/layer.tar", i)
		diffIDs = append(diffIDs, sha(l))
		names = append(names, name)
		entries = append(entries, tarEntry{name, l})
	}
	cfg, _ := json.Marshal(map[string]any{"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	id := sha(cfg)
	man, _ := json.Marshal([]map[string]any{{"Config": strings.TrimPrefix(id, "sha256:") + ".json", "Layers": names}})
	entries = append(entries, tarEntry{strings.TrimPrefix(id, "sha256:") + ".json", cfg}, tarEntry{"manifest.json", man})
	return entries, id
}

func TestCheckSavedImage(t *testing.T) {
	good, id := savedImage(t, []byte("layer zero"), []byte("layer one"))
	tests := []struct {
		name    string
		mod     func([]tarEntry) []tarEntry
		id      string
		wantErr string
	}{
		{name: "good", mod: func(e []tarEntry) []tarEntry { return e }},
		{name: "other id", mod: func(e []tarEntry) []tarEntry { return e }, id: "sha256:" + hex64, wantErr: "configuration of"},
		{name: "layer changed", mod: func(e []tarEntry) []tarEntry {
			e[1] = tarEntry{e[1].name, []byte("layer 0ne")}
			return e
		}, wantErr: "layer 1 of"},
		{name: "layer missing", mod: func(e []tarEntry) []tarEntry { return e[1:] }, wantErr: "layer 0 of"},
		{name: "no manifest", mod: func(e []tarEntry) []tarEntry { return e[:len(e)-1] }, wantErr: "no manifest.json"},
		{name: "bad manifest", mod: func(e []tarEntry) []tarEntry {
			e[len(e)-1] = tarEntry{"manifest.json", []byte("{")}
			return e
		}, wantErr: "manifest.json unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := tt.mod(append([]tarEntry(nil), good...))
			want := id
			if tt.id != "" {
				want = tt.id
			}
			err := checkSavedImage(bytes.NewReader(tarOf(t, entries)), want)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkSavedImage: %v", err)
				}
				return
			}
			if !errors.Is(err, errContent) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkSavedImage error = %v, want errContent containing %q", err, tt.wantErr)
			}
		})
	}
	// An export the engine cut short (as it does when a layer fails its own verification).
	full := tarOf(t, good)
	if err := checkSavedImage(bytes.NewReader(full[:len(full)/2]), id); !errors.Is(err, errContent) {
		t.Fatalf("truncated export: %v, want errContent", err)
	}
}

func FuzzCheckSavedImage(f *testing.F) {
	good, id := savedImage(f, []byte("layer"))
	f.Add(tarOf(f, good), id)
	f.Add([]byte{}, id)
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		_ = checkSavedImage(bytes.NewReader(data), id) // must not panic
	})
}

// TestTamperedLayerOnDisk changes a file inside an image's layer in the engine's storage
// (what an attacker with host access would do to poison every future container) and checks
// that the next start refuses the image although its ID and tag are unchanged.
func TestTamperedLayerOnDisk(t *testing.T) {
	cli, _ := fixture(t)
	ctx := context.Background()
	// A layer of its own (random marker file), so the shared test image is never touched.
	marker := make([]byte, 16)
	rand.Read(marker)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte(hex.EncodeToString(marker)), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "proteus-test/layer-tamper:" + hex.EncodeToString(marker[:6])
	ref, err := BuildImage(ctx, cli, ScratchImage{Tag: tag, Binary: fixtureBin, Files: map[string]string{"/etc/marker": filepath.Join(src, "marker")}})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	id := ref[strings.LastIndexByte(ref, '@')+1:]
	t.Cleanup(func() {
		cli.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true, PruneChildren: true})
	})

	spec := serverSpec("layered", ref)
	d := newTestDriver(t, t.TempDir(), nil)
	inst, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start of the untouched image: %v", err)
	}
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	info, err := cli.ImageInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	diff := info.GraphDriver.Data["UpperDir"]
	onDisk := filepath.Join(diff, "etc", "marker")
	if diff == "" {
		t.Skipf("storage driver %s does not expose the layer directory; cannot tamper with it", info.GraphDriver.Name)
	}
	if _, err := os.Stat(onDisk); err != nil {
		t.Skipf("layer files not reachable from this process (%v); the engine's storage is elsewhere", err)
	}
	if err := os.WriteFile(onDisk, []byte("tampered-content!!!!!!!!!!!!!!!!"), 0o644); err != nil {
		t.Skipf("cannot write into the layer store: %v", err)
	}

	b := bus.New()
	events, cancel := b.Subscribe(4, bus.KindPrefix(executor.EventTamperedImage))
	defer cancel()
	fresh := newTestDriver(t, t.TempDir(), b) // a new driver has no cached content check
	_, err = fresh.Start(ctx, spec)
	if !errors.Is(err, executor.ErrTamperedImage) {
		t.Fatalf("Start after the layer changed on disk: %v, want ErrTamperedImage", err)
	}
	t.Logf("refused: %v", err)
	select {
	case ev := <-events:
		if ev.Attrs["found"] != id {
			t.Fatalf("event = %+v", ev)
		}
	default:
		t.Fatal("no executor.tampered-image event")
	}
	if l, _ := fresh.List(ctx); len(l) != 0 {
		t.Fatalf("a container was created from a tampered image: %v", l)
	}
}
