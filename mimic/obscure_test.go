package mimic

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawResponse writes req on a fresh connection and reads one response, head and body.
func rawResponse(t *testing.T, addr, req string) (head string, body string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails instead of blocking the run
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var h strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%q: head cut off after %q: %v", req[:min(len(req), 40)], h.String(), err)
		}
		if line == "\r\n" {
			break
		}
		h.WriteString(line)
	}
	head = strings.TrimSuffix(h.String(), "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(h.String()+"\r\n")), nil)
	if err != nil {
		t.Fatalf("unreadable head %q: %v", head, err)
	}
	if resp.ContentLength > 0 {
		b := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatalf("body of %q: %v", head, err)
		}
		body = string(b)
	}
	return head, body
}

// headFields returns the fields of a raw head as a header.
func headFields(head string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, _ := strings.Cut(line, ":")
		h.Add(k, strings.TrimSpace(v))
	}
	return h
}

// Everything the gateway answers itself, whether it refused the request or net/http did
// before any handler saw it, is the gateway's own page for the status, with the identity's
// Server, in one order of fields: never net/http's "400 Bad Request" without a Date, which
// names Go to a scanner.
func TestRefusalsAreTheGatewaysPages(t *testing.T) {
	var mu sync.Mutex
	var hostless []string
	bes, hits := startGoBackends(t, 3, func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" {
			mu.Lock()
			hostless = append(hostless, r.URL.Path)
			mu.Unlock()
		}
		if r.URL.Path == "/missing" {
			w.Header().Set("Server", "leaky/1.0")
			http.Error(w, "Go's own 404 page", http.StatusNotFound)
			return
		}
		hello(w, r)
	})
	page404 := Page{ContentType: "text/html", Body: []byte("<h1>Not here</h1>")}
	g, err := New(Options{Backends: bes, ServerHeader: "Apache", Pages: map[int]Page{404: page404}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{Gateway: g, MaxHeaderBytes: 4096})
	tests := []struct {
		name, req string
		status    int
		executors bool
	}{
		{"blank lines (nmap GenericLines)", "\r\n\r\n", 400, false},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400, false},
		{"unknown version", "GET / HTTP/2.5\r\nHost: x\r\n\r\n", 505, false},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, false},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", 431, false},
		{"obsolete folding", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n", 400, false},
		{"NUL in the path", "GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, false},
		{"TRACE", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, false},
		{"unknown method", "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 501, false},
		{"POST nobody routes", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, false},
		{"OPTIONS (nmap HTTPOptions)", "OPTIONS / HTTP/1.0\r\n\r\n", 200, false},
		{"missing page, HTTP/1.1", "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", 404, true},
		{"missing page, HTTP/1.0 without Host", "GET /missing HTTP/1.0\r\n\r\n", 404, true},
		{"HTTP/1.0 without Host (nmap GetRequest)", "GET / HTTP/1.0\r\n\r\n", 200, true},
	}
	own := []string{"Allow", "Connection", "Content-Length", "Content-Type", "Date", "Etag", "Server", "X-Content-Type-Options"}
	for _, tc := range tests {
		head, body := rawResponse(t, addr, tc.req)
		g.Wait()
		reached := hits.Swap(0) > 0
		h := headFields(head)
		switch {
		case !strings.HasPrefix(head, "HTTP/1.") || head[9:12] != strconv.Itoa(tc.status):
			t.Errorf("%s: %q, want status %d", tc.name, head, tc.status)
		case h.Get("Server") != "Apache" || h.Get("Date") == "":
			t.Errorf("%s: not the gateway's head (Server, Date): %q", tc.name, head)
		case reached != tc.executors:
			t.Errorf("%s: executors reached: %v, want %v", tc.name, reached, tc.executors)
		}
		checkHeadOrder(t, head)
		for k := range h {
			if !slices.Contains(own, k) {
				t.Errorf("%s: field %s is not the gateway's: %q", tc.name, k, head)
			}
		}
		switch {
		case tc.status == 404 && (body != string(page404.Body) || h.Get("Content-Type") != "text/html"):
			t.Errorf("%s: not the configured page: %q %q", tc.name, head, body)
		case tc.status >= 400 && tc.status != 404 && body != gatewayPage(tc.status):
			t.Errorf("%s: body %q, want the gateway's page %q", tc.name, body, gatewayPage(tc.status))
		case tc.status == 200 && tc.name[:7] == "OPTIONS" && (h.Get("Allow") != "GET, HEAD, OPTIONS" || body != ""):
			t.Errorf("%s: %q %q", tc.name, head, body)
		case strings.Contains(body, "Go's own") || bytes.Contains([]byte(head), []byte("leaky")):
			t.Errorf("%s: the executor's page reached the client: %q %q", tc.name, head, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hostless) > 0 {
		t.Errorf("executors got requests without Host (each answers those its own way): %v", hostless)
	}
}

// netHTTPError recognizes exactly net/http's own refusals.
func TestNetHTTPError(t *testing.T) {
	for _, tc := range []struct {
		p      string
		status int
	}{
		{"HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request", 400},
		{"HTTP/1.1 400 Bad Request: missing required Host header" + netHTTPErrorHeaders + "400 Bad Request: missing required Host header", 400},
		{"HTTP/1.1 431 Request Header Fields Too Large" + netHTTPErrorHeaders + "431 Request Header Fields Too Large", 431},
		{"HTTP/1.1 200 OK" + netHTTPErrorHeaders + "hi", 0},
		{"HTTP/1.1 404 Not Found\r\nDate: x" + netHTTPErrorHeaders, 0},
		{"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nDate: x\r\n\r\n", 0},
		{"", 0},
	} {
		st, ok := netHTTPError([]byte(tc.p))
		if st != tc.status || ok != (tc.status != 0) {
			t.Errorf("netHTTPError(%q) = %d %v, want %d", tc.p, st, ok, tc.status)
		}
	}
}

// The identity follows the signal: Server value and pages switch, for voted answers and the
// gateway's refusals alike; a signal without an identity changes nothing.
func TestIdentityFollowsSignal(t *testing.T) {
	bes, _ := startGoBackends(t, 3, hello)
	ids := map[string]Identity{
		"m_H": {Server: "nginx-hardened"},
		"m_L": {Server: "Apache/2.2.3 (CentOS)", Pages: map[int]Page{405: {ContentType: "text/html", Body: []byte("<title>405 Method Not Allowed</title>")}}},
	}
	g, err := New(Options{Backends: bes, Identities: ids, Signal: "m_H"})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{Gateway: g})
	check := func(signal string) {
		t.Helper()
		for _, req := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.0\r\n\r\n", "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n"} {
			head, body := rawResponse(t, addr, req)
			if s := headFields(head).Get("Server"); s != ids[signal].Server {
				t.Errorf("signal %s, %q: Server %q, want %q", signal, req, s, ids[signal].Server)
			}
			if pg, ok := ids[signal].Pages[405]; ok && strings.HasPrefix(req, "TRACE") && body != string(pg.Body) {
				t.Errorf("signal %s: TRACE got %q, want the identity's page", signal, body)
			}
		}
	}
	check("m_H")
	if !g.SetSignal("m_L") || g.Signal() != "m_L" {
		t.Fatal("SetSignal(m_L) refused")
	}
	check("m_L")
	if g.SetSignal("m_X") || g.Signal() != "m_L" {
		t.Fatal("a signal without an identity was taken")
	}
	check("m_L")
}

// What would let a header be injected or the start presented nothing defined is refused.
func TestIdentityValidation(t *testing.T) {
	bes := Static{{ID: "a", Addr: "http://127.0.0.1:1"}}
	for name, o := range map[string]Options{
		"server with CRLF": {ServerHeader: "x\r\nSet-Cookie: a=b"},
		"identity CRLF":    {Identities: map[string]Identity{"m_H": {Server: "a\nb"}}, Signal: "m_H"},
		"page type CRLF":   {Pages: map[int]Page{404: {ContentType: "text/html\r\nX: y"}}},
		"unknown status":   {Pages: map[int]Page{299: {}}},
		"signal unknown":   {Identities: map[string]Identity{"m_H": {}}, Signal: "m_Q"},
		"route page":       {Routes: []Route{{Prefix: "/a", Pages: map[int]Page{42: {}}}}},
	} {
		o.Backends = bes
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
