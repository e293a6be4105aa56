package mimic

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"/", "/", nil},
		{"/a/b.html", "/a/b.html", nil},
		{"/downloads/../secret.txt", "/secret.txt", nil},
		{"/downloads/%2e%2e/secret.txt", "/secret.txt", nil},
		{"/downloads/.%2E/secret.txt", "/secret.txt", nil},
		{"/a/./b/", "/a/b/", nil},
		{"/a/b/..", "/a/", nil},
		{"/a/b/.", "/a/b/", nil},
		{"/../../etc/passwd", "/etc/passwd", nil},
		{"//a///b", "/a/b", nil},
		{"/a//../b", "/b", nil},
		{"/%7Euser/%41", "/~user/A", nil},
		{"/a%20b", "/a%20b", nil},
		{"/a%3fb", "/a%3Fb", nil},
		{"/a b", "/a%20b", nil},
		{"/caf\xc3\xa9", "/caf%C3%A9", nil},
		{"/...", "/...", nil},
		{"/..a/.b", "/..a/.b", nil},
		{"/a%2Fb", "", errPathSlash},
		{"/a%2f..%2fsecret", "", errPathSlash},
		{"/a%5Cb", "", errPathSlash},
		{"/a\\b", "", errPathByte},
		{"/a%00b", "", errPathNUL},
		{"/a%0", "", errPathEncoding},
		{"/a%zz", "", errPathEncoding},
		{"/a\x01", "", errPathByte},
		{"a/b", "", errPathRelative},
		{"", "", errPathRelative},
	}
	for _, tc := range tests {
		got, err := canonicalPath(tc.in)
		if err != tc.err || got != tc.want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if testing.AllocsPerRun(100, func() { canonicalPath("/static/css/site.css") }) != 0 {
		t.Error("a path already canonical allocates")
	}
}

// Whatever canonicalPath accepts comes out canonical (a second pass changes nothing), and it
// names the file path.Clean would: no executor can resolve it elsewhere.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/x", "//a//b/", "/a/%2E/b/..", "/~u/%41%42", "/a b/%c3%a9", "/a%2fb", "/a\\b", "/./.././"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := canonicalPath(p)
		if err != nil {
			return
		}
		if again, err := canonicalPath(got); err != nil || again != got {
			t.Fatalf("%q -> %q -> %q, %v: not a fixed point", p, got, again, err)
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") || strings.Contains(got+"/", "/./") || strings.Contains(got+"/", "/../") {
			t.Fatalf("%q -> %q: not canonical", p, got)
		}
		dec, err := url.PathUnescape(got)
		if err != nil {
			t.Fatalf("%q -> %q: %v", p, got, err)
		}
		in, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("%q accepted but not unescapable: %v", p, err)
		}
		if want := path.Clean(in); strings.TrimSuffix(dec, "/") != strings.TrimSuffix(want, "/") && !(dec == "/" && want == "/") {
			t.Fatalf("%q -> %q (%q), path.Clean says %q", p, got, dec, want)
		}
	})
}
