package mimic

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	tests := []struct {
		remote, want string
		ok           bool
	}{
		{"192.0.2.7:4000", "192.0.2.7", true},
		{"[::ffff:192.0.2.7]:4000", "192.0.2.7", true},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::", true},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::", true},
		{"[2001:db8:1:3::1]:443", "2001:db8:1:3::", true},
		{"pipe", "invalid IP", false},
	}
	g := &Gateway{}
	addr := func(remote string) netip.Addr {
		a, _ := g.clientOf(&http.Request{RemoteAddr: remote})
		return a
	}
	for _, tc := range tests {
		a := addr(tc.remote)
		ok := a.IsValid()
		k := a
		if ok {
			k = clientKey(a)
		}
		if ok != tc.ok || k.String() != tc.want {
			t.Errorf("clientKey(%q) = %v %v, want %s %v", tc.remote, k, ok, tc.want, tc.ok)
		}
	}
	l := newClientLimit(2)
	a, _ := l.acquire(addr("192.0.2.1:1"))
	b, _ := l.acquire(addr("192.0.2.1:2"))
	if _, ok := l.acquire(addr("192.0.2.1:3")); ok {
		t.Fatal("third request of one client admitted with a limit of 2")
	}
	if _, ok := l.acquire(addr("192.0.2.2:1")); !ok {
		t.Fatal("another client refused")
	}
	l.release(a)
	if _, ok := l.acquire(addr("192.0.2.1:3")); !ok {
		t.Fatal("refused after a release")
	}
	l.release(b)
	if n := l.n[netip.MustParseAddr("192.0.2.1")]; n != 1 {
		t.Fatalf("count %d after releases", n)
	}
}

// clientFrom returns an HTTP client whose connections come from local address ip (any
// 127.0.0.0/8 address is loopback on Linux, so two clients can be told apart).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// Connections that announce a body and never send it hold no request slot, and one client
// holds at most MaxPerClient requests at once, on the fast path and on net/http's alike.
func TestSlowBodiesTakeNoSlots(t *testing.T) {
	release := make(chan struct{})
	var served atomic.Int64 // executor requests of client B, which come to an end
	bes, _ := startGoBackends(t, 3, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		} else {
			defer served.Add(1)
		}
		hello(w, r)
	})
	g, err := New(Options{Backends: bes, MaxInFlight: 5, MaxPerClient: 8, BodyTimeout: time.Hour,
		Routes: []Route{{Methods: []string{"POST"}, Prefix: "/", Policy: PolicyVote}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{ReadTimeout: time.Hour})
	defer close(release)
	// Client A: four requests whose bodies never come (net/http's path) ...
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npart")
	}
	// ... and four GETs waiting for slow executors (the fast path), which do hold slots.
	a := clientFrom("127.0.0.1")
	for range 4 {
		go func() {
			if resp, err := a.Get("http://" + addr + "/slow"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	for {
		g.perClient.mu.Lock()
		n := g.perClient.n[netip.MustParseAddr("127.0.0.1")]
		g.perClient.mu.Unlock()
		if n == 8 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _ := get(t, a, "http://"+addr+"/"); code != http.StatusTooManyRequests {
		t.Fatalf("client A's ninth request: %d, want 429", code)
	}
	b := clientFrom("127.0.0.2")
	if code, body := get(t, b, "http://"+addr+"/"); code != 200 || body != "hello\n" {
		t.Fatalf("client B's GET: %d %q", code, body)
	}
	resp, err := b.Post("http://"+addr+"/upload", "text/plain", strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("client B's POST: %d", resp.StatusCode)
	}
	for served.Load() < 6 { // stragglers of the vote
		time.Sleep(5 * time.Millisecond)
	}
	if n := served.Load(); n != 6 {
		t.Fatalf("%d executor requests for client B's two voted requests, want 6", n)
	}
}

// A client that sends its body too slowly is answered 408 at BodyTimeout and disconnected,
// without any executor request.
func TestSlowBodyIsCutOffAtBodyTimeout(t *testing.T) {
	bes, hits := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes, BodyTimeout: 200 * time.Millisecond,
		Routes: []Route{{Methods: []string{"POST"}, Prefix: "/", Policy: PolicyVote}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{ReadTimeout: time.Hour})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute)) // a guard against a hang, not a bound
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection left open after the timeout: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d executor requests", n)
	}
}

// Request bodies being read take from the memory budget (nothing else bounds how many are read
// at once): over it, 503; a body that is given up frees its share.
func TestRequestBodiesShareTheMemoryBudget(t *testing.T) {
	bes, _ := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes, BodyTimeout: time.Hour, MemoryBudget: 32 << 10, SpoolThreshold: 4 << 10,
		Routes: []Route{{Methods: []string{"POST"}, Prefix: "/", Policy: PolicyVote}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{ReadTimeout: time.Hour})
	post := func(n int) int {
		resp, err := http.Post("http://"+addr+"/upload", "text/plain", strings.NewReader(strings.Repeat("x", n)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(10 << 10); code != 200 {
		t.Fatalf("a 10 KiB body alone: %d", code)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n"+strings.Repeat("y", 24<<10))
	for g.spool.mem.used.Load() < 24<<10 {
		time.Sleep(5 * time.Millisecond)
	}
	if code := post(10 << 10); code != http.StatusServiceUnavailable {
		t.Fatalf("a 10 KiB body while 24 KiB of another are held: %d, want 503", code)
	}
	c.Close()
	for g.spool.mem.used.Load() != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if code := post(10 << 10); code != 200 {
		t.Fatalf("after the held body was given up: %d", code)
	}
}

// dialFrom opens a connection to addr from local address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// One client holds at most MaxConnsPerClient connections open, idle ones included; the next
// is answered 429 and closed, other clients and trusted proxies are not affected, and a closed
// connection gives its place back.
func TestConnectionsPerClient(t *testing.T) {
	bes, _ := startGoBackends(t, 3, hello)
	g, err := New(Options{Backends: bes})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{MaxConnsPerClient: 3, ReadHeaderTimeout: time.Hour,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}})
	var held []net.Conn
	for range 3 {
		held = append(held, dialFrom(t, "127.0.0.1", addr)) // idle: no request sent
	}
	over := dialFrom(t, "127.0.0.1", addr)
	over.SetReadDeadline(time.Now().Add(time.Minute)) // a guard against a hang, not a bound
	if resp, err := http.ReadResponse(bufio.NewReader(over), nil); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth connection: %v %v, want 429", resp, err)
	}
	if code, body := get(t, clientFrom("127.0.0.2"), "http://"+addr+"/"); code != 200 || body != "hello\n" {
		t.Fatalf("another client: %d %q", code, body)
	}
	for range 5 { // a trusted proxy carries many clients
		c := dialFrom(t, "127.0.0.3", addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("trusted proxy's connection: %v %v", resp, err)
		}
	}
	held[0].Close()
	for {
		c := dialFrom(t, "127.0.0.1", addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if resp.StatusCode == 200 {
			break
		}
		time.Sleep(5 * time.Millisecond) // the server has yet to notice the close
	}
}
