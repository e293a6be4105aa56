// Command configref writes the configuration reference, docs/config-reference.md, from the
// config package: each field's YAML name and type from the structs, its default from
// config.ReferenceDefaults (the package's own defaults code), its documentation from the
// struct's comments, and the limits its validate methods state (the messages of their
// Addf calls, constants evaluated). Run it from the repository (go run ./tools/configref);
// its test fails when the checked-in file is not what it writes.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("o", "docs/config-reference.md", "file to write (- for stdout)")
	check := flag.Bool("check", false, "do not write: exit 1 when the file differs from what would be written")
	flag.Parse()
	root, err := moduleRoot()
	if err != nil {
		fail(err)
	}
	doc, err := Generate(filepath.Join(root, "config"))
	if err != nil {
		fail(err)
	}
	if *out == "-" {
		os.Stdout.Write(doc)
		return
	}
	path := *out
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	if *check {
		have, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(have, doc) {
			fail(fmt.Errorf("%s is stale: run go run ./tools/configref", path))
		}
		return
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "configref:", err)
	os.Exit(1)
}

// moduleRoot is the directory above the working directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = up
	}
}
