package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/executor/process"
)

// The DNS executors of these tests are real authoritative servers from Debian (.ci/run
// installs them): NSD, Knot, BIND and Unbound (serving the zone as an auth-zone), each a pool
// variant whose config file is a template rendered per executor with its own port.

const (
	dnsZone   = "proteus.lab."
	dnsTrue   = "192.0.2.10"
	dnsForged = "203.0.113.66"
)

func dnsZoneFile(www string) string {
	serial := 2026120201
	if www != dnsTrue {
		serial++ // so a server reloading it takes it as a new version
	}
	return fmt.Sprintf(`$TTL 300
$ORIGIN proteus.lab.
@ IN SOA ns1 hostmaster %d 3600 600 86400 300
@ IN NS ns1
ns1 IN A 127.0.0.1
www IN A %s
multi IN A 192.0.2.1
multi IN A 192.0.2.2
multi IN A 192.0.2.3
alias IN CNAME www
mail IN MX 10 mx1
mx1 IN A 192.0.2.25
txt IN TXT "Hello World" "second string"
v6 IN AAAA 2001:db8::1
`, serial, www)
}

// nsdConfTemplate is NSD's configuration as a pool variant's template (see config/pool.go):
// the zone file where the driver puts the rendered files ({{.Files}}: for the process driver
// the work directory, which holds the image's), the state under {{.State}}, response rate
// limiting off.
const nsdConfTemplate = `server:
  ip-address: {{.IP}}@{{.Port}}
  username: ""
  zonesdir: "{{.Files}}"
  database: ""
  pidfile: "{{.State}}/nsd.pid"
  xfrdfile: "{{.State}}/xfrd.state"
  zonelistfile: "{{.State}}/zone.list"
  xfrdir: "{{.State}}"
  chroot: ""
  server-count: 1
  verbosity: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: proteus.lab
  zonefile: {{.Files}}/zone
`

// knotConfTemplate is Knot's configuration as a pool variant's template: the zone file
// where the driver puts the rendered files ({{.Files}}: the work directory holding the
// image for the process driver), the rest under {{.State}}.
const knotConfTemplate = `server:
    listen: {{.IP}}@{{.Port}}
    rundir: {{.State}}
    identity: knot
    nsid: knot
control:
    listen: {{.State}}/knot.sock
database:
    storage: {{.State}}/db
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: {{.Files}}
    semantic-checks: off
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: proteus.lab
    file: {{.Files}}/zone
`

// unboundServerConf is the start of Unbound's server: section as a pool variant's template,
// the same for an authoritative Unbound (dnsPoolConfig) and a resolver (dnsResolverPoolConfig):
// on the executor's address, in the foreground, its state under {{.State}}, no DNSSEC
// validation; what follows in the section and the sections after it is each variant's own.
const unboundServerConf = `server:
  interface: {{.IP}}@{{.Port}}
  do-ip6: no
  username: ""
  chroot: ""
  directory: "{{.State}}"
  pidfile: "{{.State}}/unbound.pid"
  use-syslog: no
  do-daemonize: no
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
`

// unboundAuthConf is an authoritative Unbound's configuration as a pool variant's template:
// the zone as an auth-zone from {{.Files}}.
const unboundAuthConf = unboundServerConf + `remote-control:
  control-enable: no
auth-zone:
  name: "proteus.lab."
  zonefile: "{{.Files}}/zone"
  for-downstream: yes
  for-upstream: yes
  fallback-enabled: no
`

// indent puts n spaces before every line of s.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+pad) + "\n"
}

// dnsPoolHead is an agent config's start for the DNS pool tests: a DNS front voting 3 of the
// pool's 3 executors, rotated on the schedule rotation, up to the pool's variants, which the
// caller appends.
func dnsPoolHead(rotation string) string {
	return `version: 1
log: {level: debug}
api: {listen: 127.0.0.1:0}
dns:
  listen: 127.0.0.1:0
  k: 3
  rate: -1
  timeout: 2s
  rebuild: {threshold: 3, window: 1m}
pool:
  protocol: dns
  desired: 3
  min: 3
  max_concurrent: 1
  redraw: true
  grace: 2s
  start_timeout: 30s
  drain_timeout: 5s
  health: {query: "www.proteus.lab. A", interval: 500ms, timeout: 1s, failures: 3}
  rotation: {every: "` + rotation + `"}
  variants:
`
}

// dnsPoolConfig is an agent config whose pool is four DNS server variants over image (a
// directory with the zone file and its manifest).
func dnsPoolConfig(image, rotation string) string {
	return dnsPoolHead(rotation) + `    - name: nsd
      image: ` + image + `
      command: [nsd, -d, -c, "{{.Dir}}/nsd.conf"]
      traits: {server: nsd}
      files:
        nsd.conf: |
` + indent(nsdConfTemplate, 10) + `    - name: knot
      image: ` + image + `
      command: [knotd, -c, "{{.Dir}}/knot.conf"]
      traits: {server: knot}
      files:
        knot.conf: |
` + indent(knotConfTemplate, 10) + `    - name: bind
      image: ` + image + `
      command: [named, -g, -4, -c, "{{.Dir}}/named.conf"]
      traits: {server: bind}
      files:
        named.conf: |
          options { directory "{{.State}}"; listen-on port {{.Port}} { {{.IP}}; }; listen-on-v6 { none; };
            recursion no; pid-file "{{.State}}/named.pid"; dnssec-validation no; session-keyfile "{{.State}}/session.key"; };
          controls { };
          zone "proteus.lab" { type primary; file "{{.Dir}}/zone"; };
    - name: unbound
      image: ` + image + `
      command: [unbound, -d, -c, "{{.Dir}}/unbound.conf"]
      traits: {server: unbound}
      files:
        unbound.conf: |
` + indent(unboundAuthConf, 10)
}

func needDNSServers(t *testing.T) {
	t.Helper()
	for _, p := range []string{"nsd", "knotd", "knotc", "named", "unbound"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (.ci/run installs it): %v", p, err)
		}
	}
}

// dnsImage writes the zone and its manifest into a fresh image directory.
func dnsImage(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "zone-image")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(dnsZoneFile(dnsTrue)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := process.WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runningAgent is an agent started by startDNSAgent.
type runningAgent struct {
	ready   Ready
	dataDir string
	token   string
	events  chan bus.Event // every bus event, from the API's /events stream
	done    chan error
	stop    context.CancelFunc
}

func startDNSAgent(t *testing.T, yaml string) *runningAgent {
	t.Helper()
	cfg, err := config.Parse("dns-agent.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ra := &runningAgent{dataDir: t.TempDir(), events: make(chan bus.Event, 1<<16), done: make(chan error, 1), stop: stop}
	readyc := make(chan Ready, 1)
	logf, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 200<<10 {
				b = b[len(b)-200<<10:]
			}
			t.Logf("agent log (tail):\n%s", b)
		}
	})
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		ra.done <- Run(ctx, Options{Config: cfg, DataDir: ra.dataDir, Logger: log, Ready: func(r Ready) { readyc <- r }})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-ra.done:
			ra.done <- err
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("agent did not stop within a minute")
		}
	})
	select {
	case ra.ready = <-readyc:
	case err := <-ra.done:
		ra.done <- err
		t.Fatalf("agent stopped before it was ready: %v", err)
	case <-time.After(120 * time.Second):
		t.Fatal("agent not ready within two minutes")
	}
	if !ra.ready.DNS || !ra.ready.Voting {
		t.Fatalf("agent ready as %+v, want the voting DNS front", ra.ready)
	}
	tok, err := os.ReadFile(ra.ready.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ra.token = strings.TrimSpace(string(tok))
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ra.ready.API.String()+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+ra.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e bus.Event
			if json.Unmarshal([]byte(data), &e) == nil {
				ra.events <- e
			}
		}
	}()
	return ra
}

func (ra *runningAgent) status(t *testing.T) api.Status {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+ra.ready.API.String()+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+ra.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st api.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// dnsCheck is one query of the load and what every answer must be.
type dnsCheck struct {
	name  string
	qtype uint16
	rcode int
	want  []string // the answer section's data, in any order (nil: no answer records)
}

var dnsChecks = []dnsCheck{
	{"www.proteus.lab.", dns.TypeA, dns.RcodeSuccess, []string{dnsTrue}},
	{"WwW.Proteus.LAB.", dns.TypeA, dns.RcodeSuccess, []string{dnsTrue}},
	{"multi.proteus.lab.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
	{"alias.proteus.lab.", dns.TypeA, dns.RcodeSuccess, []string{"www.proteus.lab.", dnsTrue}},
	{"mail.proteus.lab.", dns.TypeMX, dns.RcodeSuccess, []string{"10 mx1.proteus.lab."}},
	{"txt.proteus.lab.", dns.TypeTXT, dns.RcodeSuccess, []string{`"Hello World" "second string"`}},
	{"v6.proteus.lab.", dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::1"}},
	{"www.proteus.lab.", dns.TypeAAAA, dns.RcodeSuccess, nil},
	{"nothing.proteus.lab.", dns.TypeA, dns.RcodeNameError, nil},
}

func rdata(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// dnsLoad asks the checks round and round over UDP and TCP until stop is closed.
type dnsLoad struct {
	ok, servfail, failed, wrong, forged atomic.Int64
	mu                                  sync.Mutex
	problems                            []string
}

func (l *dnsLoad) problem(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) < 20 {
		l.problems = append(l.problems, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, a...))
	}
}

func (l *dnsLoad) run(addr, network string, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	c := dns.Client{Net: network, Timeout: 5 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		chk := dnsChecks[i%len(dnsChecks)]
		m := new(dns.Msg).SetQuestion(chk.name, chk.qtype)
		m.SetEdns0(1232, false)
		r, _, err := c.Exchange(m, addr)
		switch {
		case err != nil:
			l.failed.Add(1)
			l.problem("%s %s %s: %v", network, chk.name, dns.Type(chk.qtype), err)
			continue
		case r.Rcode == dns.RcodeServerFailure:
			l.servfail.Add(1)
			l.problem("%s %s %s: SERVFAIL", network, chk.name, dns.Type(chk.qtype))
			continue
		}
		var got []string
		for _, rr := range r.Answer {
			got = append(got, rdata(rr))
			if a, ok := rr.(*dns.A); ok && a.A.String() == dnsForged {
				l.forged.Add(1)
			}
		}
		if r.Rcode != chk.rcode || !sameSet(got, chk.want) {
			l.wrong.Add(1)
			l.problem("%s %s %s: %s %v, want %s %v", network, chk.name, dns.Type(chk.qtype), dns.RcodeToString[r.Rcode], got,
				dns.RcodeToString[chk.rcode], chk.want)
			continue
		}
		l.ok.Add(1)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x]--; seen[x] < 0 {
			return false
		}
	}
	return true
}

// poisonKnot makes a running Knot executor serve a forged www record: its zone file in its
// work directory rewritten and reloaded through its control socket (what an attacker who got
// into the server's data would do).
func poisonKnot(dataDir, id string) error {
	work := filepath.Join(dataDir, "executor", "process", "work", id)
	if err := os.WriteFile(filepath.Join(work, "zone"), []byte(dnsZoneFile(dnsForged)), 0o644); err != nil {
		return err
	}
	out, err := exec.Command("knotc", "-s", filepath.Join(work, process.StateDir, "knot.sock"), "zone-reload", "proteus.lab").CombinedOutput()
	if err != nil {
		return fmt.Errorf("knotc: %v: %s", err, out)
	}
	return nil // Knot reloads in the background; the front's dissent says when
}

// DNS executors are pool members: four real DNS servers rotate every second or two under
// query load over UDP and TCP with no failed query (SERVFAIL, timeout, wrong answer), and a
// Knot executor poisoned while in service is outvoted, reported and rebuilt from its image;
// the forged record never reaches a client, and no honest server is ever a dissenter.
func TestDNSPoolRotatesUnderLoad(t *testing.T) {
	needDNSServers(t)
	if testing.Short() {
		t.Skip("starts real DNS servers for half a minute")
	}
	rotateUnderLoadAndPoison(t, startDNSAgent(t, dnsPoolConfig(dnsImage(t), "1s-2s")), "knot", 0.7, poisonKnot)
}

// votedIn reports whether executor id (non-empty) is among the voters of no-consensus event e.
func votedIn(e bus.Event, id string) bool {
	votes, _ := e.Attrs["votes"].([]any)
	for _, v := range votes {
		if m, _ := v.(map[string]any); id != "" && m["executor"] == id {
			return true
		}
	}
	return false
}

// rotateUnderLoadAndPoison runs query load over UDP and TCP against ra's DNS front while the
// pool rotates on its schedule, poisons a young healthy executor of the variant named (after
// 6 s, with poison), and checks: no failed, wrong or forged answer (a SERVFAIL only where the
// poisoned executor was one of the voters: with it outvoting nothing and an honest one late,
// no answer has a quorum, and SERVFAIL is the right answer), at least six scheduled
// rotations, the poisoned executor reported for the forged name and rebuilt, and no honest
// executor ever dissenting on content. Young is the age below which an executor is young
// enough to poison (the schedule should not retire it before the vote does): its start to
// healthy must fit.
func rotateUnderLoadAndPoison(t *testing.T, ra *runningAgent, variant string, young float64, poison func(dataDir, id string) error) {
	t.Helper()
	front := ra.ready.Gateway.String()

	var load dnsLoad
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go load.run(front, "udp", stop, &wg)
	}
	wg.Add(1)
	go load.run(front, "tcp", stop, &wg)
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	rotations := map[string]bool{} // old executor IDs rotated on schedule
	var dissents []bus.Event
	var noConsensus []string
	byPoisoned := 0 // no-consensus events the poisoned executor voted in
	poisoned, rebuilt := "", false
	deadline := time.After(90 * time.Second)
	poisonAt := time.Now().Add(6 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !rebuilt || len(rotations) < 6 {
		select {
		case e := <-ra.events:
			switch e.Kind {
			case "gateway.dissent":
				dissents = append(dissents, e)
			case "gateway.no-consensus":
				if votedIn(e, poisoned) {
					byPoisoned++
					continue
				}
				if len(noConsensus) < 10 {
					noConsensus = append(noConsensus, fmt.Sprint(e.Time.Format("15:04:05.000"), " ", e.Attrs))
				}
			case "executor.rotation":
				old, _ := e.Attrs["old"].(string)
				reason, _ := e.Attrs["reason"].(string)
				if reason == "dissent" && old == poisoned && poisoned != "" {
					rebuilt = true
				} else if reason == "interval" {
					rotations[old] = true
				}
			}
		case <-tick.C:
			if poisoned != "" || time.Now().Before(poisonAt) {
				continue
			}
			for _, ex := range ra.status(t).Executors {
				if ex.Variant == variant && ex.State == "healthy" && ex.AgeSeconds < young {
					// a young one, so the schedule does not retire it before the vote does
					if err := poison(ra.dataDir, ex.ID); err != nil {
						t.Logf("poisoning %s: %v", ex.ID, err)
						continue
					}
					poisoned = ex.ID
					t.Logf("poisoned %s at %s", ex.ID, time.Now().Format("15:04:05.000"))
					break
				}
			}
		case <-deadline:
			t.Fatalf("after 90 s: %d scheduled rotations, poisoned %q, rebuilt %v; load: %d ok, %d SERVFAIL, %d failed, %d wrong: %v; no-consensus: %v",
				len(rotations), poisoned, rebuilt, load.ok.Load(), load.servfail.Load(), load.failed.Load(), load.wrong.Load(), load.problems, noConsensus)
		}
	}
	stopLoad()
	t.Logf("load: %d answers ok, %d SERVFAIL, %d failed, %d wrong, %d forged; %d scheduled rotations; %d dissent events",
		load.ok.Load(), load.servfail.Load(), load.failed.Load(), load.wrong.Load(), load.forged.Load(), len(rotations), len(dissents))
	if byPoisoned > 0 {
		t.Logf("%d no-consensus events with the poisoned executor among the voters (SERVFAIL allowed for these)", byPoisoned)
	}
	if n := max(0, load.servfail.Load()-int64(byPoisoned)) + load.failed.Load() + load.wrong.Load() + load.forged.Load(); n > 0 || len(noConsensus) > 0 {
		t.Errorf("%d failed queries (SERVFAIL %d, no answer %d, wrong %d, forged %d): %v; no-consensus events: %v", n, load.servfail.Load(), load.failed.Load(),
			load.wrong.Load(), load.forged.Load(), load.problems, noConsensus)
	}
	if load.ok.Load() < 1000 {
		t.Errorf("only %d answers: the load did not run", load.ok.Load())
	}
	reported, slow := false, 0
	for _, e := range dissents {
		ex, _ := e.Attrs["executor"].(string)
		if ex != poisoned {
			// An honest server may be late (the machine is shared: an availability dissent
			// is what being late is); it may never answer differently.
			if e.Attrs["kind"] != "availability" {
				t.Errorf("an honest executor dissented: %v", e.Attrs)
			} else if slow++; slow <= 3 {
				t.Logf("an honest executor was late: %v", e.Attrs)
			}
			continue
		}
		if q, _ := e.Attrs["query"].(string); strings.HasPrefix(strings.ToLower(q), "www.proteus.lab.") || strings.HasPrefix(q, "alias.") {
			reported = true
		}
	}
	if slow > 0 {
		t.Logf("%d availability dissents of honest executors", slow)
	}
	if !reported {
		t.Errorf("the poisoned executor %s was never reported for the forged record (%d dissent events)", poisoned, len(dissents))
	}
	for _, ex := range ra.status(t).Executors {
		if ex.ID == poisoned {
			t.Errorf("the poisoned executor %s is still in the pool (%s)", poisoned, ex.State)
		}
	}
}
