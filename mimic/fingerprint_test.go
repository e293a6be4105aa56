package mimic

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/internal/nmaptest"
)

// Must show (issue 14, obscuration): `nmap -sV` and `whatweb` against the gateway over real
// nginx, lighttpd and net/http executors give the same result whichever executor answered, and
// cannot name nginx, lighttpd or Go; the same tools against the executors directly do name them,
// so the test can fail. The Go executor lies as a compromised one would: it adds headers naming
// itself (Server, X-Powered-By, X-Backend-Server, X-Generator, an ETag in its own format) to
// every answer.

// leaky is the Go executor's wrapper: every answer carries fields naming it.
func leaky(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Powered-By", "Go/1.26 net/http")
		hd.Set("X-Backend-Server", "go-1.executor.internal")
		hd.Set("X-Generator", "golang")
		hd.Set("Via", "1.1 go-nethttp")
		h.ServeHTTP(w, r)
	})
}

// namesImplementation finds what would name an executor's software in a tool's report.
var namesImplementation = regexp.MustCompile(`(?i)nginx|lighttpd|golang|\bgo\b|go-|net/http|x-powered|x-backend|x-generator`)

func TestScannersCannotNameTheExecutors(t *testing.T) {
	for _, tool := range []string{"nmap", "whatweb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs it)", tool)
		}
	}
	trio := startServerTrio(t, leaky)
	gob, ng, lt := trio.bes[0], trio.bes[1], trio.bes[2]
	targets := map[string]string{ // name -> host:port
		"nginx": strings.TrimPrefix(ng.Addr, "http://"), "lighttpd": strings.TrimPrefix(lt.Addr, "http://"),
		"go": strings.TrimPrefix(gob.Addr, "http://"),
	}
	gateways := []string{"gw-go", "gw-nginx", "gw-lighttpd", "gw-voted"}
	for _, name := range gateways {
		bes := map[string]Static{"gw-go": {gob}, "gw-nginx": {ng}, "gw-lighttpd": {lt}, "gw-voted": {gob, ng, lt}}[name]
		o := Options{Backends: bes}
		if len(bes) == 1 {
			o.K = 1 // that executor answers everything
		}
		g, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		targets[name] = startGateway(t, g, ServerOptions{Gateway: g})
	}

	var wg sync.WaitGroup
	var nm map[string]string
	wg.Add(1)
	go func() { defer wg.Done(); nm = nmapReport(t, targets) }()
	ww := map[string]string{}
	var mu sync.Mutex
	for name, addr := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := whatwebReport(t, addr)
			mu.Lock()
			ww[name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Directly, each executor is named: the test can tell.
	for name, want := range map[string]string{"nginx": "nginx", "lighttpd": "lighttpd", "go": "golang"} {
		if !strings.Contains(strings.ToLower(nm[name]), want) {
			t.Errorf("nmap -sV does not name the %s executor directly: %q", name, nm[name])
		}
	}
	for name, want := range map[string]string{"nginx": "nginx", "lighttpd": "lighttpd", "go": "go"} {
		if !strings.Contains(strings.ToLower(ww[name]), want) {
			t.Errorf("whatweb does not name the %s executor directly: %q", name, ww[name])
		}
	}
	// Through the gateway: nothing named, and one result whichever executor answered.
	for _, name := range gateways {
		for tool, rep := range map[string]string{"nmap -sV": nm[name], "whatweb": ww[name]} {
			if m := namesImplementation.FindString(rep); m != "" {
				t.Errorf("%s through %s names %q:\n%s", tool, name, m, rep)
			}
			if rep == "" {
				t.Errorf("%s through %s reported nothing", tool, name)
			}
		}
		if nm[name] != nm["gw-voted"] {
			t.Errorf("nmap -sV tells %s from gw-voted:\n%s\n---\n%s", name, nm[name], nm["gw-voted"])
		}
		if ww[name] != ww["gw-voted"] {
			t.Errorf("whatweb tells %s from gw-voted:\n%s\n---\n%s", name, ww[name], ww["gw-voted"])
		}
	}
	t.Logf("nmap -sV through the gateway: %s", nm["gw-voted"])
	t.Logf("whatweb through the gateway: %s", ww["gw-voted"])
}

// nmapReport runs one `nmap -sV` over every target and returns, per target, its version column
// and the responses nmap fingerprinted (for a service it did not recognize), with what differs
// between any two runs of one server blanked: the port, the date, the time, entity tags.
func nmapReport(t *testing.T, targets map[string]string) map[string]string {
	t.Helper()
	byPort := map[string]string{}
	var ports []string
	for name, a := range targets {
		_, p, _ := net.SplitHostPort(a)
		byPort[p] = name
		ports = append(ports, p)
	}
	slices.Sort(ports)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // guards a hang only
	defer cancel()
	out, err := nmaptest.ServiceScan(ctx, "127.0.0.1", ports)
	if err != nil {
		t.Errorf("nmap: %v\n%s", err, out)
		return nil
	}
	t.Logf("nmap -sV:\n%s", out)
	rep := map[string]string{}
	line := regexp.MustCompile(`(?m)^(\d+)/tcp\s+open\s+(.*)$`)
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		svc := strings.Join(strings.Fields(m[2]), " ")
		if !strings.Contains(svc, " ") && strings.HasSuffix(svc, "?") {
			// nmap recognized nothing and guessed from the port number (its services table:
			// port 40023 is "k-patentssensor"): the port is random, not the server
			svc = "unknown"
		}
		rep[byPort[m[1]]] = svc
	}
	// Fingerprints: lines "SF-Port<port>-TCP:V=..." then "SF:..." continuations.
	var cur string
	fp := map[string]*strings.Builder{}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "SF-Port"):
			p, _, _ := strings.Cut(strings.TrimPrefix(l, "SF-Port"), "-")
			cur = byPort[p]
			fp[cur] = &strings.Builder{}
			_, rest, _ := strings.Cut(l, "%r(")
			fp[cur].WriteString("%r(" + rest)
		case strings.HasPrefix(l, "SF:") && cur != "":
			fp[cur].WriteString(strings.TrimPrefix(l, "SF:"))
		default:
			cur = ""
		}
	}
	blank := regexp.MustCompile(`Date:\\x20.*?\\x20GMT|Etag:\\x20\\"[^\\]*\\"`)
	for name, b := range fp {
		rep[name] += "\n" + blank.ReplaceAllString(b.String(), "-")
	}
	return rep
}

// whatwebReport runs `whatweb -a 3` (aggressive) against addr and returns the plugins it
// found with their findings, without those naming the target itself (IP, country).
func whatwebReport(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // guards a hang only
	defer cancel()
	logf := filepath.Join(t.TempDir(), "whatweb.json")
	out, err := exec.CommandContext(ctx, "whatweb", "--color=never", "--no-errors", "-a", "3", "--log-json="+logf, "http://"+addr+"/").CombinedOutput()
	if err != nil {
		t.Errorf("whatweb %s: %v\n%s", addr, err, out)
		return ""
	}
	data, err := os.ReadFile(logf)
	if err != nil {
		t.Errorf("whatweb %s: %v", addr, err)
		return ""
	}
	var recs []struct {
		Status  int                        `json:"http_status"`
		Plugins map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		t.Errorf("whatweb %s: its log %q: %v", addr, data, err)
		return ""
	}
	var parts []string
	for _, r := range recs {
		for p, v := range r.Plugins {
			if p == "IP" || p == "Country" {
				continue
			}
			parts = append(parts, fmt.Sprintf("%d %s%s", r.Status, p, v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}
