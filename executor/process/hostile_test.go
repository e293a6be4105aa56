package process_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/executor/process/processtest"
	"github.com/proteus-defense/proteus/mimic"
)

// poolBackends shows the pool's healthy executors to the voting gateway.
type poolBackends struct{ p *executor.Pool }

func (b poolBackends) Backends() []mimic.Backend {
	var out []mimic.Backend
	for _, inst := range b.p.Healthy() {
		out = append(out, mimic.Backend{ID: inst.ID, Variant: inst.Variant, Addr: "http://" + inst.Address, Traits: inst.Traits})
	}
	return out
}

// hostileFixture is an agent in miniature: a data dir with an API token, a stand-in for the
// agent's API on loopback, a pool of two demo executors and one hostile one behind the
// mimic voting gateway (k=3), everything on one bus.
type hostileFixture struct {
	data, img, token string
	api, outside     string // addresses: the agent's API, and some other service
	pool             *executor.Pool
	isolation        string // the driver's description: what this machine allows
	gw               *httptest.Server
	denied           <-chan bus.Event
	bus              *bus.Bus
}

func newHostileFixture(t *testing.T, outbound bool) *hostileFixture {
	t.Helper()
	needRoot(t)
	// The data dir outside /tmp (as /var/lib/proteus would be): hidden by its own mount,
	// not by the executor's private /tmp.
	data, err := os.MkdirTemp("/run", "proteus-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	f := &hostileFixture{data: data, img: processtest.Image(t)}
	f.token = filepath.Join(f.data, "api.token")
	if err := os.WriteFile(f.token, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []*string{&f.api, &f.outside} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("an executor reached %s %s", r.Host, r.URL)
		}))
		t.Cleanup(srv.Close)
		*addr = srv.Listener.Addr().String()
	}
	b := bus.New()
	f.bus = b
	f.denied, _ = b.Subscribe(64, bus.KindPrefix(executor.EventDenied))
	d := newIsolated(t, f.data, b)
	f.isolation = d.Isolation()
	hostile := processtest.Spec("hostile", f.img, processtest.Hostile)
	hostile.AllowOutbound = outbound
	pool, err := executor.NewPool(executor.PoolConfig{
		Variants: []executor.Spec{processtest.DemoSpec("go-nethttp", f.img, "nethttp"), processtest.DemoSpec("go-fasthttp", f.img, "fasthttp"), hostile},
		Desired:  3, MaxConcurrent: 1, HealthInterval: 50 * time.Millisecond, HealthTimeout: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: time.Second, StartTimeout: 30 * time.Second,
	}, map[string]executor.Driver{process.ID: d}, slog.New(slog.DiscardHandler), b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(context.Background()) })
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.pool = pool
	gw, err := mimic.New(mimic.Options{Backends: poolBackends{pool}, Bus: b, K: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.gw = httptest.NewServer(gw)
	t.Cleanup(f.gw.Close)
	return f
}

// member returns the healthy instance of variant, waiting for the pool to bring one up
// (other than not, when set).
func (f *hostileFixture) member(t *testing.T, variant, not string) *executor.Instance {
	t.Helper()
	for range 3000 {
		for _, inst := range f.pool.Healthy() {
			if inst.Variant == variant && inst.ID != not {
				return inst
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no healthy %s (other than %q)", variant, not)
	return nil
}

// attack asks the hostile executor to try what; it returns its report, or "" when the
// executor died before answering.
func (f *hostileFixture) attack(t *testing.T, inst *executor.Instance, what string, args ...string) string {
	t.Helper()
	q := url.Values{"what": {what}}
	for i := 0; i+1 < len(args); i += 2 {
		q.Set(args[i], args[i+1])
	}
	resp, err := http.Get("http://" + inst.Address + "/attack?" + q.Encode())
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	return string(body)
}

// voted checks that the gateway answers with the demo site's voted page.
func (f *hostileFixture) voted(t *testing.T) {
	t.Helper()
	resp, err := http.Get(f.gw.URL + "/")
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Proteus demo shop") {
		t.Fatalf("gateway answered %d %.80q", resp.StatusCode, body)
	}
}

// evidence waits for the EventDenied about inst. The bound only turns a missing event into
// a failure that says so instead of the test binary's timeout.
func (f *hostileFixture) evidence(t *testing.T, inst *executor.Instance) bus.Event {
	t.Helper()
	guard := time.NewTimer(2 * time.Minute)
	defer guard.Stop()
	for {
		select {
		case e := <-f.denied:
			if e.Subject == inst.ID {
				return e
			}
			t.Logf("denial of another executor: %+v", e)
		case <-guard.C:
			t.Fatalf("no %s event for %s", executor.EventDenied, inst.ID)
		}
	}
}

func fileSum(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// evidenceNeeds is what the driver must have found on this machine for an evidence reason.
var evidenceNeeds = map[string]string{"network": "nftables", "seccomp": "seccomp", "processes": "pids", "memory": "memory",
	"file": "fanotify tripwires", "signal": "signal watch"}

// seenByAudit are the cases whose evidence comes from the kernel's audit records.
var seenByAudit = map[string]bool{"write a world-writable dir": true, "write /etc": true}

// TestCompromisedExecutor is the must-show: an executor that behaves as a
// compromised one tries, one case at a time, what an intruder would. Every attempt fails,
// the voting gateway keeps answering throughout, and each attempt the kernel can see ends
// as evidence on the bus (EventDenied); the pool then replaces the executor from its
// known-good image and the work dir of the killed one is kept for forensics.
func TestCompromisedExecutor(t *testing.T) {
	f := newHostileFixture(t, false)
	sibling := f.member(t, "go-nethttp", "")
	siblingPage := filepath.Join(sibling.WorkDir, "site", "index.html")
	before := map[string][]byte{siblingPage: fileSum(t, siblingPage), f.token: fileSum(t, f.token),
		filepath.Join(f.img, process.ManifestName): fileSum(t, filepath.Join(f.img, process.ManifestName)),
		filepath.Join(f.img, "site", "index.html"): fileSum(t, filepath.Join(f.img, "site", "index.html"))}

	// A directory anyone may write to, outside every private mount: only Landlock keeps the
	// executor out of it.
	open, err := os.MkdirTemp("/run", "proteus-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		what   string
		args   []string
		reason string // EventDenied reason; "" when nothing the kernel refused can be seen
	}{
		{"read api.token", "read", []string{"path", f.token}, "file"},
		{"read the image", "read", []string{"path", filepath.Join(f.img, process.ManifestName)}, "file"},
		{"write a sibling's work dir", "write", []string{"path", siblingPage}, "file"},
		{"write the image manifest", "write", []string{"path", filepath.Join(f.img, process.ManifestName)}, "file"},
		{"write the image", "write", []string{"path", filepath.Join(f.img, "site", "index.html")}, "file"},
		{"write a world-writable dir", "write", []string{"path", filepath.Join(open, "x")}, "file"},
		{"write /etc", "write", []string{"path", "/etc/proteus-hostile"}, "file"},
		{"signal the agent", "signal", []string{"pid", strconv.Itoa(os.Getpid())}, "signal"},
		{"call the agent's API", "connect", []string{"addr", f.api}, "network"},
		// The sandbox's host name is localhost (which /etc/hosts resolves): by that name the
		// agent is no nearer.
		{"call the agent's API by the name localhost", "connect", []string{"addr", strings.Replace(f.api, "127.0.0.1", "localhost", 1)}, "network"},
		{"outbound connection", "connect", []string{"addr", f.outside}, "network"},
		{"connect to a sibling, past the vote", "connect", []string{"addr", sibling.Address}, "network"},
		{"ptrace", "ptrace", nil, "seccomp"},
		{"mount", "mount", nil, "seccomp"},
		{"fork without bound", "fork", nil, "processes"},
		{"allocate without bound", "alloc", nil, "memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inst := f.member(t, "hostile", "")
			report := f.attack(t, inst, c.what, c.args...)
			t.Logf("%s: %q", inst.ID, report)
			if strings.HasPrefix(report, "SUCCEEDED") {
				t.Fatalf("the attack succeeded: %s", report)
			}
			if c.reason == "" {
				if !strings.HasPrefix(report, "refused: ") {
					t.Fatalf("report %q, want a refusal", report)
				}
				f.voted(t)
				return
			}
			need := evidenceNeeds[c.reason]
			if seenByAudit[c.name] {
				need = "audit" // Landlock's refusals outside the hidden directories
			}
			if !strings.Contains(f.isolation, need) {
				if c.reason == "seccomp" || c.reason == "file" || c.reason == "signal" {
					if !strings.HasPrefix(report, "refused: ") {
						t.Fatalf("report %q, want a refusal", report)
					}
					t.Skipf("no %s here, so no %s evidence (%s)", need, c.reason, f.isolation)
				}
				t.Logf("no %s here, so no %s evidence (%s)", need, c.reason, f.isolation)
				if c.reason == "network" && !strings.HasPrefix(report, "refused: ") {
					t.Fatalf("report %q, want a refusal", report)
				}
				f.member(t, "hostile", "") // killed by a limit, or still serving
				f.voted(t)
				return
			}
			e := f.evidence(t, inst)
			t.Logf("evidence: %v", e.Attrs)
			if e.Attrs["reason"] != c.reason {
				t.Errorf("evidence %+v, want reason %q", e, c.reason)
			}
			checkEvidenceShape(t, e)
			// A create that failed is recorded with its directory.
			if path, _ := e.Attrs["path"].(string); c.reason == "file" && path != c.args[1] &&
				!(seenByAudit[c.name] && strings.HasSuffix(path, "/") && strings.HasPrefix(c.args[1], path)) {
				t.Errorf("evidence names path %v, want %s", e.Attrs["path"], c.args[1])
			}
			if want := map[string]string{"read": "read", "write": "write"}[c.what]; c.reason == "file" && e.Attrs["access"] != want {
				t.Errorf("evidence says access %v, want %s", e.Attrs["access"], want)
			}
			if c.reason == "signal" && e.Attrs["target_pid"] != os.Getpid() {
				t.Errorf("evidence names pid %v, want %d", e.Attrs["target_pid"], os.Getpid())
			}
			f.voted(t) // while the hostile one is being replaced
			f.member(t, "hostile", inst.ID)
			if _, err := os.Stat(filepath.Join(inst.WorkDir, process.RecordFile)); err != nil {
				t.Errorf("work dir of the killed executor not kept for forensics: %v", err)
			}
			f.voted(t)
		})
	}
	for p, sum := range before {
		if !bytes.Equal(fileSum(t, p), sum) {
			t.Errorf("%s changed", p)
		}
	}
	for _, p := range []string{filepath.Join(open, "x"), "/etc/proteus-hostile"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the hostile executor wrote %s", p)
			os.Remove(p)
		}
	}
}

// What a healthy server does (read its own files, use /tmp, signal and reap its own child)
// trips no wire: the first evidence about an executor that does all that and then opens a
// decoy is about the decoy.
func TestBenignExecutorTripsNothing(t *testing.T) {
	f := newHostileFixture(t, false)
	if !strings.Contains(f.isolation, "fanotify tripwires") {
		t.Skipf("no tripwires here (%s)", f.isolation)
	}
	inst := f.member(t, "hostile", "")
	own := filepath.Join(inst.WorkDir, "site", "index.html")
	for range 3 {
		if report := f.attack(t, inst, "benign", "path", own); !strings.HasPrefix(report, "ok: ") {
			t.Fatalf("benign work: %q", report)
		}
	}
	f.attack(t, inst, "read", "path", f.token)
	e := f.evidence(t, inst)
	if e.Attrs["reason"] != executor.DeniedFile || e.Attrs["path"] != f.token {
		t.Fatalf("first evidence %v, want the decoy %s", e.Attrs, f.token)
	}
	f.voted(t)
}

// A variant allowed outbound traffic still cannot reach any address of this host: the
// agent's API on loopback is refused and counted.
func TestOutboundVariantCannotReachTheAgent(t *testing.T) {
	f := newHostileFixture(t, true)
	if !strings.Contains(f.isolation, "nftables") {
		t.Skipf("no nftables here (%s): with allow_outbound, Landlock alone cannot tell this host from others", f.isolation)
	}
	inst := f.member(t, "hostile", "")
	for _, addr := range []string{f.api, net.JoinHostPort("127.0.0.1", strconv.Itoa(portOfAddr(t, f.gw.URL)))} {
		if report := f.attack(t, inst, "connect", "addr", addr); strings.HasPrefix(report, "SUCCEEDED") {
			t.Fatalf("reached %s: %s", addr, report)
		}
	}
	if e := f.evidence(t, inst); e.Attrs["reason"] != "network" {
		t.Errorf("evidence %+v", e)
	}
	f.voted(t)
}

func portOfAddr(t *testing.T, u string) int {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(pu.Port())
	if err != nil {
		t.Fatal(fmt.Errorf("port of %s: %w", u, err))
	}
	return n
}

// checkEvidenceShape holds an EventDenied to its documented shape (docs/architecture.md).
func checkEvidenceShape(t *testing.T, e bus.Event) {
	t.Helper()
	for _, k := range []string{"variant", "reason", "attempted", "refused_by", "category", "work_dir"} {
		if s, _ := e.Attrs[k].(string); s == "" {
			t.Errorf("evidence without %s: %v", k, e.Attrs)
		}
	}
	if c := e.Attrs["category"]; c != "confidentiality" && c != "integrity" && c != "availability" {
		t.Errorf("evidence category %v", c)
	}
}
