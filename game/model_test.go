package game

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/strictyaml"
	"github.com/proteus-defense/proteus/strictyaml/strictyamltest"
)

const paperModel = "../examples/mttegdm-paper.yaml"

func loadPaper(tb testing.TB) *Model {
	tb.Helper()
	data, err := os.ReadFile(paperModel)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := ParseModel(paperModel, data)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestParsePaperModel(t *testing.T) {
	m := loadPaper(t)
	if len(m.Stages) != 5 || len(m.Attacks) != 8 || len(m.Defenses) != 9 || len(m.Types) != 2 {
		t.Fatalf("unexpected model sizes: %d stages, %d attacks, %d defenses, %d types",
			len(m.Stages), len(m.Attacks), len(m.Defenses), len(m.Types))
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example states the engine's reading and the documented evaluation explicitly.
	if m.Reading != EngineReading || m.MonteCarlo.Evaluation() != DefaultEvaluation {
		t.Errorf("paper model: reading %v, evaluation %v", m.Reading, m.MonteCarlo.Evaluation())
	}
}

// Each file in testdata/bad starts with "# want: SUBSTRING" that the error must contain.
func TestBadModels(t *testing.T) {
	strictyamltest.EachBadFile(t, "testdata/bad/*.yaml", func(t *testing.T, f string, data []byte, want string) {
		_, err := ParseModel(f, data)
		if err == nil {
			t.Fatal("accepted a bad model")
		}
		if !errors.Is(err, strictyaml.ErrInvalid) {
			t.Errorf("error does not wrap strictyaml.ErrInvalid: %v", err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
		if !strings.HasPrefix(err.Error(), f+":") {
			t.Errorf("error %q does not start with the file name", err)
		}
	})
}

func TestBadModelErrorsHaveLines(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/probability.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseModel("p.yaml", data)
	var es strictyaml.Errors
	if !errors.As(err, &es) || len(es) == 0 || es[0].Line == 0 {
		t.Fatalf("want a located error, got %v", err)
	}
}

// FuzzParseModel mutates the paper model and the bad models. The seeds are 5–10 kB, so the
// fuzzer's default minimisation of each new interesting input (up to 60 s) dominates short runs;
// pass -fuzzminimizetime 2s for a quick pass, e.g.
//
//	go test -run '^$' -fuzz '^FuzzParseModel$' -fuzztime 30s -fuzzminimizetime 2s ./game/
func FuzzParseModel(f *testing.F) {
	paper, err := os.ReadFile(paperModel)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(paper)
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, b := range bad {
		if data, err := os.ReadFile(b); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("version: 1\nstages: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModel("f.yaml", data)
		if err != nil {
			if !errors.Is(err, strictyaml.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// A model the loader accepts must compile without panicking.
		if _, err := compile(m); err != nil {
			t.Fatalf("accepted model does not compile: %v", err)
		}
	})
}
