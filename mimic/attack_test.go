package mimic

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The gateway's promise, tested as an attacker would: real nginx and lighttpd beside a Go
// executor made to misbehave (a compromised one), and the compromised executor's answer never
// reaches the client, on any status, method, route or header.

// clientSees sends n requests and returns every answer's status line, header and body as
// one text, for searching what the attacker put in.
func clientSees(t *testing.T, url, method, path string, n int) (codes map[int]int, seen string) {
	t.Helper()
	codes = map[int]int{}
	var all strings.Builder
	for range n {
		req, _ := http.NewRequest(method, url, nil)
		req.URL.Opaque = path
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		resp.Header.Write(&all)
		all.Write(body)
		all.WriteString("\n")
	}
	return codes, all.String()
}

// A compromised executor's error page, with a script, a cookie and a redirect, never reaches
// a client: the status is voted, the page is the gateway's.
func TestCompromisedErrorPageNeverReachesClient(t *testing.T) {
	h := newHeteroWrapped(t, Options{K: 3}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/missing" {
				w.Header().Set("Set-Cookie", "session=attacker; Path=/")
				w.Header().Set("Location", "http://evil.example/")
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, "<script src=//evil.example/x.js></script>")
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	codes, seen := clientSees(t, h.url, http.MethodGet, "/missing", 30)
	if codes[404] != 30 {
		t.Fatalf("statuses %v, want 30 × 404", codes)
	}
	for _, bad := range []string{"evil.example", "attacker", "<script"} {
		if strings.Contains(seen, bad) {
			t.Fatalf("the compromised executor's %q reached a client:\n%s", bad, seen)
		}
	}
	// The honest servers' own 404 pages (nginx's HTML, lighttpd's, net/http's text) are no
	// dissent either: what the client gets is one page whoever answered.
	if !strings.Contains(seen, "404 Not Found") {
		t.Errorf("no gateway page: %s", seen)
	}
}

// A method no route names never reaches an executor: a static server would answer FOO or
// POST with the file, and only the compromised one has it.
func TestUnroutedMethodsNeverReachExecutors(t *testing.T) {
	h := newHetero(t, Options{K: 3})
	secret := "root:x:0:0:only-on-nginx\n"
	if err := os.WriteFile(filepath.Join(h.sites["nginx-1"], "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"FOO", "POST", "PUT", "DELETE", "PATCH", "PROPFIND"} {
		codes, seen := clientSees(t, h.url, m, "/secret.txt", 6)
		if strings.Contains(seen, "only-on-nginx") {
			t.Fatalf("%s /secret.txt: the leaked file reached a client (%v)", m, codes)
		}
		if codes[405]+codes[501] != 6 {
			t.Errorf("%s: statuses %v, want 405 or 501", m, codes)
		}
	}
	for _, e := range h.drain() {
		t.Errorf("an executor was asked: %s %v", e.Kind, e.Attrs)
	}
}

// A route prefix matches the canonical path, and executors get the canonical path: a dot
// segment cannot carry a request from a single route to a file only one executor has.
func TestDotSegmentsDoNotEscapeASingleRoute(t *testing.T) {
	h := newHetero(t, Options{K: 3, Routes: []Route{{Prefix: "/downloads/", Policy: PolicySingle}}})
	secret := "root:x:0:0:only-on-lighttpd\n"
	if err := os.WriteFile(filepath.Join(h.sites["lighttpd-1"], "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/downloads/../secret.txt", "/downloads/%2e%2e/secret.txt", "/downloads/.%2E/secret.txt", "/downloads//../../secret.txt"} {
		codes, seen := clientSees(t, h.url, http.MethodGet, p, 6)
		if strings.Contains(seen, "only-on-lighttpd") {
			t.Fatalf("GET %s: the leaked file reached a client (%v)", p, codes)
		}
	}
	if d, ok := dissentsOf(h.drain())["lighttpd-1"]; !ok || !d.Attrs["differs"].(diff).Status {
		t.Errorf("lighttpd not reported for the leak: %v", d)
	}
}

// Ordinary traffic cannot switch a comparison off: on two honest files a different executor
// is the odd one out in Content-Type (nginx and lighttpd know no type for .md, net/http has
// text/markdown; lighttpd's config has no .svg), and after twenty of them a changed
// Content-Type still does not pass.
func TestOrdinaryTrafficCannotPoisonNoiseLearning(t *testing.T) {
	var evil atomic.Bool
	h := newHeteroWrapped(t, Options{K: 3, Learn: true, LearnMinSamples: 5}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if evil.Load() && r.URL.Path == "/" {
				w = &headerWriter{ResponseWriter: w, set: http.Header{"Content-Type": {"text/html; charset=utf-7"}}}
			}
			next.ServeHTTP(w, r)
		})
	})
	for _, dir := range h.sites {
		os.WriteFile(filepath.Join(dir, "notes.md"), []byte("# notes\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "logo.svg"), []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`+"\n"), 0o644)
	}
	for i := range 20 {
		h.get(t, []string{"/notes.md", "/logo.svg"}[i%2])
	}
	h.drain()
	if l := h.gw.Learned()["default"]; len(l) != 0 {
		t.Fatalf("learned %v from ordinary traffic", l)
	}
	evil.Store(true)
	for range 10 {
		resp, err := http.Get(h.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q reached the client", ct)
		}
	}
	if d, ok := dissentsOf(h.drain())["go-1"]; !ok || !strings.Contains(fmt.Sprint(d.Attrs["differs"]), "Content-Type") {
		t.Errorf("changed Content-Type not a dissent: %v", d)
	}
}

// Headers left out of the vote are not forwarded: a compromised executor cannot carry data
// out in Server, ETag, Last-Modified, Expires, Age, Via, X-Powered-By, Content-Type
// parameters or HEAD's Content-Length.
func TestUnvotedHeadersNeverReachClient(t *testing.T) {
	h := newHeteroWrapped(t, Options{K: 3}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd.Set("Server", "exfil-server")
			hd.Set("X-Powered-By", "exfil-powered")
			hd.Set("Via", "1.1 exfil-via")
			hd.Set("Age", "31337")
			hd.Set("Expires", "exfil-expires")
			if r.URL.Path == "/style.css" {
				hd.Set("Content-Type", "text/css; charset=utf-8; exfil=param")
			}
			if r.Method == http.MethodHead {
				hd.Set("Content-Length", "31337")
				w.WriteHeader(200)
				return
			}
			next.ServeHTTP(&etagWriter{ResponseWriter: w}, r)
		})
	})
	var seen strings.Builder
	for _, p := range []string{"/", "/data.json", "/style.css"} {
		_, s := clientSees(t, h.url, http.MethodGet, p, 10)
		seen.WriteString(s)
		_, s = clientSees(t, h.url, http.MethodHead, p, 10)
		seen.WriteString(s)
	}
	if strings.Contains(seen.String(), "exfil") || strings.Contains(seen.String(), "31337") {
		t.Fatalf("unvoted header data reached a client:\n%s", seen.String())
	}
	resp, err := http.Head(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != int64(len(sitePage)) {
		t.Errorf("HEAD Content-Length %d, want the voted body's %d", resp.ContentLength, len(sitePage))
	}
}

// headerWriter overrides header fields with set when the handler writes its head.
type headerWriter struct {
	http.ResponseWriter
	set   http.Header
	wrote bool
}

func (w *headerWriter) WriteHeader(code int) {
	for k, vs := range w.set {
		w.Header()[k] = vs
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *headerWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(200)
	}
	return w.ResponseWriter.Write(p)
}

func (w *headerWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(200)
	}
	w.ResponseWriter.(http.Flusher).Flush()
}

// etagWriter sets a data-carrying ETag and Last-Modified on whatever the file server answers.
type etagWriter struct{ http.ResponseWriter }

func (w *etagWriter) WriteHeader(code int) {
	w.Header().Set("Etag", `"exfil-etag"`)
	w.Header().Set("Last-Modified", "exfil-modified")
	w.ResponseWriter.WriteHeader(code)
}

func (w *etagWriter) Write(p []byte) (int, error) {
	if w.Header().Get("Etag") != `"exfil-etag"` {
		w.WriteHeader(200)
	}
	return w.ResponseWriter.Write(p)
}

// A JSON body with a key twice is a dissent: encoding/json keeps the last, a browser's or
// another service's parser may keep the first, so the duplicate cannot hide in the vote.
func TestDuplicateJSONKeyIsDissent(t *testing.T) {
	h := newHeteroWrapped(t, Options{K: 3}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/data.json" {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"name":"<script>evil</script>",`+siteJSON[1:])
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	for range 10 {
		code, body := h.get(t, "/data.json")
		if code != 200 || string(body) != siteJSON {
			t.Fatalf("client got %d %q", code, body)
		}
	}
	if _, ok := dissentsOf(h.drain())["go-1"]; !ok {
		t.Error("a duplicate key passed the vote")
	}
}

// The honest servers still agree on their ordinary answers: pages, 404s, redirects to a
// directory (nginx and lighttpd put their own port in an absolute Location, net/http answers
// a relative one) and HEAD.
func TestHeterogeneousServersAgreeOnRedirectsErrorsAndHead(t *testing.T) {
	h := newHetero(t, Options{K: 3})
	for _, dir := range h.sites {
		os.MkdirAll(filepath.Join(dir, "docs"), 0o755)
		os.WriteFile(filepath.Join(dir, "docs", "index.html"), sitePage, 0o644)
	}
	for range 5 {
		codes, seen := clientSees(t, h.url, http.MethodGet, "/docs", 1)
		if codes[301] != 1 || !strings.Contains(seen, "Location: /docs/\r\n") {
			t.Fatalf("GET /docs: %v %s", codes, seen)
		}
		if code, body := h.get(t, "/docs/"); code != 200 || !bytes.Equal(body, sitePage) {
			t.Fatalf("GET /docs/: %d", code)
		}
		if code, _ := h.get(t, "/no/such/page"); code != 404 {
			t.Fatalf("GET /no/such/page: %d", code)
		}
		for _, p := range []string{"/", "/data.json", "/style.css", "/missing"} {
			resp, err := http.Head(h.url + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	for _, e := range h.drain() {
		t.Errorf("unexpected event %s %s %v", e.Kind, e.Subject, e.Attrs)
	}
}

// rawAnswers sends raw bytes on a fresh connection and returns everything the gateway sends
// back until it closes the connection (or a second passes).
func rawAnswers(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.SetReadDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// HTTP/1.0 with Transfer-Encoding: chunked on a kept-alive connection: net/http would read
// the chunked body as a second request; the gateway answers 400 and closes.
func TestHTTP10ChunkedIsNotSmuggled(t *testing.T) {
	h := newHetero(t, Options{K: 3})
	addr := strings.TrimPrefix(h.url, "http://")
	smuggled := "GET /data.json HTTP/1.1\r\nHost: x\r\n\r\n"
	req := "GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"
	got := rawAnswers(t, addr, req)
	if !strings.HasPrefix(got, "HTTP/1.0 400") || strings.Count(got, "HTTP/1.") != 1 || strings.Contains(got, "proteus") {
		t.Fatalf("want one 400 and the connection closed, got:\n%s", got)
	}
}

func (w *etagWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }
