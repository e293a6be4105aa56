package mimic

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The access log says per request how the vote went; single routes' requests are counted per
// executor.
func TestAccessLogAndSingleCounts(t *testing.T) {
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 2 {
			fmt.Fprint(w, "tampered\n")
			return
		}
		fmt.Fprint(w, "hello\n")
	})
	file := filepath.Join(t.TempDir(), "access.log")
	g, err := New(Options{Backends: bes, AccessLogFile: file, Scheduler: "round-robin",
		Routes: []Route{{Prefix: "/s/", Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	c := &http.Client{}
	if code, body := get(t, c, url+"/page?x=1"); code != 200 || body != "hello\n" {
		t.Fatalf("voted: %d %q", code, body)
	}
	for range 3 {
		get(t, c, url+"/s/file")
	}
	g.Wait()
	st := g.Status()
	var singles uint64
	for _, b := range st.Backends {
		singles += b.Single
		if b.Single != 1 {
			t.Errorf("%s: %d single requests, want 1 (round-robin)", b.ID, b.Single)
		}
	}
	g.Close()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4: %v", len(lines), lines)
	}
	// Lines are written as requests finish, which need not be the order they were sent in.
	var v map[string]any
	singleLines := 0
	for _, l := range lines {
		if l["policy"] == "vote" {
			v = l
			continue
		}
		singleLines++
		if l["policy"] != "single" || len(l["agreed"].([]any)) != 1 {
			t.Errorf("single line %v", l)
		}
	}
	if v == nil || singleLines != 3 {
		t.Fatalf("want one voted line and three single ones: %v", lines)
	}
	if v["method"] != "GET" || v["path"] != "/page" || v["policy"] != "vote" || v["status"] != float64(200) || v["client"] != "127.0.0.1" {
		t.Errorf("voted line %v", v)
	}
	agreed, _ := v["agreed"].([]any)
	dissent, _ := v["dissent"].([]any)
	if len(agreed) != 2 || len(dissent) != 1 {
		t.Fatalf("voted line: agreed %v dissent %v", agreed, dissent)
	}
	if d := dissent[0].(map[string]any); d["executor"] != "b3" || d["differs"] != "body" || d["kind"] != DissentContent {
		t.Errorf("dissent %v", d)
	}
}

// Learned noise is listed in the status and can be reset; the reset is saved.
func TestLearnedNoiseIsListedAndReset(t *testing.T) {
	bes := randomHeaderBackends(t)
	file := filepath.Join(t.TempDir(), "learned-noise.json")
	g, err := New(Options{Backends: bes, Learn: true, LearnMinSamples: 3, LearnedFile: file})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{}) + "/"
	c := &http.Client{}
	for i := 0; len(g.Status().Learned["default"]) == 0; i++ {
		get(t, c, url+strconv.Itoa(i))
		g.Wait()
		if i > 20 {
			t.Fatalf("never learned: %v", g.Learned())
		}
	}
	g.ResetLearned()
	if l := g.Status().Learned["default"]; len(l) != 0 {
		t.Fatalf("after reset: %v", l)
	}
	if code, _ := get(t, c, url+"again"); code != http.StatusBadGateway {
		t.Errorf("after reset the noise still passes: %d", code)
	}
	g.Close()
	if saved, err := LoadLearned(file); err != nil || len(saved["default"]) != 0 {
		t.Errorf("saved after reset: %v %v", saved, err)
	}
}
