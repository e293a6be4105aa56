package docker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/netnstest"
	"github.com/proteus-defense/proteus/mimic"
)

// attackContainer asks the test server in inst to try what (see testdata/httpserver); it
// returns the report, or "" when the container died (or was frozen) before answering.
func attackContainer(inst *executor.Instance, what string, args ...string) string {
	q := url.Values{"what": {what}}
	for i := 0; i+1 < len(args); i += 2 {
		q.Set(args[i], args[i+1])
	}
	c := &http.Client{Timeout: 20 * time.Second} // a frozen container never answers
	resp, err := c.Get("http://" + inst.Address + "/attack?" + q.Encode())
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	return string(b)
}

// TestCompromisedContainer is the process driver's must-show (TestCompromisedExecutor)
// against the docker driver: the same attempts from inside a container, each refused; the
// ones the kernel reports (the memory limit, a refused connection) end as evidence.
func TestCompromisedContainer(t *testing.T) {
	cli, pin := fixture(t)
	dataDir := t.TempDir()
	token := filepath.Join(dataDir, "api.token")
	if err := os.WriteFile(token, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The agent's API, on loopback as the agent binds it, and a service on every address of
	// this host (as a gateway or an enclave port listening on 0.0.0.0 would be).
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a container reached the API: %s", r.URL)
	}))
	defer api.Close()
	wide, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	go func() {
		for {
			c, err := wide.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	widePort := strconv.Itoa(wide.Addr().(*net.TCPAddr).Port)

	b := bus.New()
	denied, cancel := b.Subscribe(16, bus.KindPrefix(executor.EventDenied))
	defer cancel()
	all, cancelAll := b.Subscribe(256, bus.KindPrefix(executor.EventDenied))
	defer cancelAll()
	d, err := New(Options{DataDir: dataDir, Bus: b, StopGrace: 2 * time.Second, Memory: 64 << 20, PidsLimit: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unguardAgentContainers(t, cli, d)
		removeAgentContainers(t, cli, d.agent)
		d.Close()
	})
	ctx := context.Background()
	start := func(variant string) *executor.Instance {
		t.Helper()
		spec := serverSpec(variant, pin)
		spec.Command = []string{"-addr", "{{.Addr}}", "-variant", "shop"} // one answer for the vote
		inst, err := d.Start(ctx, spec)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := waitHealthy("http://"+inst.Address+"/healthz", 500); err != nil {
			t.Fatal(err)
		}
		return inst
	}
	sibling := start("sibling")
	sibling2 := start("sibling2")
	sinfo, err := cli.ContainerInspect(ctx, sibling.Handle)
	if err != nil {
		t.Fatal(err)
	}
	siblingFile := filepath.Join(sinfo.GraphDriver.Data["MergedDir"], "tmp", "owned")
	hostile := start("hostile")
	hinfo, err := cli.ContainerInspect(ctx, hostile.Handle)
	if err != nil {
		t.Fatal(err)
	}
	gateway := hinfo.NetworkSettings.Networks[d.opts.Network].Gateway // this host, seen from the container
	if hinfo.Config.User != NobodyUser && hinfo.Config.User != "65534:65534" {
		t.Errorf("container user %q, want a non-root user", hinfo.Config.User)
	}
	// The voting gateway over the two siblings and the hostile one (k=3): it must answer
	// with the majority after every attempt, while the hostile container is refused, frozen
	// or killed.
	var backends staticBackends
	for _, inst := range []*executor.Instance{sibling, sibling2, hostile} {
		backends = append(backends, mimic.Backend{ID: inst.ID, Variant: inst.Variant, Addr: "http://" + inst.Address})
	}
	gw, err := mimic.New(mimic.Options{Backends: backends, Bus: b, K: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()
	voted := func(t *testing.T) {
		t.Helper()
		if got := get(t, front.URL+"/"); got != "hello from shop\n" {
			t.Fatalf("the gateway answered %q", got)
		}
	}
	voted(t)
	// What a healthy server does (read its own files, write /tmp, start a child, signal
	// and reap it) trips nothing: checked at the end, after every attempt.
	if report := attackContainer(sibling, "benign", "path", "/httpserver"); !strings.HasPrefix(report, "ok: ") {
		t.Fatalf("benign work in a sibling: %q", report)
	}
	defer func() {
		for {
			select {
			case e := <-all:
				if e.Subject == sibling.ID || e.Subject == sibling2.ID {
					t.Errorf("evidence against a benign sibling: %+v", e)
				}
			default:
				return
			}
		}
	}()

	cases := []struct {
		name, what string
		args       []string
	}{
		{"read the Docker socket", "read", []string{"path", "/var/run/docker.sock"}},
	}
	apiOnBridge := net.JoinHostPort(gateway, strconv.Itoa(api.Listener.Addr().(*net.TCPAddr).Port))
	if d.guard == nil {
		// Without the firewall only the API's loopback binding refuses it; with it, the
		// attempt is evidence and freezes the container, so it comes last (below).
		cases = append(cases, struct {
			name, what string
			args       []string
		}{"call the agent's API on the bridge", "connect", []string{"addr", apiOnBridge}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			report := attackContainer(hostile, c.what, c.args...)
			t.Logf("%q", report)
			if !strings.HasPrefix(report, "refused: ") {
				t.Fatalf("report %q, want a refusal", report)
			}
			voted(t)
		})
	}
	if _, err := os.Stat(siblingFile); err == nil {
		t.Errorf("the hostile container wrote %s", siblingFile)
	}
	if got := get(t, "http://"+sibling.Address+"/"); got != "hello from shop\n" {
		t.Errorf("sibling answers %q", got)
	}

	// What the kernel refuses without telling anyone (a read-only file system, a PID
	// namespace, a loopback where nothing listens) is evidence all the same: through the
	// kernel's audit records, the sibling decoys and the rules on the container's own
	// loopback. Each attempt from a container of its own, started after the siblings.
	for _, c := range []struct {
		name, what, arg, val string
		reason               string
		usable               bool   // the mechanism that sees it is there
		path                 string // the evidence's path, for a write
	}{
		{"write a sibling's files", "write", "path", siblingFile, executor.DeniedFile, d.audit != nil && d.withDecoys, siblingFile},
		{"write its own image", "write", "path", "/httpserver", executor.DeniedFile, d.audit != nil, "/httpserver"},
		{"signal the agent", "signal", "pid", strconv.Itoa(os.Getpid()), executor.DeniedSignal, d.audit != nil, ""},
		{"call the agent's API on its own loopback", "connect", "addr", api.Listener.Addr().String(), executor.DeniedNetwork, d.guard != nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			quiet := start("quiet-" + c.what)
			report := attackContainer(quiet, c.what, c.arg, c.val)
			t.Logf("%q", report)
			if !strings.HasPrefix(report, "refused: ") {
				t.Fatalf("report %q, want a refusal", report)
			}
			voted(t)
			if !c.usable {
				t.Skip("the refusal leaves no evidence here (needs root, a local engine, kernel audit, fanotify and nftables)")
			}
			e := evidenceFor(t, denied, quiet)
			t.Logf("evidence %v", e.Attrs)
			if e.Attrs["reason"] != c.reason {
				t.Fatalf("evidence %+v, want reason %s", e.Attrs, c.reason)
			}
			switch c.reason {
			case executor.DeniedFile:
				// A create that failed is recorded with its directory.
				path, _ := e.Attrs["path"].(string)
				if (path != c.path && !(strings.HasSuffix(path, "/") && strings.HasPrefix(c.path, path))) || e.Attrs["access"] != "write" || e.Attrs["category"] != "integrity" {
					t.Fatalf("evidence %+v", e.Attrs)
				}
			case executor.DeniedSignal:
				if e.Attrs["target_pid"] != os.Getpid() {
					t.Fatalf("evidence %+v", e.Attrs)
				}
			}
			waitQuarantined(t, d, quiet)
			voted(t)
		})
	}

	t.Run("reach this host on the bridge", func(t *testing.T) {
		if d.guard == nil {
			t.Skip("no firewall (needs root and nftables): Docker lets containers reach the host's services")
		}
		// The API (bound to loopback) and a service bound to every address; the container
		// may be frozen after the first refusal, and then answers nothing.
		for _, addr := range []string{apiOnBridge, net.JoinHostPort(gateway, widePort)} {
			report := attackContainer(hostile, "connect", "addr", addr)
			t.Logf("%s: %q", addr, report)
			if strings.HasPrefix(report, "SUCCEEDED") {
				t.Fatalf("the container reached this host's %s: %s", addr, report)
			}
		}
		if e := evidenceFor(t, denied, hostile); e.Attrs["reason"] != "network" {
			t.Fatalf("evidence %+v", e)
		}
		waitQuarantined(t, d, hostile)
		voted(t) // two of three
	})

	t.Run("connect to a sibling container", func(t *testing.T) {
		if d.guard == nil {
			t.Skip("no firewall (needs root and nftables): containers on one bridge reach each other")
		}
		// Straight to the sibling's own address on the bridge, past the gateway's vote.
		addr := net.JoinHostPort(sinfo.NetworkSettings.Networks[d.opts.Network].IPAddress, "8080")
		lateral := start("lateral")
		report := attackContainer(lateral, "connect", "addr", addr)
		t.Logf("%s: %q", addr, report)
		if strings.HasPrefix(report, "SUCCEEDED") {
			t.Fatalf("reached the sibling at %s: %s", addr, report)
		}
		if e := evidenceFor(t, denied, lateral); e.Attrs["reason"] != executor.DeniedNetwork {
			t.Fatalf("evidence %+v", e)
		}
		waitQuarantined(t, d, lateral)
		voted(t)
	})

	// The data dir's path holds decoys in every container (as root, with fanotify): reading
	// or writing api.token there is refused and is evidence. Without them the path is
	// simply not there.
	for _, c := range []struct{ name, what, arg, path, access string }{
		{"read api.token", "read", "path", token, "read"},
		{"write api.token", "write", "path", token, "write"},
		{"connect to the Docker socket", "connect", "addr", "/var/run/docker.sock", "connect"},
	} {
		t.Run(c.name, func(t *testing.T) {
			snoop := start("snoop-" + c.what)
			if d.withDecoys {
				// This host's own processes (a backup walking /run, say) open the decoys
				// and connect to them freely and are no evidence: the next evidence must
				// be the container's.
				if _, err := os.ReadFile(filepath.Join(d.decoyDir(snoop.ID), "data", filepath.Base(token))); err != nil {
					t.Fatalf("this host cannot read a decoy: %v", err)
				}
				if c, err := net.Dial("unix", filepath.Join(d.decoyDir(snoop.ID), "docker.sock")); err != nil {
					t.Fatalf("this host cannot connect to the decoy socket: %v", err)
				} else {
					c.Close()
				}
			}
			report := attackContainer(snoop, c.what, c.arg, c.path)
			t.Logf("%q", report)
			if !strings.HasPrefix(report, "refused: ") {
				t.Fatalf("report %q, want a refusal", report)
			}
			if !d.withDecoys {
				t.Skip("no decoys here (needs root, a local engine and fanotify): the refusal leaves no evidence")
			}
			e := evidenceFor(t, denied, snoop)
			t.Logf("evidence %v", e.Attrs)
			if e.Attrs["reason"] != executor.DeniedFile || e.Attrs["path"] != c.path || e.Attrs["access"] != c.access || e.Attrs["pid"] == os.Getpid() {
				t.Fatalf("evidence %+v", e)
			}
			waitQuarantined(t, d, snoop)
			if b, err := os.ReadFile(token); err != nil || string(b) != "agent-secret\n" {
				t.Errorf("the token file: %q %v", b, err)
			}
			voted(t)
		})
	}

	t.Run("fork without bound", func(t *testing.T) {
		forker := start("forker")
		report := attackContainer(forker, "fork")
		t.Logf("%q", report)
		if strings.HasPrefix(report, "SUCCEEDED") {
			t.Fatalf("forked without bound: %s", report)
		}
		if d.pidsEvents(ctx, forker.Handle) == "" {
			t.Skip("the container's pids.events is not readable here: a refused fork leaves no evidence")
		}
		if e := evidenceFor(t, denied, forker); e.Attrs["reason"] != "processes" {
			t.Fatalf("evidence %+v", e)
		}
		waitQuarantined(t, d, forker)
		voted(t)
	})

	t.Run("allocate without bound", func(t *testing.T) {
		greedy := start("greedy")
		report := attackContainer(greedy, "alloc")
		if strings.HasPrefix(report, "SUCCEEDED") {
			t.Fatalf("allocated without bound: %s", report)
		}
		if e := evidenceFor(t, denied, greedy); e.Attrs["reason"] != "memory" {
			t.Fatalf("evidence %+v", e)
		}
		voted(t)
	})
}

// staticBackends shows the voting gateway a fixed set of containers.
type staticBackends []mimic.Backend

func (s staticBackends) Backends() []mimic.Backend { return s }

// evidenceFor waits for the executor.denied event about inst (the bound turns a missing
// event into a failure that says so).
func evidenceFor(t *testing.T, denied <-chan bus.Event, inst *executor.Instance) bus.Event {
	t.Helper()
	guard := time.NewTimer(2 * time.Minute)
	defer guard.Stop()
	for {
		select {
		case e := <-denied:
			if e.Subject == inst.ID {
				return e
			}
			t.Logf("evidence about another container: %+v", e)
		case <-guard.C:
			t.Fatalf("no %s event for %s", executor.EventDenied, inst.ID)
		}
	}
}

func waitQuarantined(t *testing.T, d *Driver, inst *executor.Instance) {
	t.Helper()
	for range 500 {
		q, err := d.ListQuarantined(context.Background())
		if err == nil {
			for _, x := range q {
				if x.Handle == inst.Handle {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not quarantined", inst.ID)
}

// Outbound traffic is off unless the variant allows it: a container connecting to a host
// that is not this one (a network namespace of the test's, routed through this host,
// standing in for the Internet) is refused and that is evidence; a variant with
// allow_outbound reaches it.
func TestContainerOutboundRefused(t *testing.T) {
	_, pin := fixture(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and the firewall")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	// 10.235.<n>.0/30: host end .1, the outside's end .2 (no other test uses 10.235/16).
	n := os.Getpid() % 250
	ns, host, far := fmt.Sprintf("pxo%d", os.Getpid()), fmt.Sprintf("pxo%dh", os.Getpid()), fmt.Sprintf("pxo%dn", os.Getpid())
	hostAddr, farAddr := fmt.Sprintf("10.235.%d.1", n), fmt.Sprintf("10.235.%d.2", n)
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", host, "type", "veth", "peer", "name", far)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	ip("link", "set", far, "netns", ns)
	ip("addr", "add", hostAddr+"/30", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", ns, "addr", "add", farAddr+"/30", "dev", far)
	ip("-n", ns, "link", "set", far, "up")
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "route", "add", "default", "via", hostAddr)
	ln := listenIn(t, ns, net.JoinHostPort(farAddr, "0"))
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nfar")
			c.Close()
		}
	}()
	target := ln.Addr().String()

	b := bus.New()
	denied, cancel := b.Subscribe(16, bus.KindPrefix(executor.EventDenied))
	defer cancel()
	d := newTestDriver(t, t.TempDir(), b)
	if d.guard == nil {
		t.Skip("no firewall (nftables): outbound traffic is Docker's to allow")
	}
	ctx := context.Background()
	start := func(variant string, outbound bool) *executor.Instance {
		t.Helper()
		spec := serverSpec(variant, pin)
		spec.AllowOutbound = outbound
		inst, err := d.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := waitHealthy("http://"+inst.Address+"/healthz", 500); err != nil {
			t.Fatal(err)
		}
		return inst
	}
	allowed := start("allowed", true)
	if report := attackContainer(allowed, "connect", "addr", target); !strings.HasPrefix(report, "SUCCEEDED") {
		t.Skipf("a variant allowed outbound traffic cannot reach %s either (this host does not forward for containers): %q", target, report)
	}
	closed := start("closed", false)
	report := attackContainer(closed, "connect", "addr", target)
	t.Logf("%s: %q", target, report)
	if strings.HasPrefix(report, "SUCCEEDED") {
		t.Fatalf("reached %s without allow_outbound: %s", target, report)
	}
	if e := evidenceFor(t, denied, closed); e.Attrs["reason"] != executor.DeniedNetwork {
		t.Fatalf("evidence %+v", e)
	}
	waitQuarantined(t, d, closed)
}

// listenIn opens a TCP listener on addr inside the network namespace ns (the socket stays
// there once this thread is back in its own).
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	netnstest.In(t, ns, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
