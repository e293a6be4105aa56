package mimic

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// hetero is a gateway in front of net/http, nginx and lighttpd serving copies of one site.
type hetero struct {
	sites  map[string]string // backend ID -> its site dir
	procs  map[string]*proc
	bes    Static
	gw     *Gateway
	url    string
	events <-chan bus.Event
}

func newHetero(t *testing.T, o Options) *hetero {
	t.Helper()
	return newHeteroWrapped(t, o, nil)
}

// serverTrio is net/http, nginx and lighttpd (in that order) serving copies of one site each.
type serverTrio struct {
	bes             Static
	dirs            [3]string // each server's site dir
	nginx, lighttpd *proc
}

// startServerTrio starts the three servers, the Go one's handler wrapped by wrap (nil: honest).
func startServerTrio(t *testing.T, wrap func(http.Handler) http.Handler) serverTrio {
	t.Helper()
	var tr serverTrio
	for i := range tr.dirs {
		tr.dirs[i] = t.TempDir()
		writeSite(t, tr.dirs[i])
	}
	ng, ngp := startNginx(t, tr.dirs[1])
	lt, ltp := startLighttpd(t, tr.dirs[2])
	gob, _ := startGoServerWrapped(t, tr.dirs[0], wrap)
	tr.bes, tr.nginx, tr.lighttpd = Static{gob, ng, lt}, ngp, ltp
	return tr
}

// newHeteroWrapped is newHetero with the Go executor's handler wrapped by wrap (nil: honest).
func newHeteroWrapped(t *testing.T, o Options, wrap func(http.Handler) http.Handler) *hetero {
	t.Helper()
	h := &hetero{sites: map[string]string{}, procs: map[string]*proc{}}
	trio := startServerTrio(t, wrap)
	gob, ng, lt := trio.bes[0], trio.bes[1], trio.bes[2]
	h.sites[gob.ID], h.sites[ng.ID], h.sites[lt.ID] = trio.dirs[0], trio.dirs[1], trio.dirs[2]
	h.procs[ng.ID], h.procs[lt.ID] = trio.nginx, trio.lighttpd
	h.bes = trio.bes
	b := bus.New()
	ch, cancel := b.Subscribe(1024, bus.KindPrefix("gateway."))
	t.Cleanup(cancel)
	h.events = ch
	o.Backends, o.Bus = h.bes, b
	gw, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.gw = gw
	srv, err := NewServer(gw, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	go Serve(sctx, srv, ln) // the cleartext fast path, as proteus gateway serves
	t.Cleanup(func() { stop(); srv.Close(); gw.Wait() })
	h.url = "http://" + ln.Addr().String()
	return h
}

func (h *hetero) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(h.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// drain returns the events published so far (after the gateway's background accounting).
func (h *hetero) drain() []bus.Event {
	h.gw.Wait()
	var out []bus.Event
	for {
		select {
		case e := <-h.events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func dissentsOf(evs []bus.Event) map[string]bus.Event {
	out := map[string]bus.Event{}
	for _, e := range evs {
		if e.Kind == EventDissent {
			out[e.Subject] = e
		}
	}
	return out
}

func TestHeterogeneousServersAgree(t *testing.T) {
	h := newHetero(t, Options{K: 3})
	// The servers really do differ in what must not count: Server, ETag, framing.
	servers, etags, chunked := map[string]bool{}, map[string]bool{}, 0
	for _, b := range h.bes {
		resp, err := http.Get(b.Addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(body, sitePage) {
			t.Fatalf("%s serves another page", b.ID)
		}
		servers[resp.Header.Get("Server")] = true
		etags[resp.Header.Get("Etag")] = true
		if len(resp.TransferEncoding) > 0 {
			chunked++
		}
	}
	if len(servers) != 3 || len(etags) != 3 || chunked != 1 {
		t.Fatalf("backends too alike for this test: servers %v etags %v chunked %d", servers, etags, chunked)
	}
	for i := range 10 {
		code, body := h.get(t, "/")
		if code != 200 || !bytes.Equal(body, sitePage) {
			t.Fatalf("GET / #%d: %d, %d bytes", i, code, len(body))
		}
	}
	if code, body := h.get(t, "/data.json"); code != 200 || string(body) != siteJSON {
		t.Fatalf("GET /data.json: %d %q", code, body)
	}
	if code, _ := h.get(t, "/style.css"); code != 200 {
		t.Fatalf("GET /style.css: %d", code)
	}
	if code, _ := h.get(t, "/missing"); code != 404 {
		t.Fatalf("GET /missing: %d", code)
	}
	resp, err := http.Head(h.url + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD /: %v %v", resp, err)
	}
	resp.Body.Close()
	// Date, ETag, Server, Last-Modified and chunked versus Content-Length all differ
	// between these three servers; none of it is dissent.
	for _, e := range h.drain() {
		t.Errorf("unexpected event %s %s %v", e.Kind, e.Subject, e.Attrs)
	}
}

func TestTamperedPageNeverReachesClient(t *testing.T) {
	for _, victim := range []string{"go-1", "nginx-1", "lighttpd-1"} {
		t.Run(victim, func(t *testing.T) {
			h := newHetero(t, Options{K: 3})
			tampered := bytes.Replace(sitePage, []byte("paragraph 001"), []byte("<script src=//evil.example/x.js></script>"), 1)
			if err := os.WriteFile(filepath.Join(h.sites[victim], "index.html"), tampered, 0o644); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				code, body := h.get(t, "/")
				if code != 200 || !bytes.Equal(body, sitePage) {
					t.Fatalf("client got %d %q", code, body)
				}
			}
			evs := h.drain()
			d, ok := dissentsOf(evs)[victim]
			if !ok {
				t.Fatalf("%s not reported; events %v", victim, evs)
			}
			if d.Attrs["kind"] != DissentContent || !d.Attrs["differs"].(diff).Body {
				t.Errorf("dissent %v", d.Attrs)
			}
			if ex, _ := d.Attrs["excerpt"].(string); !strings.Contains(ex, "evil.example") || len(ex) > 256 {
				t.Errorf("excerpt %q", ex)
			}
			if len(dissentsOf(evs)) != 1 {
				t.Errorf("others reported too: %v", evs)
			}
			if s := h.gw.Trust().Score(victim); s != 0 {
				t.Errorf("trust of %s = %v, want 0", victim, s)
			}
		})
	}
}

func TestLeakedFileOnOneServer(t *testing.T) {
	h := newHetero(t, Options{K: 3})
	secret := []byte("root:x:0:0:secret\n")
	if err := os.WriteFile(filepath.Join(h.sites["nginx-1"], "secret.txt"), secret, 0o644); err != nil {
		t.Fatal(err)
	}
	code, body := h.get(t, "/secret.txt")
	if code != 404 || bytes.Contains(body, secret) {
		t.Fatalf("client got %d %q", code, body)
	}
	d, ok := dissentsOf(h.drain())["nginx-1"]
	if !ok || !d.Attrs["differs"].(diff).Status {
		t.Fatalf("nginx not reported for the leak: %v", d)
	}
}

func TestKilledExecutorDoesNotStall(t *testing.T) {
	h := newHetero(t, Options{K: 3})
	p := h.procs["nginx-1"]
	p.cmd.Process.Kill()
	p.cmd.Wait()
	code, body := h.get(t, "/")
	if code != 200 || !bytes.Equal(body, sitePage) {
		t.Fatalf("client got %d %q", code, body)
	}
	d, ok := dissentsOf(h.drain())["nginx-1"]
	if !ok || d.Attrs["kind"] != DissentAvailability {
		t.Fatalf("killed nginx not reported as availability dissent: %v", d)
	}
}

func TestHungExecutorDoesNotStall(t *testing.T) {
	// The upstream timeout is far longer than any test run: if the gateway waited for the
	// stopped server, the request would hang until the test binary's own timeout.
	h := newHetero(t, Options{K: 3, UpstreamTimeout: time.Hour})
	p := h.procs["lighttpd-1"]
	if err := p.cmd.Process.Signal(syscallStop); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		code, body := h.get(t, "/")
		if code != 200 || !bytes.Equal(body, sitePage) {
			t.Fatalf("client got %d %q", code, body)
		}
	}
	// Resuming the server lets the stragglers finish; they answered like the majority.
	p.cmd.Process.Signal(syscallCont)
	for _, e := range h.drain() {
		t.Errorf("unexpected event %s %v", e.Kind, e.Attrs)
	}
}

func TestHungExecutorTimesOutAsAvailabilityDissent(t *testing.T) {
	h := newHetero(t, Options{K: 3, UpstreamTimeout: time.Second})
	p := h.procs["lighttpd-1"]
	if err := p.cmd.Process.Signal(syscallStop); err != nil {
		t.Fatal(err)
	}
	defer p.cmd.Process.Signal(syscallCont)
	code, body := h.get(t, "/")
	if code != 200 || !bytes.Equal(body, sitePage) {
		t.Fatalf("client got %d %q", code, body)
	}
	d, ok := dissentsOf(h.drain())["lighttpd-1"]
	if !ok || d.Attrs["kind"] != DissentAvailability {
		t.Fatalf("hung lighttpd not reported as availability dissent: %v", d)
	}
}

// A download far over ResponseLimit on a single route comes whole from each of the three real
// servers (nginx sends it with sendfile, lighttpd and net/http in their own ways).
func TestSingleRouteDownloadFromEachServer(t *testing.T) {
	h := newHetero(t, Options{ResponseLimit: 1 << 20, Scheduler: "round-robin",
		Routes: []Route{{Prefix: "/downloads/", Policy: PolicySingle}}})
	want := bigBody(20 << 20)
	for _, dir := range h.sites {
		if err := os.MkdirAll(filepath.Join(dir, "downloads"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "downloads", "big.bin"), want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range len(h.bes) { // round-robin: each server once
		code, got := h.get(t, "/downloads/big.bin")
		if code != 200 || !bytes.Equal(got, want) {
			t.Errorf("download %d: %d, %d of %d bytes, equal %v", i, code, len(got), len(want), bytes.Equal(got, want))
		}
	}
	for _, e := range h.drain() {
		if e.Kind == EventDissent || e.Kind == EventNoConsensus {
			t.Errorf("%s %s: %v", e.Kind, e.Subject, e.Attrs)
		}
	}
}
