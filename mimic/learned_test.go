package mimic

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoadLearned(t *testing.T) {
	dir := t.TempDir()
	if m, err := LoadLearned(filepath.Join(dir, "absent.json")); m != nil || err != nil {
		t.Fatalf("missing file: %v, %v; want nothing learned and no error", m, err)
	}
	good := `{"version": 1, "routes": {"default": ["header:X-Request-Id", "json:/ts"], "/api/": ["json:"]}}`
	p := filepath.Join(dir, "good.json")
	os.WriteFile(p, []byte(good), 0o600)
	m, err := LoadLearned(p)
	if err != nil || !slices.Equal(m["default"], []string{"header:X-Request-Id", "json:/ts"}) || !slices.Equal(m["/api/"], []string{"json:"}) {
		t.Fatalf("good file: %v, %v", m, err)
	}
	for _, c := range []struct{ name, text, want string }{
		{"not json", `{"version": 1,`, "unexpected EOF"},
		{"unknown field", `{"version": 1, "routes": {}, "extra": 1}`, `unknown field "extra"`},
		{"version", `{"version": 2, "routes": {}}`, "version 2, want 1"},
		{"trailing", `{"version": 1, "routes": {}} {}`, "data after the JSON value"},
		{"route", `{"version": 1, "routes": {"api": ["json:/a"]}}`, `route "api"`},
		{"header case", `{"version": 1, "routes": {"default": ["header:x-request-id"]}}`, "not a canonical header name"},
		{"header name", `{"version": 1, "routes": {"default": ["header:Bad Name"]}}`, "not a canonical header name"},
		{"pointer", `{"version": 1, "routes": {"default": ["json:ts"]}}`, "not a JSON pointer"},
		{"kind", `{"version": 1, "routes": {"default": ["cookie:a"]}}`, "want header:NAME or json:/POINTER"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".json")
		os.WriteFile(p, []byte(c.text), 0o600)
		_, err := LoadLearned(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming %s and %q", c.name, err, p, c.want)
		}
	}
}

func TestSaveLearnedRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created by SaveLearned
	p := filepath.Join(dir, "learned-noise.json")
	in := map[string][]string{"default": {"json:/ts", "header:X-Request-Id"}, "/api/": nil}
	if err := SaveLearned(p, in); err != nil {
		t.Fatal(err)
	}
	out, err := LoadLearned(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out["default"], []string{"header:X-Request-Id", "json:/ts"}) || len(out) != 1 {
		t.Fatalf("round trip: %v", out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left in %s: %v (want only the file)", dir, entries)
	}
}

// randomHeaderBackends answer the same body with an X-Rand header that differs every time.
func randomHeaderBackends(t *testing.T) Static {
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Rand", fmt.Sprint(time.Now().UnixNano(), i))
		fmt.Fprint(w, "same\n")
	})
	return bes
}

// What one gateway learned, the next one started on the same file knows from its first request.
func TestLearnedNoiseSurvivesARestart(t *testing.T) {
	bes := randomHeaderBackends(t)
	file := filepath.Join(t.TempDir(), "learned-noise.json")
	g1, err := New(Options{Backends: bes, Learn: true, LearnMinSamples: 3, LearnedFile: file})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g1, ServerOptions{}) + "/"
	c := &http.Client{}
	for i := 0; len(g1.Learned()["default"]) == 0; i++ {
		get(t, c, url+strconv.Itoa(i)) // distinct paths: one path alone never teaches
		g1.Wait()
		if i > 20 {
			t.Fatalf("never learned: %v", g1.Learned())
		}
	}
	g1.Close() // saves what was learned since the last save
	saved, err := LoadLearned(file)
	if err != nil || !slices.Equal(saved["default"], []string{"header:X-Rand"}) {
		t.Fatalf("saved %v, %v", saved, err)
	}

	g2, err := New(Options{Backends: bes, Learn: true, LearnMinSamples: 3, LearnedFile: file})
	if err != nil {
		t.Fatal(err)
	}
	url2 := "http://" + startGateway(t, g2, ServerOptions{}) + "/"
	if code, body := get(t, c, url2); code != http.StatusOK || body != "same\n" {
		t.Fatalf("first request after the restart: %d %q, want the answer (X-Rand is known noise)", code, body)
	}
	// The control: without the file the same first request has no consensus.
	g3, err := New(Options{Backends: bes, Learn: true, LearnMinSamples: 3})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, c, "http://"+startGateway(t, g3, ServerOptions{})+"/"); code != http.StatusBadGateway {
		t.Fatalf("without the file: %d, want 502", code)
	}
	// Learning switched off: the file is not applied.
	g4, err := New(Options{Backends: bes, Learn: false, LearnedFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if got := g4.Learned()["default"]; len(got) != 0 {
		t.Fatalf("learning off, restored %v", got)
	}
}

// An unreadable file does not stop the gateway, and what it held is kept aside, not overwritten.
func TestBadLearnedFileIsSetAside(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "learned-noise.json")
	bad := []byte(`{"version": 1, "routes": {"default": ["header:x-rand"]}}`)
	os.WriteFile(file, bad, 0o600)
	g, err := New(Options{Backends: randomHeaderBackends(t), Learn: true, LearnedFile: file})
	if err != nil {
		t.Fatalf("a bad learned-noise file stopped the gateway: %v", err)
	}
	defer g.Close()
	if got := g.Learned()["default"]; len(got) != 0 {
		t.Fatalf("restored %v from a bad file", got)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the bad file is still in place: %v", err)
	}
	aside, _ := filepath.Glob(file + ".bad-*")
	if len(aside) != 1 {
		t.Fatalf("set aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != string(bad) {
		t.Fatalf("set-aside copy %q, want the original bytes", b)
	}
}

// Whatever LoadLearned accepts, SaveLearned writes back so that LoadLearned reads the same.
func FuzzLoadLearned(f *testing.F) {
	f.Add(`{"version": 1, "routes": {"default": ["header:X-Request-Id", "json:/ts"], "/api/": ["json:"]}}`)
	f.Add(`{"version": 1, "routes": {}}`)
	f.Add(`{"version": 1, "routes": {"default": ["header:x"]}}`)
	f.Add(`{"version": 1}`)
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "in.json")
		os.WriteFile(p, []byte(text), 0o600)
		m, err := LoadLearned(p)
		if err != nil {
			return
		}
		q := filepath.Join(dir, "out.json")
		if err := SaveLearned(q, m); err != nil {
			t.Fatal(err)
		}
		back, err := LoadLearned(q)
		if err != nil {
			t.Fatalf("saved file unreadable: %v", err)
		}
		for route, fields := range m {
			want := slices.Clone(fields)
			slices.Sort(want)
			if len(want) > 0 && !slices.Equal(back[route], want) {
				t.Fatalf("route %q: %v after the round trip, want %v", route, back[route], want)
			}
		}
	})
}
