// Package render renders a spec's command and file templates (text/template, missing keys
// are errors) with a driver's own template data, and writes the rendered files of an
// executor into a directory with their hashes, for the process and docker drivers alike.
// It imports only the standard library.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
)

// One renders the template text (named name in errors) with data.
func One(name, text string, data any) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return b.String(), nil
}

// Argv renders every element of argv (command[i] in errors).
func Argv(argv []string, data any) ([]string, error) {
	out := make([]string, len(argv))
	for i, a := range argv {
		s, err := One(fmt.Sprintf("command[%d]", i), a, data)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Check renders argv and files with data (the zero value of a driver's template data will
// do), so a template that does not parse or names a field the driver does not have is
// refused before anything starts.
func Check(argv []string, files map[string]string, data any) error {
	if _, err := Argv(argv, data); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if _, err := One("files["+name+"]", files[name], data); err != nil {
			return err
		}
	}
	return nil
}

// Files renders files (relative slash path -> template) into dir and returns each file's
// lowercase hex SHA-256, so the file-integrity sensor can check them. An existing file is
// never overwritten (for the process driver, dir holds the verified image). Directories are
// created with dirMode, files with fileMode.
func Files(files map[string]string, dir string, data any, dirMode, fileMode fs.FileMode) (map[string]string, error) {
	if len(files) == 0 {
		return nil, nil
	}
	sums := make(map[string]string, len(files))
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body, err := One("files["+name+"]", files[name], data)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := mkdirAll(dir, filepath.Dir(p), dirMode); err != nil {
			return nil, fmt.Errorf("files[%s]: %w", name, err)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("files[%s]: the image has a file of that name", name)
		}
		if err != nil {
			return nil, fmt.Errorf("files[%s]: %w", name, err)
		}
		_, err = f.WriteString(body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(p, fileMode) // not narrowed by the umask
		}
		if err != nil {
			return nil, fmt.Errorf("files[%s]: %w", name, err)
		}
		sum := sha256.Sum256([]byte(body))
		sums[name] = hex.EncodeToString(sum[:])
	}
	return sums, nil
}

// mkdirAll creates sub (below root, which exists) and its parents below root with mode,
// not narrowed by the umask.
func mkdirAll(root, sub string, mode fs.FileMode) error {
	if sub == root {
		return nil
	}
	if fi, err := os.Stat(sub); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", sub)
		}
		return nil
	}
	if err := mkdirAll(root, filepath.Dir(sub), mode); err != nil {
		return err
	}
	if err := os.Mkdir(sub, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(sub, mode)
}
