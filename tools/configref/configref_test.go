package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The checked-in docs/config-reference.md is what the generator writes from the config
// package now: a field added, renamed, documented or defaulted differently without
// regenerating it fails here (make test).
func TestReferenceIsCurrent(t *testing.T) {
	want, err := Generate(filepath.Join("..", "..", "config"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile(filepath.Join("..", "..", "docs", "config-reference.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("docs/config-reference.md is stale: run `go run ./tools/configref` (or make config-reference) and commit it")
	}
}

// The reference names fields as YAML does, with the defaults the config package fills, the
// doc comments and the limits validation states (constants evaluated).
func TestReferenceContent(t *testing.T) {
	doc, err := Generate(filepath.Join("..", "..", "config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| `api.listen` | string | `\"127.0.0.1:9090\"` |",
		"| `sensors.eve.max_line` | integer | `65536` | MaxLine bounds one EVE line in bytes",
		"must be in [1024, 16777216] bytes",
		"## `sensors.eve` (optional)",
		"| `pool.grace` | duration | `5s` |",
		"## `engine.strategies.NAME[]`",
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("reference lacks %q", want)
		}
	}
	for i, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| `") && strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") != 6 {
			t.Errorf("line %d is not a 5-column row: %s", i+1, line)
		}
	}
}
