package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/countermeasure"
)

type inProcessAgent struct {
	data   string
	gw     string
	stderr *syncBuffer
	exited chan struct{}
	code   int
	cancel context.CancelFunc
}

// startAgent runs `proteus agent args...` in this process with a fresh data dir (or data,
// when not empty) and returns once its gateway and API addresses are written.
func startAgent(t *testing.T, data string, args ...string) *inProcessAgent {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	prev := agentContext
	agentContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	a := &inProcessAgent{data: data, stderr: &syncBuffer{}, exited: make(chan struct{}), cancel: cancel}
	go func() {
		a.code = run(append([]string{"--data-dir", data, "agent", "--api", "127.0.0.1:0"}, args...), io.Discard, a.stderr)
		close(a.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-a.exited
		agentContext = prev
	})
	a.gw = waitFile(t, filepath.Join(data, GatewayAddrFile), a.exited, a.stderr.String)
	waitFile(t, filepath.Join(data, api.AddrFile), a.exited, a.stderr.String)
	// The address files come just before the "agent ready" log line; wait for that too.
	for n := 0; !strings.Contains(a.stderr.String(), "proteus agent: serving"); n++ {
		if n == 1500 {
			t.Fatalf("agent never said it serves:\n%s", a.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a
}

// stop shuts the agent down and checks its exit code.
func (a *inProcessAgent) stop(t *testing.T) {
	t.Helper()
	a.cancel()
	<-a.exited
	if a.code != 0 {
		t.Fatalf("agent exit %d:\n%s", a.code, a.stderr.String())
	}
	os.Remove(filepath.Join(a.data, GatewayAddrFile))
}

func (a *inProcessAgent) cli(args ...string) (int, string) {
	var out, errb bytes.Buffer
	c := run(append([]string{"--data-dir", a.data}, args...), &out, &errb)
	return c, out.String() + errb.String()
}

// localNonLoopback is an address of this host other than loopback, which the countermeasure
// Manager refuses to block.
func localNonLoopback(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsGlobalUnicast() {
			return p.Addr()
		}
	}
	t.Skip("no non-loopback address on this host to connect from (loopback is never blocked)")
	return netip.Addr{}
}

// getFrom sends GET url from the local address src.
func getFrom(t *testing.T, src netip.Addr, url string) int {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// A client address blocked with `proteus block` gets 403 from the voting gateway (and no
// executor sees the request) until `proteus unblock`; the block is journaled in the data dir,
// survives a restart of the agent, and `proteus countermeasures` lists it with its expiry.
func TestAgentBlockUnblock(t *testing.T) {
	src := localNonLoopback(t)
	listen := netip.AddrPortFrom(src, 0).String()
	a := startAgent(t, "", "--listen", listen)
	url := "http://" + a.gw + "/about.html"
	if c := getFrom(t, src, url); c != 200 {
		t.Fatalf("before the block: %d", c)
	}
	if c, out := a.cli("block", src.String(), "--ttl", "10m", "--reason", "test"); c != 0 || !strings.Contains(out, "blocked "+src.String()) {
		t.Fatalf("block: %d %s", c, out)
	}
	if c := getFrom(t, src, url); c != 403 {
		t.Fatalf("blocked client got %d, want 403", c)
	}
	c, out := a.cli("countermeasures", "-o", "json")
	var acts []countermeasure.Action
	if err := json.Unmarshal([]byte(out), &acts); c != 0 || err != nil || len(acts) != 1 {
		t.Fatalf("countermeasures: %d %v %s", c, err, out)
	}
	x := acts[0]
	if d := x.Expires.Sub(x.Applied); x.Target.String() != src.String() || x.Source != api.OperatorSource || x.Reason != "test" ||
		d > 10*time.Minute || d < 9*time.Minute {
		t.Errorf("action %+v", x)
	}
	if c, out := a.cli("countermeasures"); c != 0 || !strings.Contains(out, "EXPIRES") || !strings.Contains(out, src.String()) {
		t.Errorf("countermeasures table: %d %s", c, out)
	}
	if _, err := os.Stat(filepath.Join(a.data, countermeasure.JournalFile)); err != nil {
		t.Errorf("no journal: %v", err)
	}

	// Restart on the same data dir: the journal restores the block before clients are served.
	a.stop(t)
	b := startAgent(t, a.data, "--listen", listen, "--proxy")
	url = "http://" + b.gw + "/about.html"
	if c := getFrom(t, src, url); c != 403 {
		t.Fatalf("after restart (proxy frontend) the blocked client got %d, want 403", c)
	}
	if c, out := b.cli("unblock", "203.0.113.0/24"); c != 1 || !strings.Contains(out, "404") {
		t.Errorf("unblock of something never blocked: %d %s", c, out)
	}
	if c, out := b.cli("unblock", src.String()); c != 0 || !strings.Contains(out, "unblocked "+src.String()) {
		t.Fatalf("unblock: %d %s", c, out)
	}
	if c := getFrom(t, src, url); c != 200 {
		t.Fatalf("after unblock: %d", c)
	}
	if c, out := b.cli("block", "127.0.0.1", "--ttl", "1m"); c != 1 || !strings.Contains(out, "refusing to block") {
		t.Errorf("block loopback: %d %s", c, out)
	}
	b.stop(t)
}

func TestBlockCommandUsage(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"block", "203.0.113.7"}, "--ttl is required"},
		{[]string{"block", "nonsense", "--ttl", "1m"}, "address or a CIDR"},
		{[]string{"block", "--ttl", "1m"}, "exactly one"},
		{[]string{"unblock"}, "exactly one"},
		{[]string{"unblock", "port/22"}, "address or a CIDR"},
		{[]string{"countermeasures", "-o", "yaml"}, "table or json"},
		{[]string{"status", "--attack-intensity", "2"}, "(0, 1]"},
		{[]string{"agent", "--vote", "--proxy"}, "at most one of --vote and --proxy"},
		{[]string{"agent", "--attack-intensity", "0"}, "(0, 1]"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"--data-dir", data}, c.args...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}
