package process

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManifestRoundTrip(t *testing.T) {
	src := t.TempDir()
	for p, s := range map[string]string{"a.txt": "alpha", "sub/b.bin": "\x00\x01", "sub/deeper/c": ""} {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digest, err := WriteManifest(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	got, err := copyVerified(src, dst)
	if err != nil || got != digest {
		t.Fatalf("copyVerified = %q, %v; want %q", got, err, digest)
	}
	b, err := os.ReadFile(filepath.Join(dst, "sub", "b.bin"))
	if err != nil || string(b) != "\x00\x01" {
		t.Fatalf("copy: %q %v", b, err)
	}
}

func TestParseManifest(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	cases := []struct {
		name, in string
		n        int
		err      string
	}{
		{"sha256sum text", sum + "  site/a\n", 1, ""},
		{"binary marker and dot slash", sum + " *./site/a\n# comment\n\n", 1, ""},
		{"crlf", sum + "  a\r\n" + sum + "  b\r\n", 2, ""},
		{"short hash", "abcd  a\n", 0, "want"},
		{"not hex", strings.Repeat("zz", 32) + "  a\n", 0, "invalid byte"},
		{"absolute", sum + "  /etc/passwd\n", 0, "clean and relative"},
		{"dotdot", sum + "  a/../../x\n", 0, "clean and relative"},
		{"lists itself", sum + "  MANIFEST.sha256\n", 0, "clean and relative"},
		{"duplicate", sum + "  a\n" + sum + "  a\n", 0, "twice"},
		{"empty", "", 0, "no files"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			es, err := parseManifest([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || len(es) != c.n {
				t.Fatalf("got %v, %v", es, err)
			}
		})
	}
}

func TestCapWriterBounds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out")
	w, err := newCapWriter(p, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"12345", "67890abc", "def"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	w.Close()
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), "1234567890\n[proteus: 6 bytes of output dropped") {
		t.Fatalf("file %q", b)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(strings.Repeat("0", 64) + "  site/index.html\n"))
	f.Add([]byte("#\n" + strings.Repeat("f", 64) + " *./a/b\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := parseManifest(data)
		if err != nil {
			return
		}
		for _, e := range es {
			if strings.HasPrefix(e.path, "/") || strings.HasPrefix(e.path, "../") || e.path == ".." || strings.Contains(e.path, "/../") {
				t.Fatalf("accepted path %q", e.path)
			}
		}
	})
}
