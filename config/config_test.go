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

// One run reports every problem: unknown fields do not hide the invalid values after them.
func TestParseReportsEveryProblem(t *testing.T) {
	src := "version: 1\nlog:\n  level: loud\n  colour: red\napi:\n  listen: nowhere\n  bogus: 1\npool:\n  desired: abc\n  extra: x\n"
	_, err := Parse("a.yaml", []byte(src))
	if !errors.Is(err, strictyaml.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	for _, want := range []string{
		"a.yaml:3:10: log.level: must be debug",
		"a.yaml:4:3: log.colour: unknown field",
		"a.yaml:6:11: api.listen: must be host:port",
		"a.yaml:7:3: api.bogus: unknown field",
		"a.yaml:9:12: pool.desired: cannot unmarshal",
		"a.yaml:10:3: pool.extra: unknown field",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nlacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "pool.desired: must be") {
		t.Errorf("a validation problem about the value that did not decode:\n%s", err)
	}
}
