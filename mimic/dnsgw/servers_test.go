package dnsgw

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

// The real DNS servers of these tests, from Debian (.ci/run installs them): three
// authoritative servers (NSD, Knot, BIND) serving testZone, and three resolvers (Unbound,
// Knot Resolver, dnsmasq) that resolve it from one of them.

const (
	zoneName   = "proteus.lab."
	trueWWW    = "192.0.2.10"
	forgedWWW  = "203.0.113.66"
	bigTXTRecs = 24
)

func testZone(www string) string { return testZoneTTL(www, 300) }

// testZoneTTL is the zone with www's A record and every TTL ttl.
func testZoneTTL(www string, ttl int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$TTL %d\n", ttl)
	fmt.Fprintf(&b, `$ORIGIN proteus.lab.
@ IN SOA ns1 hostmaster 2026120201 3600 600 86400 300
@ IN NS ns1
ns1 IN A 127.0.0.1
www IN A %s
multi IN A 192.0.2.1
multi IN A 192.0.2.2
multi IN A 192.0.2.3
multi IN A 192.0.2.4
alias IN CNAME www
mail IN MX 10 mx1
mx1 IN A 192.0.2.25
txt IN TXT "Hello World" "second string"
v6 IN AAAA 2001:db8::1
_sip._tcp IN SRV 10 5 5060 www
`, www)
	for i := range bigTXTRecs {
		fmt.Fprintf(&b, "big IN TXT \"record %02d %s\"\n", i, strings.Repeat("x", 100))
	}
	return b.String()
}

// server is one running DNS server.
type server struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  string
}

func (s *server) member() voter.Member {
	return voter.Member{ID: s.name + "-1", Variant: s.name, Addr: s.addr, Traits: map[string]string{"server": s.name}}
}

func need(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (.ci/run installs it): %v", p, err)
		}
	}
}

// freeAddr returns an address free for both UDP and TCP just now, on a random 127/8 address
// unless fixed (BIND and dnsmasq listen only on addresses of an interface: 127.0.0.1), so
// that the servers of tests running at once hardly ever meet on one address.
func freeAddr(t *testing.T, fixed bool) (string, int) {
	t.Helper()
	for range 50 {
		ip := "127.0.0.1"
		if !fixed {
			ip = fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		}
		pc, err := net.ListenPacket("udp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return ip, port
		}
	}
	t.Fatal("no free port")
	return "", 0
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs the server's command, stops it at the end of the test and waits until it
// answers www over UDP and TCP.
func start(t *testing.T, name, ip string, port int, dir string, argv ...string) *server {
	t.Helper()
	s := &server{name: name, addr: net.JoinHostPort(ip, strconv.Itoa(port)), log: filepath.Join(dir, name+".out")}
	out, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT)
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := exited
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		out.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for _, network := range []string{"udp", "tcp"} {
		for {
			c := dns.Client{Net: network, Timeout: time.Second}
			m := new(dns.Msg).SetQuestion("www."+zoneName, dns.TypeA)
			r, _, err := c.Exchange(m, s.addr)
			select {
			case <-exited: // e.g. its address was taken after all: what answered is not it
				b, _ := os.ReadFile(s.log)
				t.Fatalf("%s on %s exited at start; its output:\n%s", name, s.addr, b)
			default:
			}
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(s.log)
				t.Fatalf("%s on %s (%s) did not answer within a minute; its output:\n%s", name, s.addr, network, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s
}

func startNSD(t *testing.T, www string) *server { return startNSDZone(t, testZone(www)) }

func startNSDZone(t *testing.T, zone string) *server {
	need(t, "nsd")
	dir := t.TempDir()
	ip, port := freeAddr(t, false)
	writeFile(t, filepath.Join(dir, "zone"), zone)
	writeFile(t, filepath.Join(dir, "nsd.conf"), fmt.Sprintf(`server:
  ip-address: %[3]s@%[2]d
  username: ""
  zonesdir: "%[1]s"
  database: ""
  pidfile: "%[1]s/nsd.pid"
  xfrdfile: "%[1]s/xfrd.state"
  zonelistfile: "%[1]s/zone.list"
  xfrdir: "%[1]s"
  chroot: ""
  server-count: 1
  verbosity: 1
  nsid: "ascii_nsd-test"
  rrl-ratelimit: 0
  logfile: "%[1]s/nsd.log"
remote-control:
  control-enable: no
zone:
  name: proteus.lab
  zonefile: %[1]s/zone
`, dir, port, ip))
	return start(t, "nsd", ip, port, dir, "nsd", "-d", "-c", filepath.Join(dir, "nsd.conf"))
}

func startKnot(t *testing.T, www string) *server { return startKnotZone(t, testZone(www)) }

func startKnotZone(t *testing.T, zone string) *server {
	need(t, "knotd")
	dir := t.TempDir()
	ip, port := freeAddr(t, false)
	writeFile(t, filepath.Join(dir, "zone"), zone)
	writeFile(t, filepath.Join(dir, "knot.conf"), fmt.Sprintf(`server:
    listen: %[3]s@%[2]d
    rundir: %[1]s
    nsid: knot-test
control:
    listen: %[1]s/knot.sock
database:
    storage: %[1]s/db
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: %[1]s
    semantic-checks: off
zone:
  - domain: proteus.lab
    file: %[1]s/zone
`, dir, port, ip))
	return start(t, "knot", ip, port, dir, "knotd", "-c", filepath.Join(dir, "knot.conf"))
}

func startBIND(t *testing.T, www string) *server { return startBINDZone(t, testZone(www)) }

func startBINDZone(t *testing.T, zone string) *server {
	need(t, "named")
	dir := t.TempDir()
	ip, port := freeAddr(t, true)
	writeFile(t, filepath.Join(dir, "zone"), zone)
	writeFile(t, filepath.Join(dir, "named.conf"), fmt.Sprintf(`options { directory "%[1]s"; listen-on port %[2]d { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; pid-file "%[1]s/named.pid"; dnssec-validation no; session-keyfile "%[1]s/session.key"; server-id "bind-test"; };
controls { };
zone "proteus.lab" { type primary; file "%[1]s/zone"; };
`, dir, port))
	return start(t, "bind", ip, port, dir, "named", "-g", "-4", "-c", filepath.Join(dir, "named.conf"))
}

// startUnbound resolves the zone from auth; forged, when set, is a local-data A record for
// www that it answers instead (a poisoned cache).
func startUnbound(t *testing.T, auth *server, forged string) *server {
	need(t, "unbound")
	dir := t.TempDir()
	ip, port := freeAddr(t, false)
	poison := ""
	if forged != "" {
		poison = fmt.Sprintf("  local-zone: \"www.proteus.lab.\" redirect\n  local-data: \"www.proteus.lab. 300 IN A %s\"\n", forged)
	}
	writeFile(t, filepath.Join(dir, "unbound.conf"), fmt.Sprintf(`server:
  interface: %[5]s@%[2]d
  do-ip6: no
  username: ""
  chroot: ""
  directory: "%[1]s"
  pidfile: "%[1]s/unbound.pid"
  use-syslog: no
  do-daemonize: no
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
%[4]sremote-control:
  control-enable: no
stub-zone:
  name: "proteus.lab"
  stub-addr: %[3]s
`, dir, port, strings.Replace(auth.addr, ":", "@", 1), poison, ip))
	return start(t, "unbound", ip, port, dir, "unbound", "-d", "-c", filepath.Join(dir, "unbound.conf"))
}

func startKresd(t *testing.T, auth *server) *server {
	need(t, "kresd")
	dir := t.TempDir()
	ip, port := freeAddr(t, false)
	writeFile(t, filepath.Join(dir, "kresd.lua"), fmt.Sprintf(`net.listen('%[4]s', %[2]d, { kind = 'dns' })
trust_anchors.remove('.')
cache.open(10*MB, 'lmdb://%[1]s/cache')
policy.add(policy.suffix(policy.STUB({'%[3]s'}), {todname('proteus.lab.')}))
`, dir, port, strings.Replace(auth.addr, ":", "@", 1), ip))
	return start(t, "kresd", ip, port, dir, "kresd", "-n", "-c", filepath.Join(dir, "kresd.lua"), dir)
}

func startDnsmasq(t *testing.T, auth *server) *server {
	need(t, "dnsmasq")
	dir := t.TempDir()
	ip, port := freeAddr(t, true)
	return start(t, "dnsmasq", ip, port, dir, "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--port="+strconv.Itoa(port), "--listen-address="+ip, "--bind-interfaces",
		"--server=/proteus.lab/"+strings.Replace(auth.addr, ":", "#", 1), "--pid-file="+filepath.Join(dir, "pid"), "-u", "root")
}

// ask sends one query to addr over network and returns the answer.
func ask(t *testing.T, network, addr, name string, qtype uint16, edns int) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(uint16(edns), false)
	}
	c := dns.Client{Net: network, Timeout: 20 * time.Second, UDPSize: uint16(max(edns, 512))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		t.Fatalf("%s %s %s to %s: %v", network, name, dns.Type(qtype), addr, err)
	}
	return r
}
