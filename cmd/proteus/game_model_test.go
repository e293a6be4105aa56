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
		{[]string{"game", "montecarlo", paperYAML, "--runs", "1"}, 2},
		{[]string{"game", "montecarlo", bad}, 2},
		{[]string{"game", "montecarlo", paperYAML, "--runs", "3", "--reading", "scoring=mine"}, 2},
		{[]string{"game", "montecarlo", paperYAML, "--runs", "3", "--reading", "colour=red"}, 2},
		{[]string{"game", "montecarlo", paperYAML, "--runs", "3", "--reading", "discount=none,none"}, 2},
		{[]string{"game", "montecarlo", paperYAML, "--runs", "3", "--out", filepath.Join(dir, "a.gif")}, 2},
		{[]string{"game", "solve", paperYAML, "--reading", "scoring=own"}, 2},
		{[]string{"game", "solve", paperYAML, "--reading", "signal-cost=free"}, 2},
		{[]string{"game", "readings", paperYAML, "--runs", "1"}, 2},
		{[]string{"game", "readings", bad}, 2},
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
	get := func(seed string, extra ...string) []byte {
		var out, errb bytes.Buffer
		args := append([]string{"game", "montecarlo", paperYAML, "--runs", "6", "--seed", seed, "-o", "json"}, extra...)
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.Bytes()
	}
	a, b, c := get("5", "--out", filepath.Join(dir, "mc.svg")), get("5"), get("6")
	if st, err := os.Stat(filepath.Join(dir, "mc.svg")); err != nil || st.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Error("same seed, different output")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds, same output")
	}
	var doc struct {
		Runs   int              `json:"runs"`
		Stages []string         `json:"stages"`
		Cells  []map[string]any `json:"cells"`
	}
	if err := json.Unmarshal(a, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Runs != 6 || len(doc.Stages) != 5 || len(doc.Cells) != 1 {
		t.Fatalf("runs %d, stages %v, %d cells", doc.Runs, doc.Stages, len(doc.Cells))
	}
	for _, k := range []string{"reading", "evaluation", "name", "mttegdm", "traditional", "unsignalled", "cumulative_mttegdm",
		"cumulative_traditional", "stage_mttegdm", "stage_traditional", "cumulative_stage_mttegdm", "cumulative_stage_traditional",
		"mean_mttegdm", "mean_traditional", "mean_unsignalled", "mean_signal_cost", "difference", "mttegdm_wins", "ties",
		"mttegdm_losses", "mttegdm_decisions", "traditional_defenses"} {
		if _, ok := doc.Cells[0][k]; !ok {
			t.Errorf("cell JSON lacks %q", k)
		}
	}
	d, _ := doc.Cells[0]["difference"].(map[string]any)
	for _, k := range []string{"mean", "low", "high", "sd"} {
		if _, ok := d[k]; !ok {
			t.Errorf("difference lacks %q", k)
		}
	}
}

// --reading crosses the axes named; the table has one row per cell and the plot is written.
func TestGameMonteCarloReadings(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	args := []string{"game", "montecarlo", paperYAML, "--runs", "4", "--reading", "signal-cost=printed,swapped", "--reading", "scoring=all",
		"--out", filepath.Join(dir, "cells.svg")}
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rows int
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "printed ") || strings.HasPrefix(l, "swapped ") {
			rows++
		}
	}
	if rows != 4 {
		t.Errorf("want 4 cells, got %d rows:\n%s", rows, out.String())
	}
	if st, err := os.Stat(filepath.Join(dir, "cells.svg")); err != nil || st.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}
}

// Table 11's five signals (all m_L) under the swapped signal costs, through the CLI.
func TestGameSolveSwappedReading(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"game", "solve", paperYAML, "--reading", "signal-cost=swapped", "-o", "json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc struct {
		Reading map[string]string `json:"reading"`
		Stages  []struct {
			Signal string `json:"signal"`
			Paper  struct {
				Signal string `json:"signal"`
			} `json:"paper"`
		} `json:"stages"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Reading["signal_cost"] != "swapped" || doc.Reading["deception_cost"] != "defense-cost" {
		t.Errorf("reading %v", doc.Reading)
	}
	if len(doc.Stages) != 5 {
		t.Fatalf("%d stages", len(doc.Stages))
	}
	for i, s := range doc.Stages {
		if s.Signal != "mL" || s.Paper.Signal != "mL" {
			t.Errorf("stage %d: signal %s, paper %s", i+1, s.Signal, s.Paper.Signal)
		}
	}
}

// The readings table in docs/model.md is the output of the command it names, byte for byte.
func TestReadingsTableInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/model.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- readings:begin -->\n", "<!-- readings:end -->"
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("docs/model.md lacks the %q … %q block", begin, end)
	}
	t.Chdir("../..") // the command as the docs give it, from the repository root
	var out, errb bytes.Buffer
	if code := run([]string{"game", "readings", "examples/mttegdm-paper.yaml", "--runs", "50", "--seed", "1"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if got := doc[i+len(begin) : j]; !bytes.Equal(got, out.Bytes()) {
		t.Errorf("docs/model.md's readings table is stale; regenerate it with\n  go run ./cmd/proteus game readings examples/mttegdm-paper.yaml --runs 50 --seed 1\nand paste it between the markers. Command output:\n%s", out.String())
	}
}
