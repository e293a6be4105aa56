package decoy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// The decoy plan mirrors what matters (api.token, a sibling's files, the image) and nothing
// of the executor's own work dir, skips links, FIFOs and sockets, and stays bounded when
// another executor fills its work dir with names.
func TestPlanAndMake(t *testing.T) {
	data := t.TempDir()
	mk := func(rel string, size int) {
		p := filepath.Join(data, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk("api.token", 33)
	own := filepath.Join(data, "executor", "process", "work", "own-1")
	mk("executor/process/work/own-1/site/index.html", 10)
	mk("executor/process/work/sib-2/site/index.html", 1234)
	mk("executor/process/run/sib-2.json", 5)
	for i := range 5000 { // a hostile sibling's work dir
		mk(fmt.Sprintf("executor/process/work/hostile-3/junk%05d", i), 0)
	}
	if err := os.Symlink("/etc/shadow", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(data, "etcdir")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(data, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := Plan(data, own)
	if len(plan) > Max {
		t.Fatalf("%d decoys, bound %d", len(plan), Max)
	}
	byRel := map[string]Entry{}
	for _, d := range plan {
		byRel[d.Rel] = d
	}
	for rel, size := range map[string]int64{"api.token": 33, "executor/process/work/sib-2/site/index.html": 1234, "executor/process/run/sib-2.json": 5} {
		if d, ok := byRel[rel]; !ok || d.Dir || d.Size != size {
			t.Errorf("decoy %s: %+v %v", rel, d, ok)
		}
	}
	junk := 0
	for rel := range byRel {
		if Within(filepath.Join(data, rel), own) {
			t.Errorf("decoy of the executor's own work dir: %s", rel)
		}
		if slices.Contains([]string{"link", "fifo", "etcdir"}, rel) || strings.HasPrefix(rel, "etcdir/") {
			t.Errorf("decoy of a %s", rel)
		}
		if filepath.Dir(rel) == "executor/process/work/hostile-3" {
			junk++
		}
	}
	if junk > MaxPerDir {
		t.Errorf("%d decoys from one directory, bound %d", junk, MaxPerDir)
	}

	// Made in a fresh directory (the cover): root's dirs, files anyone may open, sized.
	cover := t.TempDir()
	files, err := Make(cover, plan)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(cover, "api.token"))
	if err != nil || st.Mode().Perm() != 0o666 || st.Size() != 33 {
		t.Fatalf("api.token decoy: %v %v", st, err)
	}
	if !slices.Contains(files, filepath.Join(cover, "executor/process/work/sib-2/site/index.html")) {
		t.Errorf("decoy files %v", files)
	}
}
