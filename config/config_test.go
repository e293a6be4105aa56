package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/strictyaml"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if c.Version != CurrentVersion || c.API.Listen != "127.0.0.1:9090" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

// Each file in testdata/bad holds a first-line comment "# want: SUBSTRING" that the error
// must contain (file:line:col: field: message).
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: ...'", f)
			}
			_, err = Parse(f, data)
			if err == nil {
				t.Fatalf("accepted a bad config")
			}
			if !errors.Is(err, strictyaml.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		})
	}
}

func TestValidateWithoutDocument(t *testing.T) {
	c := Default()
	c.API.Listen = "localhost"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "api.listen") {
		t.Fatalf("want api.listen problem, got %v", err)
	}
}
