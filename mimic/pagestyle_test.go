package mimic

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/config"
)

// Hostile executors: each words its error pages its own way and names itself, in the body and
// in its head (what nginx, lighttpd and Go's net/http do).
func namingBackends(t *testing.T) Static {
	t.Helper()
	var all Static
	for _, name := range []string{"nginx/1.24.0", "lighttpd/1.4.76", "Go net/http (golang)"} {
		bes, _ := startGoBackends(t, 1, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Server", name)
			w.Header().Set("X-Powered-By", name)
			if s, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
				st, _ := strconv.Atoi(s)
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(st)
				fmt.Fprintf(w, "<center>%d</center><hr><center>%s</center>", st, name)
				return
			}
			hello(w, r)
		})
		bes[0].ID, bes[0].Variant = name, name
		all = append(all, bes...)
	}
	return all
}

// Must show (issue 14, obscuration follows the signal): the gateway's own pages for 400, 404,
// 405, 413, 414, 431, 500, 502 and 503 are those of the identity in force, so they change with
// the signal (m_H: a minimal modern page; m_L: an older stack's verbose page naming the
// presented Server), whether the gateway refused the request, net/http did, or executors that
// each word their pages their own way answered; no page or head names nginx, lighttpd or Go.
func TestPagesFollowSignal(t *testing.T) {
	ids := map[string]Identity{
		"mH": {Server: "Microsoft-IIS/10.0", Pages: StylePages(PagesModern, "Microsoft-IIS/10.0")},
		"mL": {Server: "Apache/2.2.15 (CentOS)", Pages: StylePages(PagesClassic, "Apache/2.2.15 (CentOS)")},
	}
	g, err := New(Options{Backends: namingBackends(t), Identities: ids, Signal: "mH", BodyLimit: 1024,
		Routes: []Route{{Prefix: "/", Methods: []string{"POST"}, Policy: PolicyVote}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startGateway(t, g, ServerOptions{Gateway: g, MaxHeaderBytes: 4096})
	reqs := map[int]string{
		400: "GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",                                          // the gateway refuses
		404: "GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n",                                   // the executors answer
		405: "TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",                                           // the gateway refuses
		413: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n",                    // over BodyLimit
		414: "GET /status/414 HTTP/1.1\r\nHost: x\r\n\r\n",                                   // the executors
		431: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", // net/http refuses
		500: "GET /status/500 HTTP/1.1\r\nHost: x\r\n\r\n",                                   // the executors
		502: "GET /status/502 HTTP/1.1\r\nHost: x\r\n\r\n",                                   // the executors
		503: "GET /status/503 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",              // the executors
	}
	seen := map[string]map[int]string{}
	check := func(sig string) {
		t.Helper()
		seen[sig] = map[int]string{}
		for _, st := range slices.Sorted(func(yield func(int) bool) {
			for k := range reqs {
				if !yield(k) {
					return
				}
			}
		}) {
			head, body := rawResponse(t, addr, reqs[st])
			g.Wait()
			h := headFields(head)
			want := string(ids[sig].Pages[st].Body)
			switch {
			case !strings.HasPrefix(head, "HTTP/1.1 "+strconv.Itoa(st)+" "):
				t.Errorf("%s, %d: got %q", sig, st, head)
			case body != want:
				t.Errorf("%s, %d: body %q, want the identity's page %q", sig, st, body, want)
			case h.Get("Server") != ids[sig].Server || h.Get("Content-Type") != "text/html; charset=utf-8":
				t.Errorf("%s, %d: head %q, want the identity's Server and the page's type", sig, st, head)
			}
			for _, leak := range []string{"nginx", "lighttpd", "Go ", "golang", "Powered"} {
				if strings.Contains(head+body, leak) {
					t.Errorf("%s, %d: %q names an implementation: %q %q", sig, st, leak, head, body)
				}
			}
			seen[sig][st] = body
		}
	}
	check("mH")
	if !g.SetSignal("mL") {
		t.Fatal("SetSignal(mL) refused")
	}
	check("mL")
	for st, b := range seen["mH"] {
		if seen["mL"][st] == b {
			t.Errorf("status %d: the same page under mH and mL (the pages ignore the signal): %q", st, b)
		}
	}
	if !strings.Contains(seen["mL"][404], "<address>Apache/2.2.15 (CentOS)</address>") || strings.Contains(seen["mH"][404], "IIS") {
		t.Errorf("mL's page does not name the presented server, or mH's does: %q / %q", seen["mL"][404], seen["mH"][404])
	}
}

// The config's page styles are mimic's, and FromConfig gives each identity its style's pages.
func TestPageStylesFromConfig(t *testing.T) {
	if !slices.Equal(config.GatewayPageStyles, PageStyles) {
		t.Fatalf("config.GatewayPageStyles %v != mimic.PageStyles %v", config.GatewayPageStyles, PageStyles)
	}
	o, _ := FromConfig(config.Gateway{Signal: "mH", Identities: map[string]config.GatewayIdentity{
		"mH": {Server: "a", Pages: "modern"}, "mL": {Server: "b", Pages: "classic"}, "m0": {Server: "c"}}})
	if len(o.Identities["m0"].Pages) != 0 || string(o.Identities["mH"].Pages[404].Body) != string(StylePages(PagesModern, "a")[404].Body) ||
		!strings.Contains(string(o.Identities["mL"].Pages[404].Body), "<address>b</address>") {
		t.Fatalf("FromConfig identities: %+v", o.Identities)
	}
	if StylePages(PagesClassic, "<script>")[404].Body == nil || strings.Contains(string(StylePages(PagesClassic, "<script>")[404].Body), "<script>") {
		t.Fatal("the classic page does not escape the Server value")
	}
}
