package mimic

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startGoBackends starts n counting net/http servers that all serve the same content.
func startGoBackends(t *testing.T, n int, h http.HandlerFunc) (Static, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	var s Static
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			h(w, r)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		s = append(s, Backend{ID: "g" + string(rune('1'+i)), Variant: "go", Addr: "http://" + ln.Addr().String()})
	}
	return s, &hits
}

func hello(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "hello\n")
}

// startGateway serves g on a loopback port with so and returns its address.
func startGateway(t *testing.T, g *Gateway, so ServerOptions) string {
	t.Helper()
	srv, err := NewServer(g, so)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go Serve(ctx, srv, ln)
	t.Cleanup(func() { cancel(); srv.Close(); g.Close() })
	return ln.Addr().String()
}

// rawExchange writes req on a fresh connection and returns the status line (or "" when the
// server closed the connection without answering).
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return ""
	}
	return strings.TrimSpace(line)
}

func TestBadInputNeverReachesExecutors(t *testing.T) {
	bes, hits := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes, BodyLimit: 1024, Routes: []Route{{Prefix: "/", Methods: []string{"POST"}, Policy: PolicySingle}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{MaxHeaderBytes: 4096})
	// A head of exactly the limit passes, one byte more is refused: net/http alone would
	// allow 4 KiB more.
	exact := func(n int) string {
		head := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
		return head + strings.Repeat("p", n-len(head)-2) + "\r\n\r\n"
	}

	got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	g.Wait()
	if got != "HTTP/1.1 200 OK" || hits.Load() != 3 {
		t.Fatalf("good request: %q, %d executor hits", got, hits.Load())
	}
	hits.Store(0)
	big := strings.Repeat("a", 8192)
	cases := []struct {
		name, req, want string
	}{
		{"content-length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400"},
		{"two content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "HTTP/1.1 400"},
		{"bad content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", "HTTP/1.1 400"},
		{"unknown transfer-encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501"},
		{"invalid method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405"},
		{"trace", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", "HTTP/1.1 400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", "HTTP/1.1 431"},
		{"http/1.0 with chunked", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n" +
			"1c\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n", "HTTP/1.0 400"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "HTTP/1.1 400"},
		{"head one over the limit", exact(4097), "HTTP/1.1 431"},
		{"head 4 KiB over the limit", exact(4096 + 4000), "HTTP/1.1 431"},
		{"encoded slash", "GET /a%2F..%2Fsecret HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"encoded backslash", "GET /a%5c..%5csecret HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"encoded NUL", "GET /secret.txt%00.html HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"bad percent-encoding", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"put without a route", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", "HTTP/1.1 405"},
		{"unknown method", "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 501"},
		{"oversized body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + strings.Repeat("b", 4096), "HTTP/1.1 413"},
		{"oversized chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("b", 4096) + "\r\n0\r\n\r\n", "HTTP/1.1 413"},
	}
	if got := rawExchange(t, addr, exact(4096)); got != "HTTP/1.1 200 OK" {
		t.Fatalf("a head of exactly the limit: %q", got)
	}
	g.Wait()
	hits.Store(0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, addr, tc.req)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if n := hits.Swap(0); n != 0 {
				t.Errorf("%d requests reached executors", n)
			}
		})
	}
}

func TestSlowClientIsCutOffBeforeFanOut(t *testing.T) {
	bes, hits := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{ReadHeaderTimeout: 100 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	// Slowloris: half a request line, then nothing. The server must close the connection.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	rest, err := io.ReadAll(c) // returns when the server closes
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if strings.Contains(string(rest), "200 OK") || hits.Load() != 0 {
		t.Fatalf("slow client reached executors: %q, %d hits", rest, hits.Load())
	}
	// A slow body: headers complete, body never finishes.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
	rest, _ = io.ReadAll(c2)
	if strings.Contains(string(rest), "200 OK") || hits.Load() != 0 {
		t.Fatalf("slow body reached executors: %q, %d hits", rest, hits.Load())
	}
}

// A kept-alive connection waits IdleTimeout for its next request, but a request head that
// then trickles in is bounded by ReadHeaderTimeout, as on a fresh connection.
func TestSlowClientOnKeptAliveConnection(t *testing.T) {
	bes, hits := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: time.Hour})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	g.Wait() // the third executor may still be answering the first request
	before := hits.Load()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	c.SetReadDeadline(time.Now().Add(time.Minute)) // hang guard: far below IdleTimeout
	rest, err := io.ReadAll(br)                    // returns when the server closes
	if err != nil {
		t.Fatalf("the server kept the trickling connection open: %v", err)
	}
	if len(rest) > 0 || hits.Load() != before {
		t.Fatalf("slow second request reached executors: %q, %d hits", rest, hits.Load()-before)
	}
}

func TestBlockedClientGets403WithoutFanOut(t *testing.T) {
	bes, hits := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes, Blocklist: blockLoopback{}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{})
	if got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); got != "HTTP/1.1 403 Forbidden" || hits.Load() != 0 {
		t.Fatalf("blocked client: %q, %d hits", got, hits.Load())
	}
}

type blockLoopback struct{}

func (blockLoopback) Blocked(a netip.Addr) bool { return a.IsLoopback() }
