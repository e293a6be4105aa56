package fim

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/sensor"
)

// testdata/aide-0.18.3-report.txt is the report AIDE 0.18.3 (Debian 12) wrote for a tree where
// a.txt went from "hello\n" to "changed\n", b.txt was removed and c.txt added.
func TestParseAIDEReport(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "aide-0.18.3-report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseAIDEReport(data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Start, "Start timestamp: 2026-12-02 01:59:39") || len(r.Changes) != 3 {
		t.Fatalf("%+v", r)
	}
	got := map[string]AIDEChange{}
	for _, c := range r.Changes {
		got[filepath.Base(c.Path)] = c
	}
	if got["c.txt"].Kind != "file.added" || got["b.txt"].Kind != "file.removed" || got["a.txt"].Kind != "file.changed" {
		t.Fatalf("%+v", r.Changes)
	}
	if a := got["a.txt"]; a.OldSHA != sum("hello\n") || a.NewSHA != sum("changed\n") || a.Path != "/tmp/aidet/w/a.txt" {
		t.Fatalf("a.txt: %+v", a)
	}
	for _, bad := range []string{"", "hello\n", "Start timestamp: x\nAdded entries:\nf+++ no path here\n"} {
		if _, err := ParseAIDEReport([]byte(bad)); !errors.Is(err, ErrNotAIDEReport) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	clean := "Start timestamp: 2026-12-02 02:00:00 +0000 (AIDE 0.18.3)\nAIDE found NO differences between database and filesystem. Looks okay!!\n"
	if r, err := ParseAIDEReport([]byte(clean)); err != nil || len(r.Changes) != 0 {
		t.Fatalf("clean report: %+v %v", r, err)
	}
}

func FuzzParseAIDEReport(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "aide-0.18.3-report.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("Start timestamp: x\nChanged entries:\nf : /a\nDetailed information about changes:\nFile: /a\n SHA256 : x | y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseAIDEReport(data)
		if err != nil {
			if !errors.Is(err, ErrNotAIDEReport) {
				t.Fatalf("error %v", err)
			}
			return
		}
		for _, c := range r.Changes {
			if !strings.HasPrefix(c.Path, "/") || (c.NewSHA != "" && len(c.NewSHA) != 64) {
				t.Fatalf("change %+v", c)
			}
		}
	})
}

// The real aide: a database of a tree, a change, `aide --check` writes its report, and the
// source reports the change once (again only for a new report), also across a restart.
func TestAIDESourceWithRealAIDE(t *testing.T) {
	aide, err := exec.LookPath("aide")
	if err != nil {
		t.Skip("aide not installed (Debian package aide; .ci/run installs it)")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	write(t, filepath.Join(tree, "etc", "app.conf"), "listen 80\n")
	conf := filepath.Join(dir, "aide.conf")
	report := filepath.Join(dir, "report.txt")
	db := filepath.Join(dir, "aide.db")
	write(t, conf, "database_in=file:"+db+"\ndatabase_out=file:"+db+".new\nreport_url=file:"+report+"\nreport_format=plain\n"+tree+" p+u+g+s+sha256\n")
	runAIDE := func(args ...string) {
		t.Helper()
		out, err := exec.Command(aide, append([]string{"--config=" + conf}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() < 14) { // 1..7: differences found
			t.Fatalf("aide %v: %v: %s", args, err, out)
		}
	}
	runAIDE("--init")
	if err := os.Rename(db+".new", db); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "aide.pos")
	src := NewAIDE(AIDEOptions{Report: report, StateFile: state, Poll: 50 * time.Millisecond})
	out := make(chan sensor.Event, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	write(t, filepath.Join(tree, "etc", "app.conf"), "listen 80\nload_module /tmp/evil.so\n")
	runAIDE("--check")
	e := next(t, out)
	if e.Sensor != "aide" || e.Kind != "file.changed" || e.Path != filepath.Join(tree, "etc", "app.conf") ||
		e.Attrs["expected_sha256"] != sum("listen 80\n") || e.Attrs["sha256"] != sum("listen 80\nload_module /tmp/evil.so\n") {
		t.Fatalf("%+v", e)
	}
	none(t, out) // the same report is not read twice
	cancel()
	<-done
	// A restart with the state file: the report already handled is not replayed.
	src2 := NewAIDE(AIDEOptions{Report: report, StateFile: state, Poll: 50 * time.Millisecond})
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- src2.Run(ctx2, out) }()
	defer func() { cancel2(); <-done }()
	none(t, out)
}
