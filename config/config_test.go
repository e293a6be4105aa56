package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/strictyaml"
	"github.com/proteus-defense/proteus/strictyaml/strictyamltest"
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
	strictyamltest.EachBadFile(t, "testdata/bad/*.yaml", func(t *testing.T, f string, data []byte, want string) {
		_, err := Parse(f, data)
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

func TestValidateWithoutDocument(t *testing.T) {
	c := Default()
	c.API.Listen = "localhost"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "api.listen") {
		t.Fatalf("want api.listen problem, got %v", err)
	}
}
