package mimic

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"testing"
)

var headSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200\r\ncontent-type: text/plain\r\nX-A:  a b \r\nX-A: c\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nEtag: \"1\"\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi",
	"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
}

// Whatever the fast path accepts, it reads exactly as http.ReadResponse does.
func checkParseHead(t *testing.T, raw string, forHead bool) bool {
	head, ok := bufferedHeadBytes([]byte(raw))
	if !ok {
		return false
	}
	h := http.Header{}
	status, length, closeAfter, ok, _ := parseHead(head, forHead, h, nil)
	if !ok {
		return false
	}
	method := http.MethodGet
	if forHead {
		method = http.MethodHead
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader([]byte(raw))), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: fast path accepted what net/http refuses: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || !reflect.DeepEqual(resp.Header, h) || resp.Close != closeAfter {
		t.Fatalf("%q: fast %d %v close=%v, net/http %d %v close=%v", raw, status, h, closeAfter, resp.StatusCode, resp.Header, resp.Close)
	}
	if int64(len(body)) != length && !(int64(len(body)) < length && len(raw)-len(head) < int(length)) {
		t.Fatalf("%q: fast length %d, net/http read %d", raw, length, len(body))
	}
	return true
}

func bufferedHeadBytes(b []byte) ([]byte, bool) {
	br := bufio.NewReaderSize(bytes.NewReader(b), 4096)
	br.Peek(1)
	return bufferedHead(br)
}

func TestParseHeadAgreesWithNetHTTP(t *testing.T) {
	want := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true}
	for i, raw := range headSeeds {
		got := checkParseHead(t, raw, false)
		if got != want[i] {
			t.Errorf("%q: fast path %v, want %v", raw, got, want[i])
		}
	}
	if !checkParseHead(t, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true) {
		t.Error("HEAD response with a length: not on the fast path")
	}
}

func FuzzParseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, raw string, forHead bool) {
		checkParseHead(t, raw, forHead)
	})
}

// The names canonicalName answers from its list are exactly what textproto makes of them.
func TestCanonicalNameAgreesWithTextproto(t *testing.T) {
	for _, n := range []string{"Content-Type", "Content-Length", "Date", "Server", "Last-Modified",
		"Connection", "Accept-Ranges", "Cache-Control", "Keep-Alive", "Vary", "Expires", "Host",
		"Accept", "User-Agent", "Accept-Encoding", "Accept-Language", "Etag", "ETag",
		"content-type", "x-custom", "X-Forwarded-For", "bad name", ""} {
		if got, want := canonicalName(n), textproto.CanonicalMIMEHeaderKey(n); got != want {
			t.Errorf("canonicalName(%q) = %q, textproto says %q", n, got, want)
		}
	}
}

func TestIndexCRLF(t *testing.T) {
	for _, c := range []struct {
		s    string
		from int
		want int
	}{
		{"ab\r\ncd\r\n", 0, 2},
		{"ab\r\ncd\r\n", 4, 6},
		{"ab\ncd\r\n", 0, -1}, // bare LF ends the first line
		{"\nab\r\n", 0, -1},   // bare LF at the start
		{"a\rb\r\n", 0, 3},    // bare CR inside: the callers refuse it
		{"abc", 0, -1},        // no end
		{"ab\r\n\r\n", 4, 4},  // blank line
		{"ab\r", 0, -1},
	} {
		if got := indexCRLF(c.s, c.from); got != c.want {
			t.Errorf("indexCRLF(%q, %d) = %d, want %d", c.s, c.from, got, c.want)
		}
	}
}

func TestBufferedHead(t *testing.T) {
	for _, c := range []struct{ in, head string }{
		{"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody", "HTTP/1.1 200 OK\r\nA: b\r\n\r\n"},
		{"HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nA: b\r\n", ""},                             // not all buffered
		{"HTTP/1.1 200 OK\nA: b\n\r\nx", "HTTP/1.1 200 OK\nA: b\n\r\n"}, // bare LFs: parseHead refuses it
		{"HTTP/1.1 200 OK\r\nA: \r\r\n\r\n", "HTTP/1.1 200 OK\r\nA: \r\r\n\r\n"},
	} {
		head, ok := bufferedHeadBytes([]byte(c.in))
		if string(head) != c.head || ok != (c.head != "") {
			t.Errorf("bufferedHead(%q) = %q, %v; want %q", c.in, head, ok, c.head)
		}
	}
}

func TestPlainHTTPHost(t *testing.T) {
	for _, c := range []struct {
		url, host string
		ok        bool
	}{
		{"http://127.0.0.1:8081", "127.0.0.1:8081", true},
		{"http://127.0.0.1:8081/", "127.0.0.1:8081", true},
		{"http://exec-1:80", "exec-1:80", true},
		{"https://127.0.0.1:8081", "", false},
		{"http://[::1]:8081", "", false}, // brackets: parsed the slow way
		{"http://u@h:1", "", false},
		{"http://h:1/path", "", false},
		{"http://h:1?q", "", false},
		{"http://h%31:1", "", false},
		{"http://", "", false},
	} {
		if host, ok := plainHTTPHost(c.url); host != c.host || ok != c.ok {
			t.Errorf("plainHTTPHost(%q) = %q, %v; want %q, %v", c.url, host, ok, c.host, c.ok)
		}
	}
}
