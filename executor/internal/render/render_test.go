package render

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type data struct {
	Port int
	IP   string
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	sums, err := Files(map[string]string{"etc/a.conf": "listen {{.IP}}@{{.Port}}\n", "b": "x"}, dir, data{53, "0.0.0.0"}, 0o755, 0o444)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "etc", "a.conf"))
	if err != nil || string(got) != "listen 0.0.0.0@53\n" {
		t.Fatalf("rendered %q, %v", got, err)
	}
	sum := sha256.Sum256(got)
	if sums["etc/a.conf"] != hex.EncodeToString(sum[:]) || len(sums) != 2 {
		t.Errorf("hashes %v", sums)
	}
	for p, want := range map[string]os.FileMode{"etc": 0o755 | os.ModeDir, "etc/a.conf": 0o444} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
	// An existing file (the verified image's, for the process driver) is never overwritten.
	if _, err := Files(map[string]string{"b": "y"}, dir, data{}, 0o755, 0o644); err == nil || !strings.Contains(err.Error(), "the image has a file") {
		t.Errorf("overwrite: %v", err)
	}
	// A field the driver does not have is an error, not an empty string.
	if err := Check([]string{"{{.Port}}"}, map[string]string{"c": "{{.Self}}"}, data{}); err == nil || !strings.Contains(err.Error(), "files[c]") {
		t.Errorf("unknown field: %v", err)
	}
}
