package decoy

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/sensor"
)

// testBanners are two signals' identities: a current, hardened stack (mH) and an older one (mL).
var testBanners = map[string]map[string]string{
	"mH": {"ssh": "OpenSSH_9.6p1 Debian-3", "smtp": "mail.example.com ESMTP Postfix (Debian/GNU)", "mysql": "8.0.36", "http": "nginx/1.26.0", "redis": "7.2.4"},
	"mL": {"ssh": "OpenSSH_7.4", "smtp": "mx.example.com ESMTP Sendmail 8.14.4/8.14.4; Mon, 1 Dec 2026 10:00:00 GMT", "mysql": "5.5.62", "http": "Apache/2.2.15 (CentOS)", "redis": "3.2.12"},
}

var allServices = []string{"ssh", "smtp", "mysql", "http", "redis"}

// start runs decoys for services on loopback ports and returns the sensor, its events and
// the address of each service.
func start(t testing.TB, c config.Decoy, services ...string) (*Sensor, chan sensor.Event, map[string]string) {
	t.Helper()
	for _, svc := range services {
		c.Listen = append(c.Listen, config.DecoyListener{Addr: "127.0.0.1:0", Service: svc})
	}
	if c.Banners == nil {
		c.Banners = testBanners
	}
	if c.Signal == "" {
		c.Signal = "mH"
	}
	if c.MaxConns == 0 {
		c.MaxConns = config.DefaultDecoyMaxConns
	}
	if c.ReadBytes == 0 {
		c.ReadBytes = config.DefaultDecoyReadBytes
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second // generous: tests end connections themselves
	}
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sensor.Event, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	addrs := map[string]string{}
	for i, a := range s.Addrs() {
		addrs[services[i]] = a.String()
	}
	return s, out, addrs
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // guards a hang only
	return c
}

func next(t *testing.T, out chan sensor.Event) sensor.Event {
	t.Helper()
	select {
	case ev := <-out:
		return ev
	case <-time.After(time.Minute):
		t.Fatal("no decoy event")
	}
	return sensor.Event{}
}

// identify talks to a decoy as that service's client does and returns the identity it
// presented.
func identify(t *testing.T, service, addr string) string {
	t.Helper()
	switch service {
	case "http":
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 404 || !strings.Contains(string(body), "Not Found") {
			t.Fatalf("http decoy: %s %q", resp.Status, body)
		}
		return resp.Header.Get("Server")
	case "redis":
		c := dial(t, addr)
		fmt.Fprint(c, "*1\r\n$4\r\nINFO\r\n")
		r := bufio.NewReader(c)
		hdr, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(hdr, "$") {
			t.Fatalf("redis decoy: %q %v", hdr, err)
		}
		rest, _ := io.ReadAll(r)
		for _, l := range strings.Split(string(rest), "\r\n") {
			if v, ok := strings.CutPrefix(l, "redis_version:"); ok {
				return v
			}
		}
		t.Fatalf("redis decoy: no version in %q", rest)
	case "mysql":
		c := dial(t, addr)
		defer c.Close() // a MySQL client that stops after the greeting: the decoy sees EOF
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		p := make([]byte, n)
		if _, err := io.ReadFull(c, p); err != nil {
			t.Fatal(err)
		}
		if hdr[3] != 0 || p[0] != 10 {
			t.Fatalf("mysql decoy: sequence %d protocol %d", hdr[3], p[0])
		}
		v, rest, ok := strings.Cut(string(p[1:]), "\x00")
		if !ok || len(rest) < 4+8+1+2+1+2+2+1+10+13 {
			t.Fatalf("mysql decoy: short handshake %q", p)
		}
		if caps := uint32(binary.LittleEndian.Uint16([]byte(rest[13:]))) | uint32(binary.LittleEndian.Uint16([]byte(rest[18:])))<<16; caps&0x200 == 0 || caps&0x80000 == 0 {
			t.Fatalf("mysql decoy: capabilities %#x lack protocol 4.1 or plugin auth", caps)
		}
		if !strings.Contains(rest, "mysql_native_password\x00") {
			t.Fatalf("mysql decoy: no auth plugin in %q", rest)
		}
		return v
	default: // ssh, smtp: the server speaks first, one line
		c := dial(t, addr)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if service == "ssh" {
			fmt.Fprint(c, "SSH-2.0-OpenSSH_9.2p1\r\n")
			v, ok := strings.CutPrefix(line, "SSH-2.0-")
			if !ok || !strings.HasSuffix(v, "\r\n") {
				t.Fatalf("ssh decoy: %q", line)
			}
			return strings.TrimSuffix(v, "\r\n")
		}
		fmt.Fprint(c, "EHLO scanner\r\n")
		v, ok := strings.CutPrefix(line, "220 ")
		if !ok || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("smtp decoy: %q", line)
		}
		return strings.TrimSuffix(v, "\r\n")
	}
	return ""
}

// Each decoy greets in its real protocol with the identity of the signal in force, every
// connection is an event naming its source, port and first bytes, and the identities follow
// SetSignal.
func TestBannersFollowTheSignal(t *testing.T) {
	s, out, addrs := start(t, config.Decoy{Asset: "shop"}, allServices...)
	for _, sig := range []string{"mH", "mL", "mH"} {
		s.SetSignal("shop", sig)
		if s.Signal() != sig {
			t.Fatalf("signal %s, want %s", s.Signal(), sig)
		}
		for _, svc := range allServices {
			if got, want := identify(t, svc, addrs[svc]), testBanners[sig][svc]; got != want {
				t.Fatalf("%s decoy under %s presents %q, want %q", svc, sig, got, want)
			}
			ev := next(t, out)
			_, port, _ := net.SplitHostPort(addrs[svc])
			if ev.Sensor != "decoy" || ev.Kind != "connect" || ev.Source.String() != "127.0.0.1" || fmt.Sprint(ev.DestPort) != port ||
				ev.Asset != "shop" || ev.AppProto != svc || ev.Attrs["signal"] != sig {
				t.Fatalf("%s event %+v", svc, ev)
			}
			if svc != "mysql" && ev.Excerpt == "" {
				t.Fatalf("%s event has no first bytes: %+v", svc, ev)
			}
		}
	}
	// Another asset's signal and a signal without banners change nothing.
	s.SetSignal("other", "mL")
	s.SetSignal("shop", "mX")
	if got := identify(t, "ssh", addrs["ssh"]); got != testBanners["mH"]["ssh"] {
		t.Fatalf("ssh presents %q after foreign signals", got)
	}
	if c := s.Counters(); c["unknown_signal"] != 1 || c["signal_switches"] != 2 {
		t.Fatalf("counters %v", c)
	}
}

// The HTTP decoy's 404 page is that of the server its Server header names, so the page does
// not give the header away: nginx's page under mH (nginx/1.26.0), Apache httpd's under mL,
// each with a Date header as real servers send.
func TestHTTPDecoyPageFollowsTheIdentity(t *testing.T) {
	s, _, addrs := start(t, config.Decoy{Asset: "shop"}, "http")
	for _, c := range []struct{ sig, want, ctype, not string }{
		{"mH", "<hr><center>nginx/1.26.0</center>", "text/html", "requested URL"},
		{"mL", "<p>The requested URL was not found on this server.</p>", "text/html; charset=iso-8859-1", "nginx"},
	} {
		s.SetSignal("shop", c.sig)
		resp, err := http.Get("http://" + addrs["http"] + "/admin/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(body), c.want) || strings.Contains(string(body), c.not) {
			t.Errorf("%s: %s %q, want a page with %q and without %q", c.sig, resp.Status, body, c.want, c.not)
		}
		if got := resp.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("%s: Content-Type %q, want %q", c.sig, got, c.ctype)
		}
		if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
			t.Errorf("%s: Date %q: %v", c.sig, resp.Header.Get("Date"), err)
		}
	}
}

// A client that floods the decoys with connections it holds open (sending nothing) gets at
// most MaxConns served; the rest are closed unread, and every one is still reported; the
// decoys' goroutines stay bounded, and once the holders leave a new client is greeted.
func TestFloodIsBoundedAndReported(t *testing.T) {
	const maxConns, flood = 4, 200
	s, out, addrs := start(t, config.Decoy{MaxConns: maxConns}, "ssh")
	base := runtime.NumGoroutine()
	var conns []net.Conn
	greeted := 0
	for i := range flood {
		c := dial(t, addrs["ssh"])
		conns = append(conns, c)
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case err == nil && strings.HasPrefix(line, "SSH-2.0-"):
			greeted++
		case err == io.EOF || isReset(err):
		default:
			t.Fatalf("connection %d: %q %v", i, line, err)
		}
	}
	if greeted != maxConns {
		t.Fatalf("%d of %d held connections were greeted, want max_conns %d", greeted, flood, maxConns)
	}
	if g := runtime.NumGoroutine(); g > base+maxConns+8 {
		t.Fatalf("%d goroutines during a flood of %d (base %d, max_conns %d)", g, flood, base, maxConns)
	}
	for i := range flood - maxConns {
		if ev := next(t, out); ev.Attrs["shed"] != "true" {
			t.Fatalf("event %d of the shed connections: %+v", i, ev)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	for range maxConns {
		if ev := next(t, out); ev.Attrs["shed"] == "true" {
			t.Fatalf("served connection reported as shed: %+v", ev)
		}
	}
	if got := identify(t, "ssh", addrs["ssh"]); got != testBanners["mH"]["ssh"] {
		t.Fatalf("after the flood: %q", got)
	}
	if c := s.Counters(); c["connections"] != flood+1 || c["shed"] != flood-maxConns || c["dropped"] != 0 {
		t.Fatalf("counters %v", c)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// A slow sender holds its slot only until the decoy's timeout; a sender of more than
// read_bytes is read no further; neither gets more than the one answer.
func TestSlowAndLongSendersAreBounded(t *testing.T) {
	const readBytes = 64
	_, out, addrs := start(t, config.Decoy{ReadBytes: readBytes, Timeout: 200 * time.Millisecond}, "http", "redis")

	// Slow: a request head that never ends, a byte at a time.
	slow := dial(t, addrs["http"])
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\n") {
			if _, err := slow.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Keep the connection open without finishing the head; the decoy must give up.
		_, _ = io.Copy(io.Discard, slow)
	}()
	ev := next(t, out)
	if ev.AppProto != "http" || ev.Excerpt == "" || strings.Contains(ev.Excerpt, `\r\n\r\n`) {
		t.Fatalf("slow sender's event %+v", ev)
	}
	wg.Wait() // the decoy closed the connection (io.Copy returned)

	// Long: more than read_bytes without a newline, then a command.
	long := dial(t, addrs["redis"])
	junk := strings.Repeat("A", 10*readBytes)
	go func() { _, _ = fmt.Fprint(long, junk+"\r\n") }()
	answer, _ := io.ReadAll(long)
	ev = next(t, out)
	if ev.Attrs["bytes"] != fmt.Sprint(readBytes) {
		t.Fatalf("long sender read %s bytes, want %d: %+v", ev.Attrs["bytes"], readBytes, ev)
	}
	if !strings.HasPrefix(string(answer), "-ERR unknown command 'aaaa") || strings.Count(string(answer), "\r\n") != 1 {
		t.Fatalf("long sender got %q", answer)
	}
}

// Run gives a clear error for a port it cannot bind, and the supervisor may retry.
func TestTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(config.Decoy{Listen: []config.DecoyListener{{Addr: ln.Addr().String(), Service: "ssh"}}, Banners: testBanners,
		Signal: "mH", MaxConns: 1, ReadBytes: 1, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background(), make(chan sensor.Event))
	if err == nil || !strings.Contains(err.Error(), "decoy: listen "+ln.Addr().String()+" (ssh)") {
		t.Fatalf("Run on a taken port: %v", err)
	}
}
