package mimic

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The helpers here start real, heterogeneous web servers on loopback ports that serve the
// same site: Go's net/http, nginx and lighttpd (from Debian; tests that need them skip when
// they are not installed, which .ci/run does).

// sitePage is a 2 KiB HTML page.
var sitePage = func() []byte {
	var b bytes.Buffer
	b.WriteString("<!doctype html>\n<html><head><title>Proteus test site</title></head>\n<body>\n")
	for i := 0; b.Len() < 2048-30; i++ {
		fmt.Fprintf(&b, "  <p>paragraph %03d of the same page</p>\n", i)
	}
	b.WriteString("</body></html>\n")
	return b.Bytes()[:min(b.Len(), 2048)]
}()

const siteJSON = `{"name":"proteus","items":[1,2,3],"nested":{"a":true,"b":null}}`

// writeSite writes the test site into dir.
func writeSite(t testing.TB, dir string) {
	t.Helper()
	files := map[string][]byte{
		"index.html": sitePage,
		"data.json":  []byte(siteJSON),
		"style.css":  []byte("body { color: #333; }\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitHTTP polls url until it answers (setup only; a server that never comes up fails the test).
func waitHTTP(t testing.TB, url string, logFile string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	for range 300 {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	logData, _ := os.ReadFile(logFile)
	t.Fatalf("%s never answered; log:\n%s", url, logData)
}

// startGoServerWrapped serves dir with net/http; HTML is streamed with chunked encoding (no
// Content-Length), unlike nginx and lighttpd, and it counts the requests it serves. Its handler
// is wrapped by wrap (nil: not), for a Go executor made to misbehave.
func startGoServerWrapped(t testing.TB, dir string, wrap func(http.Handler) http.Handler) (Backend, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	fs := http.FileServer(http.Dir(dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/" || strings.HasSuffix(r.URL.Path, ".html") {
			name := r.URL.Path
			if name == "/" {
				name = "/index.html"
			}
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Server", "go-nethttp")
			w.Header().Set("Etag", fmt.Sprintf(`"go-%d"`, len(data)))
			half := len(data) / 2
			w.Write(data[:half])
			w.(http.Flusher).Flush() // forces chunked transfer encoding
			w.Write(data[half:])
			return
		}
		fs.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = h
	if wrap != nil {
		handler = wrap(h)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return Backend{ID: "go-1", Variant: "go-nethttp", Addr: "http://" + ln.Addr().String(),
		Traits: map[string]string{"server": "go", "lang": "go", "tls": "crypto/tls"}}, &hits
}

// proc is an external server process.
type proc struct {
	cmd *exec.Cmd
	dir string
}

func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Signal(syscallCont)
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

// startNginx runs nginx in the foreground, one process, as the current user.
func startNginx(t testing.TB, site string) (Backend, *proc) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not installed (.ci/run installs it): ", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  charset utf-8;
  charset_types text/css text/plain;
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
  }
}
`, dir, port, site)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, bin, "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", cf)
	p.dir = dir
	b := Backend{ID: "nginx-1", Variant: "nginx", Addr: "http://127.0.0.1:" + strconv.Itoa(port),
		Traits: map[string]string{"server": "nginx", "lang": "c", "tls": "openssl"}}
	waitHTTP(t, b.Addr+"/", filepath.Join(dir, "error.log"))
	return b, p
}

// startLighttpd runs lighttpd in the foreground as the current user.
func startLighttpd(t testing.TB, site string) (Backend, *proc) {
	t.Helper()
	bin, err := exec.LookPath("lighttpd")
	if err != nil {
		t.Skip("lighttpd not installed (.ci/run installs it): ", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.pid-file = %q
server.errorlog = %q
server.max-keep-alive-requests = 100000
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html; charset=utf-8", ".json" => "application/json", ".css" => "text/css; charset=utf-8", ".txt" => "text/plain; charset=utf-8", ".bin" => "application/octet-stream")
`, site, port, filepath.Join(dir, "lighttpd.pid"), filepath.Join(dir, "error.log"))
	cf := filepath.Join(dir, "lighttpd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, bin, "-D", "-f", cf)
	p.dir = dir
	b := Backend{ID: "lighttpd-1", Variant: "lighttpd", Addr: "http://127.0.0.1:" + strconv.Itoa(port),
		Traits: map[string]string{"server": "lighttpd", "lang": "c", "tls": "openssl"}}
	waitHTTP(t, b.Addr+"/", filepath.Join(dir, "error.log"))
	return b, p
}
