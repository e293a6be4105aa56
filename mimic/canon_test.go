package mimic

import (
	"bytes"
	"encoding/json"
	"flag"
	"hash/maphash"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Each testdata/canon/NAME.json is canonicalized (ignoring /ts and /1) and compared with
// NAME.golden.
func TestCanonicalJSONGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/canon/*.json")
	if len(files) == 0 {
		t.Fatal("no inputs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := canonicalJSON(nil, in, map[string]bool{"/ts": true, "/1": true})
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				os.WriteFile(golden, got, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestCanonicalJSONEquivalence(t *testing.T) {
	tests := []struct {
		a, b  string
		equal bool
	}{
		{`{"a":1,"b":2}`, `{ "b": 2, "a": 1 }`, true},
		{`[1.0, 2]`, `[1, 2]`, true}, // same number, whatever its spelling
		{`[1.0]`, `[1.00]`, true},
		{`[1e2]`, `[100.0]`, true},
		{`"\u0041"`, `"A"`, true},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, false},
		{`{"a":null}`, `{}`, false},
		{`{"a":"x"}`, `{"a":"x"} `, true},
	}
	for _, tc := range tests {
		ca, err1 := canonicalJSON(nil, []byte(tc.a), nil)
		cb, err2 := canonicalJSON(nil, []byte(tc.b), nil)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s / %s: %v %v", tc.a, tc.b, err1, err2)
		}
		if bytes.Equal(ca, cb) != tc.equal {
			t.Errorf("%s vs %s: canonical %s / %s, want equal=%v", tc.a, tc.b, ca, cb, tc.equal)
		}
	}
	for _, bad := range []string{``, `{`, `{"a":1} {"b":2}`, `nul`, `[1,]`} {
		if _, err := canonicalJSON(nil, []byte(bad), nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestFoldHTML(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>a  b</p>", "<p>a b</p>"},
		{"  <html>\n  <body>\n\t<p>x</p>\n</body>\n</html>\n", "<html><body><p>x</p></body></html>"},
		{"<b>a</b> <i>b</i>", "<b>a</b><i>b</i>"},
		{"text\r\n\r\nmore", "text more"},
		{"", ""},
		{"   ", ""},
	}
	for _, tc := range tests {
		if got := string(foldHTML(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("foldHTML(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"text/html; charset=utf-8": "text/html",
		"Text/HTML":                "text/html",
		" application/json ":       "application/json",
		"":                         "",
	} {
		if got := mediaType(in); got != want {
			t.Errorf("mediaType(%q) = %q, want %q", in, got, want)
		}
	}
}

// Canonicalization is idempotent and preserves the JSON value.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1.5e3,"x",null,true,{"b":[]}]`, `"\u00e9\n"`, `-0.0`, `{"a/b":{"~":1}}`} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("testdata/canon/*.json")
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c1, err := canonicalJSON(nil, in, nil)
		if err != nil {
			return
		}
		c2, err := canonicalJSON(nil, c1, nil)
		if err != nil {
			t.Fatalf("canonical output %q does not parse: %v", c1, err)
		}
		if !bytes.Equal(c1, c2) {
			t.Fatalf("not idempotent: %q -> %q", c1, c2)
		}
		if !json.Valid(c1) {
			t.Fatalf("invalid JSON %q", c1)
		}
		// Ignoring a member removes exactly what flattening reports under it.
		v, _ := parseJSON(in)
		flat := map[string]string{}
		flattenJSON(v, "", flat)
		for p := range flat {
			if p == "" {
				continue
			}
			c3, err := canonicalJSON(nil, in, map[string]bool{p: true})
			if err != nil || bytes.Contains(c3, []byte("\x00")) {
				t.Fatalf("ignore %q: %v", p, err)
			}
			break
		}
	})
}

// Folding is idempotent and never grows the input.
func FuzzFoldHTML(f *testing.F) {
	f.Add([]byte("<p> a \n b </p>  <i>x</i>"))
	f.Add(sitePage)
	f.Fuzz(func(t *testing.T, in []byte) {
		a := foldHTML(nil, in)
		if len(a) > len(in) {
			t.Fatalf("grew: %d > %d", len(a), len(in))
		}
		if b := foldHTML(nil, a); !bytes.Equal(a, b) {
			t.Fatalf("not idempotent: %q -> %q", a, b)
		}
	})
}

// The framing scanner's verdict does not depend on how the bytes are split into reads.
func FuzzFramingScan(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), uint8(3))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nContent-length: 1\r\n\r\nx"), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := &framingConn{}
		whole.scan(in)
		parts := &framingConn{}
		s := int(step%16) + 1
		for i := 0; i < len(in); i += s {
			parts.scan(in[i:min(len(in), i+s)])
		}
		if whole.ambiguous.Load() != parts.ambiguous.Load() {
			t.Fatalf("split by %d changes the verdict on %q", s, in)
		}
		lower := bytes.ToLower(in)
		if whole.ambiguous.Load() && (!bytes.Contains(lower, []byte("content-length:")) || !bytes.Contains(lower, []byte("transfer-encoding:"))) {
			t.Fatalf("ambiguous without both names: %q", in)
		}
	})
}

func TestFramingScan(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nX-Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nContent-Type: a\r\nContent-Transfer-Encoding: b\r\nContent-Length: 1\r\n\r\n", false},
	}
	for _, tc := range tests {
		c := &framingConn{}
		c.scan([]byte(tc.in))
		if c.ambiguous.Load() != tc.want {
			t.Errorf("%q: ambiguous=%v, want %v", tc.in, c.ambiguous.Load(), tc.want)
		}
	}
}

// The header hash ignores order and volatile headers, and sees every other change.
func FuzzHeaderSum(f *testing.F) {
	f.Add("X-A", "1", "X-B", "2", "Sat, 21 Nov 2026 20:00:00 GMT")
	f.Add("Content-Type", "text/html; charset=utf-8", "Set-Cookie", "a=b", "x")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, date string) {
		k1, k2 = http.CanonicalHeaderKey(k1), http.CanonicalHeaderKey(k2)
		if k1 == k2 {
			return
		}
		seed := maphash.MakeSeed()
		noise := newNoiseSet(nil, nil)
		a := http.Header{k1: {v1}, k2: {v2}, "Date": {date}}
		b := http.Header{k2: {v2}, k1: {v1}, "Date": {"other " + date}}
		if headerSum(seed, a, noise) != headerSum(seed, b, noise) {
			t.Fatalf("order or Date changed the sum: %v %v", a, b)
		}
		c := http.Header{k1: {v1}, k2: {v2 + "x"}}
		if !noise.ignoresHeader(k2) && !(k2 == "Content-Type" && mediaType(v2) == mediaType(v2+"x")) &&
			headerSum(seed, a, noise) == headerSum(seed, c, noise) {
			t.Fatalf("a changed value of %s went unnoticed", k2)
		}
	})
}

// The volatile and hop-by-hop headers, as docs/operations.md and RFC 9110 list them.
func TestHeaderClassSwitches(t *testing.T) {
	for _, k := range []string{"Date", "Server", "Etag", "Last-Modified", "Content-Length", "Transfer-Encoding",
		"Connection", "Keep-Alive", "Accept-Ranges", "Proxy-Connection", "Proxy-Authenticate",
		"Te", "Trailer", "Upgrade", "Age", "Via", "X-Powered-By", "Expires"} {
		if !isVolatile(k) || !newNoiseSet(nil, nil).ignoresHeader(k) {
			t.Errorf("%q is not volatile", k)
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		if !isHopByHop(k) {
			t.Errorf("isHopByHop(%q) = false", k)
		}
	}
	for _, k := range []string{"Content-Type", "X-A", "date", "Cache-Control", ""} {
		if isVolatile(k) || isHopByHop(k) {
			t.Errorf("%q classed as volatile or hop-by-hop", k)
		}
	}
}
