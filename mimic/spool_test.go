package mimic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// chunkReader returns its data in pieces of the given sizes, cycling through them.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, max(1, c.sizes[c.i%len(c.sizes)]))
		c.i++
	}
	n = copy(p[:min(n, len(p))], c.data)
	c.data = c.data[n:]
	return n, nil
}

// checkBodyBuffer reads body through a bodyBuffer in pieces and checks what it holds.
func checkBodyBuffer(t *testing.T, sp *spooler, body []byte, sizes []int) {
	t.Helper()
	b := sp.get()
	defer b.release()
	n, err := b.ReadFrom(&chunkReader{data: body, sizes: sizes})
	if err != nil || n != int64(len(body)) || b.n != n {
		t.Fatalf("ReadFrom: %d (%d) %v, want %d", n, b.n, err, len(body))
	}
	if got, want := b.sum(), maphash.Bytes(sp.seed, body); got != want {
		t.Fatalf("hash %x, want maphash.Bytes %x (len %d, spooled %v, sizes %v)", got, want, len(body), b.spooled(), sizes)
	}
	if spooled := int64(len(body)) > sp.threshold; b.spooled() != spooled {
		t.Fatalf("spooled %v for %d bytes with threshold %d", b.spooled(), len(body), sp.threshold)
	}
	var out bytes.Buffer
	if _, err := b.writeTo(&out); err != nil || !bytes.Equal(out.Bytes(), body) {
		t.Fatalf("writeTo: %v, %d bytes back of %d", err, out.Len(), len(body))
	}
	r := &response{bb: b, body: b.bytes()}
	for _, off := range []int{0, len(body) / 3, len(body) - 1, len(body)} {
		if off < 0 {
			continue
		}
		if p := bodyAt(r, int64(off), 10); !bytes.Equal(p, body[off:min(off+10, len(body))]) {
			t.Fatalf("bodyAt(%d) %q", off, p)
		}
	}
}

// Whatever pieces a body arrives in, and whether it stays in memory or is spooled, its hash
// is maphash.Bytes of the whole (the value the ballot compares) and its bytes come back whole.
func FuzzBodyBufferHash(f *testing.F) {
	f.Add([]byte("hello"), uint16(3), []byte{1, 2, 3})
	f.Add(bytes.Repeat([]byte("abcdefgh"), 300), uint16(100), []byte{7, 200, 1, 64})
	f.Add([]byte{}, uint16(1), []byte{})
	seed := maphash.MakeSeed()
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte, threshold uint16, sizes []byte) {
		sp := newSpooler(seed, int64(threshold)+1, dir, 1<<30, 1<<30)
		sz := make([]int, len(sizes))
		for i, s := range sizes {
			sz[i] = int(s)
		}
		checkBodyBuffer(t, sp, body, sz)
		if sp.mem.used.Load() != 0 || sp.disk.used.Load() != 0 || sp.files.Load() != 0 {
			t.Fatalf("after release: memory %d, disk %d, files %d", sp.mem.used.Load(), sp.disk.used.Load(), sp.files.Load())
		}
	})
}

func TestBodyBufferSpillsAndBudgets(t *testing.T) {
	seed := maphash.MakeSeed()
	body := make([]byte, 100<<10)
	for i := range body {
		body[i] = byte(rand.N(256))
	}
	dir := t.TempDir()
	t.Run("spill", func(t *testing.T) {
		sp := newSpooler(seed, 16<<10, dir, 1<<20, 1<<20)
		for _, sizes := range [][]int{nil, {1}, {4095, 4097}, {16 << 10}, {(16 << 10) + 1}} {
			checkBodyBuffer(t, sp, body, sizes)
		}
		if p := sp.mem.peak.Load(); p > 16<<10 {
			t.Errorf("memory peak %d for one body over a threshold of 16 KiB", p)
		}
		if p := sp.disk.peak.Load(); p != int64(len(body)) {
			t.Errorf("disk peak %d, want the body's %d", p, len(body))
		}
	})
	for _, tc := range []struct {
		name      string
		mem, disk int64
		want      error
	}{
		{"memory", 8 << 10, 1 << 20, errMemBudget},
		{"spool", 1 << 20, 50 << 10, errSpoolBudget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := newSpooler(seed, 16<<10, dir, tc.mem, tc.disk)
			b := sp.get()
			_, err := b.ReadFrom(bytes.NewReader(body))
			if !errors.Is(err, tc.want) || !errors.Is(err, errBudget) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			b.release()
			if sp.mem.used.Load() != 0 || sp.disk.used.Load() != 0 || sp.files.Load() != 0 {
				t.Fatalf("after release: memory %d, disk %d, files %d", sp.mem.used.Load(), sp.disk.used.Load(), sp.files.Load())
			}
		})
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("spool dir not empty: %v", left)
	}
}

// spoolFDs counts this process's open files in dir (spool files are unlinked: "(deleted)").
func spoolFDs(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		if to, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(to, dir+"/") {
			n++
		}
	}
	return n
}

// Large bodies from nginx, lighttpd and net/http are spooled, compared raw and answered whole;
// many at once hold about one threshold of memory per executor request, never the bodies,
// and leave no file behind. A tampered large body is still a dissent.
func TestLargeBodiesAreSpooled(t *testing.T) {
	dir := t.TempDir()
	const threshold = 64 << 10
	h := newHetero(t, Options{K: 3, SpoolThreshold: threshold, SpoolDir: dir, WaitAll: true})
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(rand.N(256))
	}
	for _, d := range h.sites {
		if err := os.WriteFile(filepath.Join(d, "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			resp, err := http.Get(h.url + "/big.bin")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, big) {
				errs <- fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs := h.drain()
	if d := dissentsOf(evs); len(d) != 0 {
		t.Fatalf("dissent on equal large bodies: %v", d)
	}
	sp := h.gw.spool
	if p := sp.disk.peak.Load(); p < int64(len(big)) {
		t.Fatalf("disk peak %d: the bodies were not spooled", p)
	}
	// At most one threshold-sized buffer per executor request in memory, far below the bodies.
	if p, bound := sp.mem.peak.Load(), int64(clients*3*threshold); p > bound {
		t.Fatalf("memory peak %d, over %d (%d bytes of bodies)", p, bound, clients*3*len(big))
	}
	if sp.mem.used.Load() != 0 || sp.disk.used.Load() != 0 || sp.files.Load() != 0 || spoolFDs(t, dir) != 0 {
		t.Fatalf("after the requests: memory %d, disk %d, files %d, fds %d", sp.mem.used.Load(), sp.disk.used.Load(), sp.files.Load(), spoolFDs(t, dir))
	}

	tampered := bytes.Clone(big)
	copy(tampered[700<<10:], "<script>evil</script>") // past the threshold, within excerptScan
	if err := os.WriteFile(filepath.Join(h.sites["lighttpd-1"], "big.bin"), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := h.get(t, "/big.bin"); code != 200 || !bytes.Equal(body, big) {
		t.Fatalf("after tampering: %d, %d bytes, equal %v", code, len(body), bytes.Equal(body, big))
	}
	d, ok := dissentsOf(h.drain())["lighttpd-1"]
	if !ok || d.Attrs["kind"] != DissentContent || !d.Attrs["differs"].(diff).Body {
		t.Fatalf("tampered large body: dissent %v", d.Attrs)
	}
	if ex, _ := d.Attrs["excerpt"].(string); !strings.Contains(ex, "<script>evil") {
		t.Errorf("excerpt %q does not show the difference", ex)
	}
	if sp.files.Load() != 0 || spoolFDs(t, dir) != 0 {
		t.Fatalf("files left: %d, fds %d", sp.files.Load(), spoolFDs(t, dir))
	}
}

// When the gateway cannot buffer the answers it needs, the client gets 503 and no executor
// is blamed.
func TestBufferBudgetExhaustedIs503(t *testing.T) {
	dir := t.TempDir()
	h := newHetero(t, Options{K: 3, SpoolThreshold: 16 << 10, SpoolDir: dir, SpoolBudget: 64 << 10, WaitAll: true})
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	for _, d := range h.sites {
		if err := os.WriteFile(filepath.Join(d, "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := h.get(t, "/big.bin"); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	for _, e := range h.drain() {
		if e.Kind == EventDissent || e.Kind == EventEjected || e.Kind == EventNoConsensus {
			t.Fatalf("event %s %s %v", e.Kind, e.Subject, e.Attrs)
		}
	}
	if code, body := h.get(t, "/"); code != 200 || !bytes.Equal(body, sitePage) {
		t.Fatalf("a small page after: %d", code)
	}
	if sp := h.gw.spool; sp.disk.used.Load() != 0 || sp.files.Load() != 0 || spoolFDs(t, dir) != 0 {
		t.Fatalf("left: disk %d, files %d", sp.disk.used.Load(), sp.files.Load())
	}
}

func TestBufferGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := New(Options{Backends: Static{{ID: "a", Addr: "http://127.0.0.1:1"}}, Metrics: NewMetrics(reg), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name, where string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() != name {
					continue
				}
				if where == "" || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == where {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no %s{where=%q}", name, where)
		return 0
	}
	g.spool.mem.take(1234)
	g.spool.disk.take(5678)
	b := g.spool.get()
	if _, err := b.ReadFrom(bytes.NewReader(make([]byte, 300<<10))); err != nil || !b.spooled() {
		t.Fatalf("not spooled: %v", err)
	}
	if m, d, f := gauge("proteus_gateway_buffered_bytes", "memory"), gauge("proteus_gateway_buffered_bytes", "spool"), gauge("proteus_gateway_spool_files", ""); m != 1234+256<<10 || d != 5678+300<<10 || f != 1 {
		t.Fatalf("gauges memory %v, spool %v, files %v", m, d, f)
	}
	b.release()
	if f := gauge("proteus_gateway_spool_files", ""); f != 0 {
		t.Fatalf("files %v after release", f)
	}
}

// Spool files go when the call ends in every path: a client that goes away before the
// decision, and a straggler still sending its large body after the answer went out.
func TestSpoolFilesGoWhenClientLeavesOrExecutorStraggles(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	slow := func(stall bool, release chan struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big[:len(big)/2]) // past the threshold: spooled
			w.(http.Flusher).Flush()
			if stall {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			w.Write(big[len(big)/2:])
		}
	}
	for _, tc := range []struct {
		name    string
		stalled int // executors that stall after half the body
	}{
		{"client gone", 3},
		{"straggler", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var bes Static
			for i := range 3 {
				b, _ := startGoBackends(t, 1, slow(i < tc.stalled, release))
				b[0].ID = fmt.Sprintf("g%d", i)
				bes = append(bes, b[0])
			}
			dir := t.TempDir()
			g, err := New(Options{Backends: bes, SpoolThreshold: 64 << 10, SpoolDir: dir, UpstreamTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + startGateway(t, g, ServerOptions{})
			if tc.stalled == 3 {
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "GET", url+"/big", nil)
				go func() {
					for g.spool.files.Load() < 3 { // all three spooling: then the client leaves
						time.Sleep(5 * time.Millisecond)
					}
					cancel()
				}()
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d with every executor stalled", resp.StatusCode)
				}
			} else {
				resp, err := http.Get(url + "/big")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Equal(body, big) {
					t.Fatalf("got %d, %d bytes", resp.StatusCode, len(body))
				}
				// The straggler's half body reaches the spool too; the two equal whole ones are
				// kept once (dropped before the answer went out).
				for g.spool.disk.used.Load() < int64(len(big)+len(big)/2) {
					time.Sleep(5 * time.Millisecond)
				}
				if n, d := g.spool.files.Load(), g.spool.disk.used.Load(); n != 2 || d != int64(len(big)+len(big)/2) {
					close(release)
					t.Fatalf("%d spool files of %d bytes after the answer, want 2 of %d: one of the two equal bodies, and the straggler's half", n, d, len(big)+len(big)/2)
				}
			}
			close(release) // the straggler ends its body short: its request fails, the call finishes
			g.Wait()
			if sp := g.spool; sp.files.Load() != 0 || sp.disk.used.Load() != 0 || sp.mem.used.Load() != 0 || spoolFDs(t, dir) != 0 {
				t.Fatalf("left: files %d, disk %d, memory %d, fds %d", sp.files.Load(), sp.disk.used.Load(), sp.mem.used.Load(), spoolFDs(t, dir))
			}
		})
	}
}
