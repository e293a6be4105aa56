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
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer answers each request read on a connection with the next canned response from
// answer(i), i counting requests over all connections; it counts accepted connections.
func rawServer(t *testing.T, answer func(i int, req *http.Request) (resp string, closeAfter bool)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns, reqs atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					resp, closeAfter := answer(int(reqs.Add(1))-1, req)
					io.WriteString(c, resp)
					if closeAfter {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

func h1Get(t *testing.T, c *h1Client, addr, method string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &h1Request{ctx: ctx, addr: addr, method: method, uri: "/", host: "x", header: http.Header{"X-A": {"1"}}}
	var buf bytes.Buffer
	status, _, _, err := c.fetch(req, &buf, 1<<20, nil, nil)
	return status, buf.String(), err
}

func TestH1ClientResponses(t *testing.T) {
	tests := []struct {
		name, method, resp string
		wantStatus         int
		wantBody           string
		reusable           bool
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", true},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", 200, "hello", true},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", 200, "hi", false},
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 200, "", true},
		{"no content", "GET", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", true},
		{"interim 100", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true},
		{"http/1.0 until close", "GET", "HTTP/1.0 200 OK\r\n\r\nuntil close", 200, "until close", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := rawServer(t, func(int, *http.Request) (string, bool) {
				return tc.resp, strings.Contains(tc.resp, "close") || strings.HasPrefix(tc.resp, "HTTP/1.0")
			})
			c := newH1Client(4, 64<<10)
			defer c.CloseIdle()
			for range 2 {
				status, body, err := h1Get(t, c, addr, tc.method)
				if err != nil {
					t.Fatal(err)
				}
				if status != tc.wantStatus || body != tc.wantBody {
					t.Fatalf("got %d %q", status, body)
				}
			}
			want := int64(2)
			if tc.reusable {
				want = 1
			}
			if n := conns.Load(); n != want {
				t.Errorf("%d connections for two requests, want %d", n, want)
			}
		})
	}
}

// A kept-alive connection that the executor closed while idle is retried on a fresh one.
func TestH1ClientRetriesStaleConnection(t *testing.T) {
	addr, conns := rawServer(t, func(i int, _ *http.Request) (string, bool) {
		// Keep-alive is announced, but the server hangs up right after answering.
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	c := newH1Client(4, 64<<10)
	defer c.CloseIdle()
	for i := range 3 {
		time.Sleep(20 * time.Millisecond) // let the server's close reach the idle connection
		if _, body, err := h1Get(t, c, addr, "GET"); err != nil || body != "ok" {
			t.Fatalf("request %d: %q %v", i, body, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

// Several idle connections went stale at once (the executor closed them all): the retry
// must dial instead of trying the next stale one.
func TestH1ClientRetryAfterManyStaleConnections(t *testing.T) {
	addr, conns := rawServer(t, func(i int, _ *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	c := newH1Client(8, 64<<10)
	defer c.CloseIdle()
	var wg sync.WaitGroup
	for range 3 { // three requests at once: three connections, then three idle ones
		wg.Go(func() {
			if _, body, err := h1Get(t, c, addr, "GET"); err != nil || body != "ok" {
				t.Errorf("warm-up: %q %v", body, err)
			}
		})
	}
	wg.Wait()
	time.Sleep(20 * time.Millisecond) // let the server's closes reach the idle connections
	if _, body, err := h1Get(t, c, addr, "GET"); err != nil || body != "ok" {
		t.Fatalf("after the idle connections went stale: %q %v (%d connections)", body, err, conns.Load())
	}
}

func TestH1ClientOversizedBodyIsNotReused(t *testing.T) {
	addr, conns := rawServer(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false
	})
	c := newH1Client(4, 64<<10)
	defer c.CloseIdle()
	for range 2 {
		req := &h1Request{ctx: context.Background(), addr: addr, method: "GET", uri: "/", host: "x"}
		var buf bytes.Buffer
		if _, _, n, err := c.fetch(req, &buf, 4, nil, nil); err != nil || n != 5 {
			t.Fatalf("n=%d err=%v, want 5 bytes (limit+1)", n, err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (a partly read connection must not be reused)", n)
	}
}

func TestH1RequestWire(t *testing.T) {
	tests := []struct {
		req  h1Request
		want string
	}{
		{h1Request{method: "GET", uri: "/a?b=1", host: "example.com", header: http.Header{"Accept": {"*/*"}, "Content-Length": {"9"}, "Host": {"evil"}}},
			"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"},
		{h1Request{method: "POST", uri: "/p", host: "h", body: []byte("abc")},
			"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"},
		{h1Request{method: "DELETE", uri: "/d", host: "h"},
			"DELETE /d HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := tc.req.write(bw); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("wrote %q, want %q", b.String(), tc.want)
		}
		// What was written parses back as the same request.
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b.Bytes())))
		if err != nil || r.Method != tc.req.method || r.Host != tc.req.host || r.RequestURI != tc.req.uri {
			t.Errorf("reparsed %v %v", r, err)
		}
	}
}

// The h1 client sends exactly the headers outboundHeader keeps for an http.RoundTripper.
func TestOutboundHeaders(t *testing.T) {
	r := &http.Request{Method: "GET", RemoteAddr: "192.0.2.7:4000", Header: http.Header{
		"Accept":            {"*/*"},
		"Accept-Encoding":   {"gzip"},
		"Connection":        {"keep-alive, X-Secret"},
		"X-Secret":          {"s"},
		"Keep-Alive":        {"5"},
		"Expect":            {"100-continue"},
		"If-None-Match":     {`"1"`},
		"Range":             {"bytes=0-1"},
		"X-Forwarded-For":   {"198.51.100.1", "198.51.100.2"},
		"Proxy-Connection":  {"x"},
		"Transfer-Encoding": {"chunked"},
		"X-Keep":            {"a", "b"},
	}}
	for _, voted := range []bool{true, false} {
		f := new(outFilter)
		f.reset(r, voted)
		want := http.Header{
			"Accept":          {"*/*"},
			"X-Keep":          {"a", "b"},
			"X-Forwarded-For": {"198.51.100.1, 198.51.100.2, 192.0.2.7"},
		}
		if !voted {
			want["If-None-Match"], want["Range"] = []string{`"1"`}, []string{"bytes=0-1"}
		}
		if got := outboundHeader(r, f); !reflect.DeepEqual(got, want) {
			t.Errorf("voted=%v: outboundHeader %v, want %v", voted, got, want)
		}
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := (&h1Request{method: "GET", uri: "/", host: "h", header: r.Header, filter: f}).write(bw); err != nil {
			t.Fatal(err)
		}
		got, err := http.ReadRequest(bufio.NewReader(&b))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Header, want) {
			t.Errorf("voted=%v: h1 client sent %v, want %v", voted, got.Header, want)
		}
	}
}
