package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the demo server for the external implementations,
// which replace their process with nginx or lighttpd.
func TestMain(m *testing.M) {
	if impl := os.Getenv("PROTEUS_DEMO_CHILD"); impl != "" {
		err := Serve(context.Background(), Options{Impl: impl, Listen: os.Getenv("PROTEUS_DEMO_LISTEN"), Root: os.Getenv("PROTEUS_DEMO_ROOT")})
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var sitePaths = []string{"/", "/index.html", "/about.html", "/style.css", "/healthz", "/api/items", "/api/item/1", "/api/item/3", "/missing", "/api/item/9"}

type answer struct {
	status int
	ctype  string
	body   string
}

func fetch(t *testing.T, c *http.Client, method, url string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

func startInProcess(t *testing.T, impl, root string) string {
	t.Helper()
	return startWeakened(t, impl, root, "")
}

func startWeakened(t *testing.T, impl, root, weakness string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{Impl: impl, Root: root, Listener: ln, Weakness: weakness}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: serve: %v", impl, err)
		}
	})
	return ln.Addr().String()
}

func startExternal(t *testing.T, impl, root string) string {
	t.Helper()
	if _, err := exec.LookPath(impl); err != nil {
		t.Skipf("%s is not installed (.ci/run installs it): %v", impl, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PROTEUS_DEMO_CHILD="+impl, "PROTEUS_DEMO_LISTEN="+addr, "PROTEUS_DEMO_ROOT="+root)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// nginx forks a worker: run the server in its own process group and kill the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	waitUp(t, addr, &stderr)
	return addr
}

// waitUp polls /healthz until it answers; the bound is generous and only guards against a hang.
func waitUp(t *testing.T, addr string, stderr *strings.Builder) {
	t.Helper()
	for i := 0; i < 600; i++ {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never came up: %s", addr, stderr)
}

func TestImplementationsServeSameBytes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	if err := WriteSite(root); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	var ref map[string]answer
	for _, impl := range Implementations() {
		t.Run(impl, func(t *testing.T) {
			var addr string
			switch impl {
			case "nginx", "lighttpd":
				addr = startExternal(t, impl, root)
			default:
				addr = startInProcess(t, impl, root)
			}
			got := map[string]answer{}
			for _, p := range sitePaths {
				got[p] = fetch(t, c, http.MethodGet, "http://"+addr+p)
			}
			if got["/"].status != 200 || !strings.Contains(got["/"].body, "Proteus demo shop") {
				t.Fatalf("GET / = %+v", got["/"])
			}
			if got["/healthz"].body != "ok\n" {
				t.Errorf("healthz body %q", got["/healthz"].body)
			}
			if got["/missing"].status != http.StatusNotFound {
				t.Errorf("missing: status %d", got["/missing"].status)
			}
			if ref == nil {
				ref = got
				return
			}
			for _, p := range sitePaths {
				if got[p].status != ref[p].status || got[p].body != ref[p].body {
					t.Errorf("%s differs from %s: %d %q vs %d %q", p, Implementations()[0], got[p].status, got[p].body, ref[p].status, ref[p].body)
				}
				if got[p].status == 200 && got[p].ctype != ref[p].ctype {
					t.Errorf("%s content type %q, want %q", p, got[p].ctype, ref[p].ctype)
				}
			}
			if impl == "nginx" || impl == "lighttpd" {
				return
			}
			if a := fetch(t, c, http.MethodHead, "http://"+addr+"/about.html"); a.status != 200 || a.body != "" {
				t.Errorf("HEAD: %+v", a)
			}
			if a := fetch(t, c, http.MethodPost, "http://"+addr+"/"); a.status != http.StatusMethodNotAllowed || a.body != methodNotAllowedBody {
				t.Errorf("POST: %+v", a)
			}
		})
	}
}

func TestRawRequestParsing(t *testing.T) {
	cases := []struct {
		name, in   string
		status     int
		path       string
		keep       bool
		wantMethod string
	}{
		{"simple", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0, "/a", true, "GET"},
		{"http10", "GET /a HTTP/1.0\r\n\r\n", 0, "/a", false, "GET"},
		{"http10 keepalive", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, "/a", true, "GET"},
		{"close", "GET /a?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n", 0, "/a", false, "GET"},
		{"absolute form", "GET http://h:1/b/c HTTP/1.1\r\n\r\n", 0, "/b/c", true, "GET"},
		{"body discarded", "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 0, "/p", true, "POST"},
		{"bad version", "GET / HTTP/2.0\r\n\r\n", http.StatusHTTPVersionNotSupported, "", false, ""},
		{"no target", "GET\r\n\r\n", http.StatusBadRequest, "", false, ""},
		{"relative target", "GET a HTTP/1.1\r\n\r\n", http.StatusBadRequest, "", false, ""},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", http.StatusNotImplemented, "", false, ""},
		{"bad length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", http.StatusBadRequest, "", false, ""},
		{"conflicting length", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", http.StatusBadRequest, "", false, ""},
		{"huge body", "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", http.StatusRequestEntityTooLarge, "", false, ""},
		{"header without colon", "GET / HTTP/1.1\r\nbogus\r\n\r\n", http.StatusBadRequest, "", false, ""},
		{"long line", "GET /" + strings.Repeat("a", rawMaxLine) + " HTTP/1.1\r\n\r\n", http.StatusRequestURITooLong, "", false, ""},
		{"eof", "GET / HTTP/1.1\r\nHost: x\r\n", -1, "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, st := readRawRequest(bufio.NewReaderSize(strings.NewReader(c.in), rawMaxLine))
			if st != c.status {
				t.Fatalf("status %d, want %d", st, c.status)
			}
			if st == 0 && (r.path != c.path || r.keepAlive != c.keep || r.method != c.wantMethod) {
				t.Errorf("got %+v", r)
			}
		})
	}
}

func TestResolveStaysInRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(filepath.Dir(root), "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/../secret", "/a/../../secret", "relative", "/\x00"} {
		if f, _, ok := resolve(root, p); ok {
			t.Errorf("resolve(%q) = %s", p, f)
		}
	}
}

func TestUnknownImpl(t *testing.T) {
	if err := Serve(context.Background(), Options{Impl: "apache", Root: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "unknown implementation") {
		t.Fatalf("got %v", err)
	}
}

func FuzzReadRawRequest(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	f.Add("POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\nab")
	f.Add("GET http://a HTTP/1.1\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, st := readRawRequest(bufio.NewReaderSize(strings.NewReader(in), rawMaxLine))
		if st == 0 && !strings.HasPrefix(r.path, "/") {
			t.Fatalf("accepted path %q", r.path)
		}
	})
}

// The deliberately weakened nethttp variant reads a file outside the site for ?file=, the
// honest implementations serve the page and ignore the query, and a weakness is refused for
// an implementation that has none.
func TestFileIncludeWeakness(t *testing.T) {
	work := t.TempDir()
	root := filepath.Join(work, "site")
	if err := WriteSite(root); err != nil {
		t.Fatal(err)
	}
	const secret = "outside the site\n"
	if err := os.WriteFile(filepath.Join(work, "secret.txt"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	page := fetch(t, http.DefaultClient, "GET", "http://"+startInProcess(t, "nethttp", root)+"/about.html")
	weak := startWeakened(t, "nethttp", root, WeaknessFileInclude)
	if got := fetch(t, http.DefaultClient, "GET", "http://"+weak+"/about.html?file=../secret.txt"); got.status != 200 || got.body != secret {
		t.Fatalf("weakened nethttp: %+v, want the file outside the site", got)
	}
	if got := fetch(t, http.DefaultClient, "GET", "http://"+weak+"/about.html"); got != page {
		t.Fatalf("weakened nethttp without ?file=: %+v, want the page", got)
	}
	for _, impl := range []string{"nethttp", "fasthttp", "raw"} {
		if got := fetch(t, http.DefaultClient, "GET", "http://"+startInProcess(t, impl, root)+"/about.html?file=../secret.txt"); got != page {
			t.Errorf("%s: %+v, want the page", impl, got)
		}
	}
	for _, o := range []Options{{Impl: "raw", Weakness: WeaknessFileInclude}, {Impl: "nethttp", Weakness: "sqli"}} {
		o.Root, o.Listen = root, "127.0.0.1:0"
		if err := Serve(context.Background(), o); !errors.Is(err, ErrUnknownWeakness) {
			t.Errorf("%+v: %v, want ErrUnknownWeakness", o, err)
		}
	}
}
