package mimic

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// writeAnswerRaw runs writeVoted for win into a fastWriter, directly or through the generic
// ResponseWriter path, and parses what a client would read; with the head's bytes as they went out.
func writeAnswerRaw(t *testing.T, g *Gateway, method string, win *response, direct bool) (*http.Response, []byte, string) {
	t.Helper()
	var w fastWriter
	var b bytes.Buffer
	w.reset(method == http.MethodHead, bufio.NewWriter(&b))
	var rw http.ResponseWriter = &w
	if !direct {
		rw = struct{ http.ResponseWriter }{&w}
	}
	c := &call{win: win}
	c.ballot.noise = newNoiseSet(nil, nil)
	g.writeVoted(rw, &http.Request{Method: method}, c)
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	raw, _, _ := strings.Cut(b.String(), "\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(&b), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("unreadable answer %q: %v", b.String(), err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body, raw
}

// checkHeadOrder fails unless the fields of a raw head are in the gateway's one order: by name,
// then Connection: close and Transfer-Encoding: chunked when net/http would add them.
func checkHeadOrder(t *testing.T, raw string) {
	t.Helper()
	var names []string
	for _, line := range strings.Split(raw, "\r\n")[1:] {
		k, _, _ := strings.Cut(line, ":")
		names = append(names, k)
	}
	for len(names) > 0 && (names[len(names)-1] == "Transfer-Encoding" || names[len(names)-1] == "Connection") {
		names = names[:len(names)-1]
	}
	if !slices.IsSorted(names) {
		t.Fatalf("fields not in the gateway's order: %q", raw)
	}
}

// withoutDate is a raw head with its Date value blanked.
func withoutDate(raw string) string {
	i := strings.Index(raw, "\r\nDate: ")
	if i < 0 {
		return raw
	}
	j := strings.Index(raw[i+2:], "\r\n")
	if j < 0 {
		return raw[:i]
	}
	return raw[:i] + "\r\nDate: -" + raw[i+2+j:]
}

// The head builder: whatever an executor's header holds, the client gets only fields that
// took part in the vote, with their values, plus the gateway's own; the direct path into the
// fast writer and the generic one agree; boilerplate statuses get the gateway's page.
func FuzzAnswerHead(f *testing.F) {
	f.Add(200, "Content-Type: text/html\nX-A: 1\nServer: nginx\nEtag: \"x\"\nSet-Cookie: a=b", []byte("<p>hi</p>"), false)
	f.Add(404, "Content-Type: text/html\nSet-Cookie: s=evil\nLocation: http://evil/", []byte("<script>"), false)
	f.Add(301, "Location: http://127.0.0.1:8081/docs/", []byte("moved"), true)
	f.Add(204, "X-B: 2\nContent-Length: 5", []byte{}, false)
	f.Fuzz(func(t *testing.T, status int, head string, body []byte, isHead bool) {
		if status < 200 || status > 599 {
			return
		}
		h := http.Header{}
		for _, line := range strings.Split(head, "\n") {
			k, v, ok := strings.Cut(line, ":")
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			v = strings.TrimSpace(v)
			if !ok || !validName(k) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
				continue // what http.ReadResponse and parseHead refuse never comes from an executor
			}
			h[k] = append(h[k], v)
		}
		method := http.MethodGet
		if isHead {
			method = http.MethodHead
		}
		win := &response{status: status, header: h, body: body, rawSum: 99}
		if boilerplate(status, false) {
			win.statusOnly = true
			if vs := h["Location"]; len(vs) > 0 && status < 400 {
				win.location = relativeLocation(strings.Join(vs, ","), "gw.example", "", "/")
			}
		}
		g := &Gateway{o: Options{ServerHeader: "proteus"}}
		g.initIdentity()
		a, abody, araw := writeAnswerRaw(t, g, method, win, true)
		b, bbody, braw := writeAnswerRaw(t, g, method, win, false)
		checkHeadOrder(t, araw)
		if withoutDate(araw) != withoutDate(braw) {
			t.Fatalf("direct head %q, generic %q", araw, braw)
		}
		a.Header.Del("Date")
		b.Header.Del("Date")
		if a.StatusCode != b.StatusCode || !reflect.DeepEqual(a.Header, b.Header) || !bytes.Equal(abody, bbody) {
			t.Fatalf("direct %d %v %q, generic %d %v %q", a.StatusCode, a.Header, abody, b.StatusCode, b.Header, bbody)
		}
		keep := answerHeader{newNoiseSet(nil, nil)}
		own := []string{"Etag", "Server", "Content-Length"}
		if win.statusOnly {
			own = []string{"Server", "Content-Length", "Content-Type", "X-Content-Type-Options", "Location", "Date"}
		}
		for k, vs := range a.Header {
			if slices.Contains(own, k) || k == "Content-Type" && h[k] == nil { // sniffed from the voted body, as net/http does
				continue
			}
			if win.statusOnly || !keep.keep(k) || !reflect.DeepEqual(h[k], vs) {
				t.Fatalf("status %d: %s: %q reached the client (executor sent %q)", status, k, vs, h[k])
			}
		}
		switch {
		case win.statusOnly:
			if a.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !isHead && string(abody) != gatewayPage(status) {
				t.Fatalf("status %d: not the gateway's page: %v %q", status, a.Header, abody)
			}
			if l := a.Header.Get("Location"); l != win.location {
				t.Fatalf("Location %q, voted %q", l, win.location)
			}
		case a.Header.Get("Server") != "proteus" || a.Header.Get("Etag") != etagOf(99):
			t.Fatalf("gateway fields missing: %v", a.Header)
		case !isHead && bodyAllowed(status) && !bytes.Equal(abody, body):
			t.Fatalf("body %q, voted %q", abody, body)
		}
	})
}

func TestRelativeLocation(t *testing.T) {
	tests := []struct{ loc, host, exec, path, want string }{
		{"http://127.0.0.1:8081/docs/", "127.0.0.1:8080", "http://127.0.0.1:8081", "/docs", "/docs/"},
		{"http://gw.example/docs/?a=1", "gw.example:443", "", "/docs", "/docs/?a=1"},
		{"docs/", "gw.example", "", "/docs", "/docs/"},
		{"../up", "gw.example", "", "/a/b/c", "/a/up"},
		{"/abs", "gw.example", "", "/x", "/abs"},
		{"https://evil.example/", "gw.example", "http://127.0.0.1:1", "/", "https://evil.example/"},
		{"javascript:alert(1)", "gw.example", "", "/", "javascript:alert(1)"},
	}
	for _, tc := range tests {
		if got := relativeLocation(tc.loc, tc.host, tc.exec, tc.path); got != tc.want {
			t.Errorf("relativeLocation(%q) = %q, want %q", tc.loc, got, tc.want)
		}
	}
}

// The gateway's entity tags all have one length, so a response head's size says nothing of
// the body (nmap fingerprints a head's length too), and distinct sums give distinct tags.
func TestEtagOfHasOneLength(t *testing.T) {
	seen := map[string]uint64{}
	for _, sum := range []uint64{0, 1, 31, 32, 1 << 40, 1<<63 + 5, ^uint64(0)} {
		e := etagOf(sum)
		if len(e) != 16 || e[0] != '"' || e[1] != 'p' || e[15] != '"' {
			t.Errorf("etagOf(%d) = %s", sum, e)
		}
		if prior, dup := seen[e]; dup {
			t.Errorf("etagOf(%d) = etagOf(%d) = %s", sum, prior, e)
		}
		seen[e] = sum
		if !etagMatches(e, e) {
			t.Errorf("%s does not match itself", e)
		}
	}
}
