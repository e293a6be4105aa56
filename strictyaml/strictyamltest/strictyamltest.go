// Package strictyamltest runs the bad-input tests of the packages that report errors through
// strictyaml (config, game): each deliberately bad file in testdata states on its first line,
// "# want: TEXT", the error it must produce. Only tests may import it; it imports the
// standard library only.
package strictyamltest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EachBadFile runs check as a subtest, named after the file, for every file matching glob,
// with the file's path, its content and want, the text after "# want: " on its first line.
// It fails the test when no file matches or a file has no such line.
func EachBadFile(t *testing.T, glob string, check func(t *testing.T, path string, data []byte, want string)) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad files match %s: %v", glob, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(strings.TrimSpace(first), "# want: ")
			if !ok {
				t.Fatalf("%s: first line %q must be '# want: ...'", path, first)
			}
			check(t, path, data, want)
		})
	}
}
