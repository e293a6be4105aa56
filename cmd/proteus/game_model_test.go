package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const paperYAML = "../../examples/mttegdm-paper.yaml"

func TestGameSolveJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"game", "solve", paperYAML, "-o", "json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc struct {
		Stages []map[string]any `json:"stages"`
		Notes  []string         `json:"notes"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Stages) != 5 {
		t.Fatalf("want 5 stages, got %d", len(doc.Stages))
	}
	for _, k := range []string{"stage", "alpha", "beta", "defender_type", "signal", "defense", "attack", "attack_gain", "defense_gain", "equilibrium"} {
		if _, ok := doc.Stages[0][k]; !ok {
			t.Errorf("stage JSON lacks %q", k)
		}
	}
	switch doc.Stages[0]["equilibrium"] {
	case "separating", "pooling", "none":
	default:
		t.Errorf("bad equilibrium %v", doc.Stages[0]["equilibrium"])
	}
	if !strings.Contains(strings.Join(doc.Notes, "\n"), "d12") {
		t.Errorf("notes do not explain d12: %v", doc.Notes)
	}
}

func TestGameSolveTable(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"game", "solve", paperYAML}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"(d12)", "Table 7 does not define", "S5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestGameModelExitCodes(t *testing.T) {
	bad := filepath.Join("..", "..", "game", "testdata", "bad", "probability.yaml")
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"game", "solve", bad}, 2},
		{[]string{"game", "solve", paperYAML, "-o", "xml"}, 2},
		{[]string{"game", "solve", filepath.Join(dir, "missing.yaml")}, 1},
		{[]string{"game", "plot", paperYAML, "--stage", "9", "--out", filepath.Join(dir, "a.png")}, 2},
		{[]string{"game", "plot", paperYAML, "--stage", "1", "--out", filepath.Join(dir, "a.gif")}, 2},
		{[]string{"game", "montecarlo", paperYAML, "--runs", "0"}, 2},
		{[]string{"game", "montecarlo", bad}, 2},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, errb.String())
		}
	}
}

func TestGamePlotWritesImages(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"s1.png", "s1.svg"} {
		path := filepath.Join(dir, name)
		var out, errb bytes.Buffer
		if code := run([]string{"game", "plot", paperYAML, "--stage", "1", "--out", path}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		st, err := os.Stat(path)
		if err != nil || st.Size() < 1000 {
			t.Fatalf("%s: %v, %v bytes", name, err, st)
		}
	}
}

func TestGameMonteCarloDeterministic(t *testing.T) {
	dir := t.TempDir()
	get := func(seed string) []byte {
		var out, errb bytes.Buffer
		args := []string{"game", "montecarlo", paperYAML, "--runs", "10", "--seed", seed, "-o", "json", "--out", filepath.Join(dir, "mc.png")}
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.Bytes()
	}
	a, b, c := get("5"), get("5"), get("6")
	if !bytes.Equal(a, b) {
		t.Error("same seed, different output")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds, same output")
	}
	var doc map[string]any
	if err := json.Unmarshal(a, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mttegdm", "traditional", "mean_mttegdm", "mean_traditional", "mttegdm_wins",
		"mean_signal_cost", "mean_unsignalled", "mean_traditional_table_beta", "mttegdm_wins_table_beta",
		"traditional_defenses", "traditional_table_beta_defenses", "mttegdm_decisions"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
}
