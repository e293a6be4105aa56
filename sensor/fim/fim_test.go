package fim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/sensor"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func next(t *testing.T, out <-chan sensor.Event) sensor.Event {
	t.Helper()
	select {
	case e := <-out:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return sensor.Event{}
	}
}

// settled returns the event for rel whose sha256 is final: a file written in steps (created,
// then written) may first be seen in between, and each state seen is reported.
func settled(t *testing.T, out <-chan sensor.Event, rel, final string) sensor.Event {
	t.Helper()
	for {
		e := next(t, out)
		if e.Attrs["relative"] != rel {
			t.Fatalf("event for %q, want %q: %+v", e.Attrs["relative"], rel, e)
		}
		if e.Attrs["sha256"] == final {
			return e
		}
	}
}

func none(t *testing.T, out <-chan sensor.Event) {
	t.Helper()
	select {
	case e := <-out:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestExecutorFilesCheckedAgainstManifest(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "site", "index.html"), "hello\n")
	write(t, filepath.Join(dir, "site", "about.html"), "about\n")
	s := New(Options{})
	s.SetExecutors([]Executor{{ID: "e1", Variant: "go-raw", Dir: dir, Ignore: []string{"out.log"}, Manifest: map[string]string{
		"site/index.html": sum("hello\n"), "site/about.html": sum("about\n")}}})
	out := make(chan sensor.Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	write(t, filepath.Join(dir, "out.log"), "the driver's own log")
	none(t, out) // an intact tree is quiet, and an ignored file is not checked

	write(t, filepath.Join(dir, "site", "index.html"), "defaced\n")
	e := settled(t, out, "site/index.html", sum("defaced\n"))
	if e.Sensor != "fim" || e.Kind != "file.changed" || e.Attrs["executor"] != "e1" || e.Attrs["relative"] != "site/index.html" ||
		e.Attrs["sha256"] != sum("defaced\n") || e.Attrs["expected_sha256"] != sum("hello\n") || !strings.Contains(e.Excerpt, sum("hello\n")) {
		t.Fatalf("%+v", e)
	}
	none(t, out) // one change, one event, however many writes inotify reports

	write(t, filepath.Join(dir, "site", "shell.php"), "<?php system($_GET['c']);")
	if e := settled(t, out, "site/shell.php", sum("<?php system($_GET['c']);")); e.Kind != "file.added" {
		t.Fatalf("%+v", e)
	}
	os.Remove(filepath.Join(dir, "site", "about.html"))
	if e := next(t, out); e.Kind != "file.removed" || e.Attrs["sha256"] != "absent" {
		t.Fatalf("%+v", e)
	}
	// A new directory's files are seen.
	write(t, filepath.Join(dir, "site", "new", "x.js"), "x")
	if e := settled(t, out, "site/new/x.js", sum("x")); e.Kind != "file.added" {
		t.Fatalf("%+v", e)
	}
}

func TestTamperedBeforeWatchIsFound(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a"), "changed")
	s := New(Options{})
	out := make(chan sensor.Event, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	s.SetExecutors([]Executor{{ID: "e2", Dir: dir, Manifest: map[string]string{"a": sum("original"), "b": sum("b")}}})
	got := map[string]string{}
	for range 2 {
		e := next(t, out)
		got[e.Attrs["relative"]] = e.Kind
	}
	if got["a"] != "file.changed" || got["b"] != "file.removed" {
		t.Fatalf("%v", got)
	}
}

func TestHostPathsAgainstBaseline(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "etc", "passwd")
	write(t, cfgFile, "root:x:0:0\n")
	s := New(Options{Paths: []string{filepath.Join(dir, "etc")}})
	out := make(chan sensor.Event, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // the baseline is taken when Run starts
	write(t, cfgFile, "root:x:0:0\nevil:x:0:0\n")
	var e sensor.Event
	for e.Attrs["sha256"] != sum("root:x:0:0\nevil:x:0:0\n") {
		e = next(t, out)
	}
	if e.Kind != "file.changed" || e.Path != cfgFile || e.Attrs["expected_sha256"] != sum("root:x:0:0\n") || e.Attrs["executor"] != "" {
		t.Fatalf("%+v", e)
	}
}

func TestParseManifest(t *testing.T) {
	good := sum("x") + "  site/index.html\n" + sum("y") + "  a b/c d.txt\n"
	m, err := ParseManifest([]byte(good))
	if err != nil || m["site/index.html"] != sum("x") || m["a b/c d.txt"] != sum("y") {
		t.Fatalf("%v %v", m, err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "bad-manifests.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range strings.Split(strings.TrimSpace(string(data)), "\n---\n") {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(sum("x") + "  site/index.html\n"))
	f.Add([]byte("zz  ../etc/passwd\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		for p, h := range m {
			if strings.HasPrefix(p, "/") || strings.HasPrefix(p, "../") || p == ".." || len(h) != 64 {
				t.Fatalf("accepted %q %q", p, h)
			}
		}
	})
}

func TestIgnoredDirectory(t *testing.T) {
	ig := []string{"out.log", "state/"}
	for rel, want := range map[string]bool{"out.log": true, "state/x.pid": true, "state/db/data.mdb": true, "state": true,
		"statex": false, "site/out.log": false, "zone": false, "x/state/y": false} {
		if got := ignored(ig, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
}
