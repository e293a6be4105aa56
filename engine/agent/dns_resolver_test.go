package agent

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/executor/process"
)

// Recursive resolvers as pool executors: Unbound, Knot Resolver, dnsmasq and BIND (forward
// only), each a variant whose template points it at one authoritative NSD on another host (a
// network namespace), as an operator puts a voting front over the resolvers of a site.

func needResolvers(t *testing.T) {
	t.Helper()
	for _, p := range []string{"nsd", "unbound", "kresd", "dnsmasq", "named"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (.ci/run installs it): %v", p, err)
		}
	}
}

// startRemoteNSD runs NSD serving the test zone (image's zone file) on port 53 of an address
// in a network namespace of its own, reached over a veth pair: to the executors it is another
// host, which a variant with allow_outbound may reach (this host's addresses stay closed to
// executors whatever the variant says). It returns NSD's host:port.
func startRemoteNSD(t *testing.T, image string) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	ns := fmt.Sprintf("pxd%d", os.Getpid())
	octet := 16 + os.Getpid()%200
	hostIP, nsIP := fmt.Sprintf("10.231.%d.1", octet), fmt.Sprintf("10.231.%d.2", octet)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", ns+"h", "type", "veth", "peer", "name", ns+"n")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", ns+"h").Run() })
	ip("link", "set", ns+"n", "netns", ns)
	ip("addr", "add", hostIP+"/30", "dev", ns+"h")
	ip("link", "set", ns+"h", "up")
	ip("-n", ns, "addr", "add", nsIP+"/30", "dev", ns+"n")
	ip("-n", ns, "link", "set", ns+"n", "up")
	ip("-n", ns, "link", "set", "lo", "up")

	dir := t.TempDir()
	state := filepath.Join(dir, process.StateDir)
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	zone, err := os.ReadFile(filepath.Join(image, "zone"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zone"), zone, 0o644); err != nil {
		t.Fatal(err)
	}
	var conf bytes.Buffer
	tmpl := template.Must(template.New("nsd.conf").Parse(nsdConfTemplate))
	if err := tmpl.Execute(&conf, map[string]any{"IP": nsIP, "Port": 53, "Dir": dir, "Files": dir, "State": state}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nsd.conf"), conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nsd", "-d", "-c", filepath.Join(dir, "nsd.conf"))
	out, err := os.Create(filepath.Join(dir, "nsd.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		out.Close()
	})
	addr := net.JoinHostPort(nsIP, "53")
	c := dns.Client{Timeout: time.Second}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion("www."+dnsZone, dns.TypeA), addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			return addr
		}
		if time.Since(start) > 30*time.Second {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("NSD does not answer on %s: %v\n%s", addr, err, b)
		}
	}
}

// dnsResolverPoolConfig is an agent config whose pool is four recursive resolver variants,
// each resolving proteus.lab from the authoritative server at auth (host:port); image holds
// what the variants need besides their rendered configs (dnsmasq's hosts file, empty).
func dnsResolverPoolConfig(image, auth, rotation string) string {
	host, port, _ := net.SplitHostPort(auth)
	return dnsPoolHead(rotation) + fmt.Sprintf(`    - name: unbound
      image: %[1]s
      command: [unbound, -d, -c, "{{.Dir}}/unbound.conf"]
      traits: {server: unbound}
      allow_outbound: true
      files:
        unbound.conf: |
%[4]s            domain-insecure: "proteus.lab."
            local-zone: "proteus.lab." nodefault
          remote-control:
            control-enable: no
          stub-zone:
            name: "proteus.lab."
            stub-addr: %[2]s@%[3]s
    - name: kresd
      image: %[1]s
      command: [kresd, -n, -c, "{{.Dir}}/kresd.lua", "{{.State}}"]
      traits: {server: knot-resolver}
      allow_outbound: true
      files:
        kresd.lua: |
          net.listen('{{.IP}}', {{.Port}}, { kind = 'dns' })
          modules.unload('ta_signal_query')
          modules.unload('priming')
          modules.unload('detect_time_skew')
          trust_anchors.remove('.')
          cache.size = 10 * MB
          policy.add(policy.suffix(policy.STUB({'%[2]s@%[3]s'}), {todname('proteus.lab.')}))
          policy.add(policy.all(policy.DENY))
    - name: dnsmasq
      image: %[1]s
      command: [dnsmasq, -k, "--conf-file={{.Dir}}/dnsmasq.conf"]
      traits: {server: dnsmasq}
      allow_outbound: true
      files:
        dnsmasq.conf: |
          port={{.Port}}
          listen-address={{.IP}}
          bind-interfaces
          no-resolv
          no-hosts
          user=
          pid-file={{.State}}/dnsmasq.pid
          server=/proteus.lab/%[2]s#%[3]s
          addn-hosts={{.Dir}}/hosts
    - name: bind
      image: %[1]s
      command: [named, -g, -4, -n, "1", -c, "{{.Dir}}/named.conf"]
      traits: {server: bind}
      allow_outbound: true
      files:
        named.conf: |
          options { directory "{{.State}}"; listen-on port {{.Port}} { {{.IP}}; }; listen-on-v6 { none; };
            recursion yes; allow-recursion { 127.0.0.0/8; }; pid-file "{{.State}}/named.pid";
            dnssec-validation no; session-keyfile "{{.State}}/session.key"; };
          controls { };
          zone "proteus.lab" { type forward; forward only; forwarders { %[2]s port %[3]s; }; };
`, image, host, port, indent(unboundServerConf, 10))
}

// poisonDnsmasq makes a running dnsmasq executor answer a forged www record, as a poisoned
// resolver cache would: a hosts entry in its work directory, read again on SIGHUP (which
// also empties its cache).
func poisonDnsmasq(dataDir, id string) error {
	work := filepath.Join(dataDir, "executor", "process", "work", id)
	if err := os.WriteFile(filepath.Join(work, "hosts"), []byte(dnsForged+" www.proteus.lab\n"), 0o644); err != nil {
		return err
	}
	out, err := exec.Command("pgrep", "-f", "--", "--conf-file="+filepath.Join(work, "dnsmasq.conf")).Output()
	if err != nil {
		return fmt.Errorf("pgrep dnsmasq of %s: %v", id, err)
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("SIGHUP %d: %v", pid, err)
		}
	}
	return nil
}

// Recursive resolvers are pool members too: Unbound, Knot Resolver, dnsmasq and BIND, all
// resolving from one NSD on another host, rotate every second or two under query load with no failed query;
// a dnsmasq executor whose answers are poisoned while in service is outvoted, reported and
// rebuilt, and the forged record never reaches a client.
func TestDNSPoolOfResolversRotatesUnderLoad(t *testing.T) {
	needResolvers(t)
	if testing.Short() {
		t.Skip("starts real DNS servers for half a minute")
	}
	image := dnsImage(t)
	if err := os.WriteFile(filepath.Join(image, "hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := process.WriteManifest(image); err != nil {
		t.Fatal(err)
	}
	auth := startRemoteNSD(t, image)
	rotateUnderLoadAndPoison(t, startDNSAgent(t, dnsResolverPoolConfig(image, auth, "1s-2s")), "dnsmasq", 0.7, poisonDnsmasq)
}
