package mimic

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\nAccept: */*\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
	"HEAD /x HTTP/1.1\r\nhost: [::1]:80\r\nconnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
	"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\n\n",
	"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
	"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
}

// Whatever the fast path accepts, net/http reads the same way.
func checkRequestHead(t *testing.T, raw string) bool {
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	br.Peek(1)
	head, ok, _ := readRequestHead(br, 4096, nil)
	if !ok {
		return false
	}
	r, closeAfter, ok := parseRequestHead(head)
	if !ok {
		return false
	}
	want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("%q: fast path accepted what net/http refuses: %v", raw, err)
	}
	want.Header.Del("Host")
	if r.Method != want.Method || r.RequestURI != want.RequestURI || r.Host != want.Host || *r.URL != *want.URL ||
		!reflect.DeepEqual(r.Header, want.Header) || closeAfter != want.Close || want.ContentLength != 0 {
		t.Fatalf("%q: fast %s %s %s %v close=%v; net/http %s %s %s %v close=%v", raw, r.Method, r.RequestURI, r.Host, r.Header, closeAfter,
			want.Method, want.RequestURI, want.Host, want.Header, want.Close)
	}
	return true
}

func TestRequestHeadAgreesWithNetHTTP(t *testing.T) {
	for i, raw := range requestSeeds {
		if got := checkRequestHead(t, raw); got != (i < 3) {
			t.Errorf("%q: fast path %v, want %v", raw, got, i < 3)
		}
	}
}

func FuzzRequestHead(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) { checkRequestHead(t, raw) })
}

// One connection: pipelined fast-path requests, then a POST that hands the connection to
// net/http mid-way; every answer arrives in order.
func TestFastPathAndHandoffOnOneConnection(t *testing.T) {
	bes, hits := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes, Routes: []Route{{Prefix: "/", Methods: []string{"POST"}, Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"+
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for i, method := range []string{"GET", "HEAD", "POST", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		want := "hello\n"
		if method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != 200 || string(body) != want || resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("response %d (%s): %d %q %v", i, method, resp.StatusCode, body, resp.Header)
		}
		if method == "HEAD" && resp.ContentLength != 6 {
			t.Errorf("HEAD: Content-Length %d, want the executors' 6", resp.ContentLength)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed after Connection: close: %v", err)
	}
	g.Wait()
	if n := hits.Load(); n != 3+3+1+3 {
		t.Errorf("%d executor requests, want 10", n)
	}
}

func TestFastWriterLikeNetHTTP(t *testing.T) {
	var w fastWriter
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	w.reset(false, bw)
	http.Error(&w, "nope", http.StatusForbidden)
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(&b), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || string(body) != "nope\n" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.ContentLength != 5 {
		t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
	}
	// No Content-Type: sniffed, like net/http; 304: no body, no length.
	w.reset(false, bw)
	w.Write([]byte("<html><body>x</body></html>"))
	b.Reset()
	w.finish()
	if !strings.Contains(b.String(), "Content-Type: text/html; charset=utf-8\r\n") {
		t.Errorf("not sniffed: %q", b.String())
	}
	w.reset(false, bw)
	w.Header().Set("Content-Length", "99")
	w.WriteHeader(http.StatusNotModified)
	w.Write([]byte("ignored"))
	b.Reset()
	w.finish()
	if s := b.String(); strings.Contains(s, "Content-Length") || strings.Contains(s, "ignored") {
		t.Errorf("304 with a body or length: %q", s)
	}
}

// Serve shuts the fast path down with the context: idle keep-alive connections are closed.
func TestServeShutsDownFastConnections(t *testing.T) {
	bes, _ := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(g, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection not closed: %v", err)
	}
	g.Close()
}

// The answer is written after the handler returns while a straggler is still being accounted
// for (and its pooled response recycled): the header must have been copied (run with -race).
func TestFastPathAnswerWithStraggler(t *testing.T) {
	var slow atomic.Int64
	bes, _ := startGoBackends(t, 3, func(w http.ResponseWriter, r *http.Request) {
		if slow.Add(1)%3 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		w.Header().Set("X-Fine", "yes")
		hello(w, r)
	})
	g, err := New(Options{Backends: bes})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	for i := range 30 {
		resp, err := cl.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello\n" || resp.Header.Get("X-Fine") != "yes" {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, resp.Header)
		}
	}
	g.Wait()
}

// writeVoted's direct path into a fastWriter answers exactly what the path through Header
// and WriteHeader answers (that one runs for any other ResponseWriter), and both build the
// head themselves: the executor's unvoted fields never reach the client.
func TestWriteVotedDirectLikeGeneric(t *testing.T) {
	win := &response{status: 200, body: []byte("<p>hello</p>"), rawSum: 12345, header: http.Header{
		"Content-Type": {"text/html"}, "Content-Length": {"12"}, "Connection": {"close"},
		"Keep-Alive": {"timeout=5"}, "X-A": {"1", "2"}, "Etag": {`"x"`}, "Date": {"Tue, 01 Dec 2026 05:00:00 GMT"},
		"Server": {"nginx/1.22.1"}, "X-Powered-By": {"PHP/8.2"}, "Last-Modified": {"Tue, 01 Dec 2026 05:00:00 GMT"},
	}}
	g := &Gateway{o: Options{ServerHeader: "proteus"}}
	g.initIdentity()
	answer := func(method string, direct bool) *http.Response {
		var w fastWriter
		var b bytes.Buffer
		w.reset(method == http.MethodHead, bufio.NewWriter(&b))
		var rw http.ResponseWriter = &w
		if !direct {
			rw = struct{ http.ResponseWriter }{&w} // hides the type: the generic path
		}
		c := &call{win: win}
		c.ballot.noise = newNoiseSet(nil, nil)
		g.writeVoted(rw, &http.Request{Method: method}, c)
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		if w.closeAfter {
			t.Errorf("%s direct=%v: the executor's Connection: close reached the client connection", method, direct)
		}
		resp, err := http.ReadResponse(bufio.NewReader(&b), &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		a := answer(method, true)
		for _, k := range []string{"X-Powered-By", "Last-Modified", "Keep-Alive"} {
			if v := a.Header.Get(k); v != "" {
				t.Errorf("%s: unvoted %s: %q reached the client", method, k, v)
			}
		}
		if a.Header.Get("Server") != "proteus" || a.Header.Get("Etag") != etagOf(12345) || a.Header.Get("Date") == win.header.Get("Date") {
			t.Errorf("%s: the gateway's own Server, ETag and Date missing: %v", method, a.Header)
		}
		b := answer(method, false)
		ab, _ := io.ReadAll(a.Body)
		bb, _ := io.ReadAll(b.Body)
		if a.StatusCode != b.StatusCode || !reflect.DeepEqual(a.Header, b.Header) || string(ab) != string(bb) || a.ContentLength != b.ContentLength {
			t.Errorf("%s: direct %d %v %q (%d), generic %d %v %q (%d)", method, a.StatusCode, a.Header, ab, a.ContentLength, b.StatusCode, b.Header, bb, b.ContentLength)
		}
		if a.Header.Get("Keep-Alive") != "" || a.ContentLength != 12 {
			t.Errorf("%s: hop-by-hop header forwarded or wrong length: %v, %d", method, a.Header, a.ContentLength)
		}
	}
}
