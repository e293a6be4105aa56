package mimic

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proteus-defense/proteus/bus"
)

// bigBody is n bytes that differ along the way, so a reordered or dropped piece shows.
func bigBody(n int) []byte {
	b := make([]byte, 0, n+16)
	for i := 0; len(b) < n; i++ {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\n')
	}
	return b[:n]
}

// viaTransport runs f with the gateway's own h1 client and with executors reached through an
// http.RoundTripper (as https:// ones are), the two ways fetch streams.
func viaTransport(t *testing.T, f func(t *testing.T, tr http.RoundTripper)) {
	t.Run("h1", func(t *testing.T) { f(t, nil) })
	t.Run("transport", func(t *testing.T) {
		tr := NewTransport(8)
		defer tr.CloseIdleConnections()
		f(t, tr)
	})
}

// A single route's answer is streamed: bodies far over ResponseLimit reach the client whole,
// with the executor's length or chunked without one, on the fast path (GET) and through
// net/http (POST); a voted route keeps the limit.
func TestSingleRouteStreamsLargeBodies(t *testing.T) {
	viaTransport(t, testSingleRouteStreamsLargeBodies)
}

func testSingleRouteStreamsLargeBodies(t *testing.T, tr http.RoundTripper) {
	const size = 3 << 20
	want := bigBody(size)
	bes, _ := countingBackends(t, 3, func(i int, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/chunked") {
			w.Write(want[:1000])
			w.(http.Flusher).Flush() // no Content-Length from here on
			w.Write(want[1000:])
			return
		}
		body := want
		if r.URL.Path == "/voted/200k" {
			body = want[:200<<10]
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	g, err := New(Options{Backends: bes, Transport: tr, ResponseLimit: 1 << 20, Routes: []Route{{Prefix: "/files/", Methods: []string{"GET", "POST"}, Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{})
	c := &http.Client{}
	check := func(method, path string, wantLength int64) {
		t.Helper()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("upload")
		}
		req, _ := http.NewRequest(method, "http://"+addr+path, body)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, want) || resp.ContentLength != wantLength {
			t.Errorf("%s %s: %d, %d of %d bytes (equal: %v), length %d (want %d), error %v", method, path,
				resp.StatusCode, len(got), size, bytes.Equal(got, want), resp.ContentLength, wantLength, err)
		}
	}
	check(http.MethodGet, "/files/big", size)
	check(http.MethodPost, "/files/big", size)
	check(http.MethodGet, "/files/chunked", -1)
	check(http.MethodPost, "/files/chunked", -1)

	resp, err := c.Head("http://" + addr + "/files/big")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Errorf("HEAD: %d, length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, size)
	}
	if code, _ := get(t, c, "http://"+addr+"/voted/big"); code != http.StatusBadGateway {
		t.Errorf("voted 3 MiB answer over a 1 MiB limit: %d, want 502", code)
	}
	// A voted answer larger than the client writer's buffer is written through, length kept.
	resp, err = c.Get("http://" + addr + "/voted/200k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, want[:200<<10]) || resp.ContentLength != 200<<10 {
		t.Errorf("voted 200 KiB: %d, %d bytes, length %d, %v", resp.StatusCode, len(got), resp.ContentLength, err)
	}
}

// The client gets a streamed answer's first piece while the executor still works on the rest,
// and a body that takes longer than UpstreamTimeout and the write timeout in all is cut by
// neither while it keeps coming, on the fast path (GET) and through net/http (POST).
func TestSingleRouteStreamsAsItArrives(t *testing.T) {
	viaTransport(t, testSingleRouteStreamsAsItArrives)
}

func testSingleRouteStreamsAsItArrives(t *testing.T, tr http.RoundTripper) {
	release := make(chan struct{}, 1)
	bes, _ := countingBackends(t, 1, func(i int, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return // the gateway held the first piece back: the client's read fails the test
		}
		for range 10 {
			time.Sleep(120 * time.Millisecond)
			io.WriteString(w, "more\n")
			w.(http.Flusher).Flush()
		}
	})
	g, err := New(Options{Backends: bes, Transport: tr, UpstreamTimeout: time.Second, Routes: []Route{{Prefix: "/", Methods: []string{"GET", "POST"}, Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{WriteTimeout: 900 * time.Millisecond})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("x")
		}
		req, _ := http.NewRequest(method, "http://"+addr+"/events", body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "first\n" {
			t.Fatalf("%s: first piece: %q, %v", method, line, err)
		}
		release <- struct{}{}
		rest, err := io.ReadAll(br)
		resp.Body.Close()
		if err != nil || string(rest) != strings.Repeat("more\n", 10) {
			t.Fatalf("%s: rest of the stream (1.2 s in all, 120 ms apart, UpstreamTimeout 1 s, WriteTimeout 900 ms): %q, %v", method, rest, err)
		}
	}
}

// A client that stops reading a streamed answer is still cut off by the write timeout, and
// that is not the executor's dissent.
func TestStreamToAStalledClientIsCut(t *testing.T) {
	want := bigBody(32 << 20)
	bes, _ := countingBackends(t, 1, func(i int, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(want)))
		w.Write(want)
	})
	b := bus.New()
	evs, cancel := b.Subscribe(16, nil)
	defer cancel()
	reg := prometheus.NewRegistry()
	g, err := New(Options{Backends: bes, Bus: b, Metrics: NewMetrics(reg), Routes: []Route{{Prefix: "/", Methods: []string{"GET", "POST"}, Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{WriteTimeout: 300 * time.Millisecond})
	for _, req := range []string{
		"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",                        // the fast path
		"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", // net/http
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, req) // and never read
	}
	// Cut off either way: the write fails (aborted), or on net/http's path the failed write
	// cancels the request's context first (client-gone).
	ended := func() float64 {
		return metricValue(t, reg, "proteus_gateway_requests_total", map[string]string{"outcome": "aborted"}) +
			metricValue(t, reg, "proteus_gateway_requests_total", map[string]string{"outcome": "client-gone"})
	}
	done := make(chan struct{})
	go func() {
		for ended() < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		g.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the gateway still writes to clients that stopped reading (%v of 2 requests ended)", ended())
	}
	for len(evs) > 0 {
		if e := <-evs; e.Kind == EventDissent || e.Kind == EventNoConsensus {
			t.Errorf("%s for a client that stopped reading: %v", e.Kind, e.Attrs)
		}
	}
}

// rawBackend answers every request on its own connection with head, then body, then either
// closes (hang false) or holds the connection open until the test ends.
func rawBackend(t *testing.T, head string, body []byte, hang bool) Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, head)
				c.Write(body)
				if hang {
					<-done
				}
			}()
		}
	}()
	return Backend{ID: "raw", Variant: "raw", Addr: "http://" + ln.Addr().String()}
}

// An executor that breaks off a streamed body, or stops sending in the middle of it, cuts the
// client's connection (the head is out, so no error status can follow), counts as an
// availability dissent and is not reported as a lack of consensus.
func TestStreamedExecutorFailureAbortsTheClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		hang bool
	}{{"closes mid-body", false}, {"stalls mid-body", true}} {
		t.Run(tc.name, func(t *testing.T) {
			be := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n", bigBody(100000), tc.hang)
			b := bus.New()
			evs, cancel := b.Subscribe(16, nil)
			defer cancel()
			reg := prometheus.NewRegistry()
			g, err := New(Options{Backends: Static{be}, Bus: b, Metrics: NewMetrics(reg), UpstreamTimeout: 300 * time.Millisecond,
				Routes: []Route{{Prefix: "/", Methods: []string{"GET", "POST"}, Policy: PolicySingle}}})
			if err != nil {
				t.Fatal(err)
			}
			addr := startGateway(t, g, ServerOptions{})
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				req, _ := http.NewRequest(method, "http://"+addr+"/f", strings.NewReader("x"))
				if method == http.MethodGet {
					req.Body, req.ContentLength = nil, 0
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= 200000 {
					t.Errorf("%s: %d, %d bytes, error %v; want 200, a short body and io.ErrUnexpectedEOF", method, resp.StatusCode, len(got), err)
				}
			}
			g.Wait()
			dissent := 0
			for len(evs) > 0 {
				e := <-evs
				switch {
				case e.Kind == EventNoConsensus:
					t.Errorf("no-consensus event for a broken stream: %v", e.Attrs)
				case e.Kind == EventDissent && e.Attrs["kind"] == DissentAvailability:
					dissent++
				}
			}
			if dissent != 2 {
				t.Errorf("%d availability dissent events, want 2", dissent)
			}
			if n := metricValue(t, reg, "proteus_gateway_requests_total", map[string]string{"outcome": "aborted"}); n != 2 {
				t.Errorf("requests_total{outcome=aborted} = %v, want 2", n)
			}
		})
	}
}

func TestFastWriterStreamsLargeBodies(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	var w fastWriter
	read := func(method string) (*http.Response, []byte, error) {
		t.Helper()
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out.Bytes())), &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	body := bigBody(3 * fastBufferMax)

	// No length: chunked once the body outgrows the buffer.
	w.reset(false, bw)
	for p := body; len(p) > 0; p = p[min(len(p), 50000):] {
		w.Write(p[:min(len(p), 50000)])
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	resp, got, err := read(http.MethodGet)
	if err != nil || !bytes.Equal(got, body) || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
		t.Errorf("chunked: %d bytes (equal %v), length %d, %v, %v", len(got), bytes.Equal(got, body), resp.ContentLength, resp.TransferEncoding, err)
	}

	// The handler's length: kept, and never exceeded.
	out.Reset()
	w.reset(false, bw)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)-10))
	if n, err := w.Write(body); n != len(body)-10 || !errors.Is(err, http.ErrContentLength) {
		t.Errorf("write over the Content-Length: %d, %v", n, err)
	}
	w.finish()
	resp, got, err = read(http.MethodGet)
	if err != nil || !bytes.Equal(got, body[:len(body)-10]) || resp.ContentLength != int64(len(body)-10) {
		t.Errorf("with a length: %d bytes, length %d, %v", len(got), resp.ContentLength, err)
	}

	// Shorter than the length: finish says so, so the connection closes.
	out.Reset()
	w.reset(false, bw)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.Write(body)
	if err := w.finish(); !errors.Is(err, errShortBody) {
		t.Errorf("short streamed body: finish = %v", err)
	}

	// Flush sends a small body at once; it arrives chunked, as with net/http.
	out.Reset()
	w.reset(false, bw)
	io.WriteString(&w, "tick")
	w.Flush()
	if !strings.Contains(out.String(), "\r\n\r\n4\r\ntick\r\n") {
		t.Errorf("flushed: %q", out.String())
	}
	w.finish()
	if _, got, err = read(http.MethodGet); err != nil || string(got) != "tick" {
		t.Errorf("flushed body %q, %v", got, err)
	}
}

// However a body is written to the fast path's writer (in any pieces, flushed or not, with
// the handler's length or without), the client reads back exactly that body.
func FuzzFastWriterBody(f *testing.F) {
	f.Add([]byte("hello"), []byte{2}, false, uint8(0))
	f.Add(bigBody(fastBufferMax+100), []byte{255, 7}, true, uint8(1))
	f.Add(bigBody(3*fastBufferMax), []byte{0, 1, 200}, false, uint8(3))
	f.Fuzz(func(t *testing.T, body, cuts []byte, withLength bool, flushAfter uint8) {
		var out bytes.Buffer
		var w fastWriter
		w.reset(false, bufio.NewWriter(&out))
		if withLength {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		rest := body
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, 1+int(cuts[i%len(cuts)])*397) // pieces of 1 B to about 100 KiB
				if i > 16 {
					n = max(n, min(len(rest), 4096)) // past the first few, no tiny pieces (they only slow the fuzzer)
				}
			}
			if m, err := w.Write(rest[:n]); m != n || err != nil {
				t.Fatalf("write %d: %d, %v", n, m, err)
			}
			rest = rest[n:]
			if i == int(flushAfter) {
				w.Flush()
			}
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(&out), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read back %d of %d bytes (equal %v), %v", len(got), len(body), bytes.Equal(got, body), err)
		}
		if withLength && resp.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(body))
		}
	})
}
