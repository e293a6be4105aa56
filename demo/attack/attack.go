// Package attack is the scripted attack of `proteus demo --attack`: four steps played against
// a running demo (demo/live), each done the way a real attacker (or, for the IDS alerts, a
// Suricata watching the attacker) would, and each waited on until the defense answered it
// through the agent's API: reconnaissance (a decoy and the shop probed, IDS scan alerts), a
// file-inclusion request only the deliberately weakened variant answers (the vote masks it),
// a file tampered with in one executor (file integrity), and IDS alerts of an exploit
// attempt and command and control (the attacker gets blocked and sees it). A step whose
// defense produces no decision fails, naming the step.
//
// It imports api, bus, executor/process (the work dir layout) and store; it must not import
// cmd or engine/agent.
package attack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/engine"
	"github.com/proteus-defense/proteus/executor/process"
	"github.com/proteus-defense/proteus/store"
)

// Target is the running demo.
type Target struct {
	DataDir string     // the demo's: the API token and address, the executors' work dirs
	Shop    string     // host:port of the voting gateway
	Decoy   string     // host:port of the SSH decoy
	EVE     string     // the EVE JSON file the engine tails
	From    netip.Addr // the attacker's address: a local address the demo's engine may block
	// WeakVariant is the executor variant with the file-inclusion bug.
	WeakVariant string
	// StepTimeout bounds the wait for one step's defense (default 60s).
	StepTimeout time.Duration
}

// Step is one step played, as it is reported.
type Step struct {
	N, Of   int
	Name    string
	Did     string // what the attacker did and saw
	Defense string // what the defense did: decisions, countermeasures
	// Decisions are the decisions the step produced (at least one); Events counts the bus
	// events seen while it ran, by kind.
	Decisions []store.Decision
	Events    map[string]int
}

// ErrNoDefense is returned when a step's action produced no decision in time.
var ErrNoDefense = errors.New("attack: the defense did not answer")

// player holds what the steps share.
type player struct {
	t      Target
	api    *api.Client
	http   *http.Client // from t.From
	local  *http.Client // from 127.0.0.1, an innocent client
	mu     sync.Mutex
	events []bus.Event
}

// Play runs the steps in order and calls report after each; it stops at the first step that
// fails.
func Play(ctx context.Context, t Target, report func(Step)) error {
	if t.StepTimeout == 0 {
		t.StepTimeout = time.Minute
	}
	c, err := api.NewClient(t.DataDir, "")
	if err != nil {
		return err
	}
	p := &player{t: t, api: c, http: clientFrom(t.From), local: clientFrom(netip.Addr{})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, err := c.Events(ctx, "")
	if err != nil {
		return fmt.Errorf("attack: event stream: %w", err)
	}
	go func() {
		for e := range evs {
			p.mu.Lock()
			p.events = append(p.events, e)
			p.mu.Unlock()
		}
	}()
	steps := []struct {
		name string
		run  func(context.Context, *Step) error
	}{
		{"reconnaissance", p.recon},
		{"file inclusion, masked by the vote", p.fileInclusion},
		{"tampered file in one executor", p.tamper},
		{"exploit attempt seen by the IDS", p.exploit},
	}
	for i, s := range steps {
		st := Step{N: i + 1, Of: len(steps), Name: s.name}
		p.mu.Lock()
		mark := len(p.events)
		p.mu.Unlock()
		if err := s.run(ctx, &st); err != nil {
			return fmt.Errorf("attack: step %d (%s): %w", st.N, s.name, err)
		}
		// The decision is read through the API as soon as it is stored; its events come over
		// the stream a moment later: wait for them (briefly) so the step's line counts them.
		p.awaitDecisionEvent(ctx, mark)
		p.mu.Lock()
		st.Events = map[string]int{}
		for _, e := range p.events[mark:] {
			st.Events[e.Kind]++
		}
		p.mu.Unlock()
		report(st)
	}
	return nil
}

// awaitDecisionEvent waits, at most two seconds, until the event stream has delivered an
// engine.decision event after the first mark events.
func (p *player) awaitDecisionEvent(ctx context.Context, mark int) {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		seen := slices.ContainsFunc(p.events[mark:], func(e bus.Event) bool { return e.Kind == engine.EventDecision })
		p.mu.Unlock()
		if seen {
			return
		}
	}
}

// clientFrom is an HTTP client whose connections leave from addr (any when invalid), one
// connection per request, so a block applies to the next request.
func clientFrom(addr netip.Addr) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if addr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: addr.AsSlice()}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("User-Agent", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// eve appends one alert line to the EVE log, as Suricata would on seeing the attacker.
func (p *player) eve(sig, category string, severity int) error {
	_, port, _ := net.SplitHostPort(p.t.Shop)
	line := fmt.Sprintf(`{"timestamp":%q,"flow_id":%d,"event_type":"alert","src_ip":%q,"src_port":%d,"dest_ip":"127.0.0.1","dest_port":%s,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2000001,"rev":1,"signature":%q,"category":%q,"severity":%d},"app_proto":"http"}`+"\n",
		time.Now().UTC().Format("2006-01-02T15:04:05.000000-0700"), time.Now().UnixNano()&0xffffffff, p.t.From, 40000+time.Now().Nanosecond()%20000, port, sig, category, severity)
	f, err := os.OpenFile(p.t.EVE, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("EVE log: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("EVE log: %w", err)
	}
	return nil
}

// await polls the decisions made since since (about the attacker when bySource) until one
// satisfies want, and returns every decision since then. A decision that only partly
// answers (want false, but there is one) is returned after the timeout with ok false.
func (p *player) await(ctx context.Context, since time.Time, bySource bool, want func(store.Decision) bool) ([]store.Decision, error) {
	q := url.Values{"since": {since.Add(-time.Second).UTC().Format(time.RFC3339)}}
	if bySource {
		q.Set("source", p.t.From.String())
	}
	deadline := time.Now().Add(p.t.StepTimeout)
	for {
		ds, err := p.api.Decisions(ctx, q)
		if err != nil {
			return nil, err
		}
		ds = slices.DeleteFunc(ds, func(d store.Decision) bool { return d.Time.Before(since) })
		if slices.ContainsFunc(ds, want) {
			return ds, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w within %s (%d decisions since the step began, none as expected)", ErrNoDefense, p.t.StepTimeout, len(ds))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func hasEvidence(sensor string) func(store.Decision) bool {
	return func(d store.Decision) bool {
		return slices.ContainsFunc(d.Evidence, func(e store.Evidence) bool { return e.Sensor == sensor })
	}
}

func acted(pred func(store.Decision) bool) func(store.Decision) bool {
	return func(d store.Decision) bool { return d.Verdict == "act" && pred(d) }
}

// describe sums up the last decision that satisfies want, or the last one.
func describe(ds []store.Decision, want func(store.Decision) bool) string {
	d := ds[len(ds)-1]
	for _, x := range ds {
		if want(x) {
			d = x
		}
	}
	s := fmt.Sprintf("decision %s: %s, Pr(attack) %.2f (α %.2f, β %.2f)", d.ID, d.Verdict, d.Probability, d.Alpha, d.Beta)
	if d.StageID != "" {
		s += fmt.Sprintf(", stage %s, the game chose %s signalling %s", d.StageID, orDash(d.Strategy), orDash(d.Signal))
	}
	var cms []string
	for _, c := range d.Countermeasures {
		x := c.Kind
		if c.Target != "" {
			x += " " + c.Target
		}
		if !c.Expires.IsZero() {
			x += " until " + c.Expires.Local().Format("15:04:05")
		}
		if c.Error != "" {
			x += " (not done: " + c.Error + ")"
		}
		cms = append(cms, x)
	}
	if len(cms) > 0 {
		s += "; " + strings.Join(cms, ", ")
	}
	if n := len(ds); n > 1 {
		s += fmt.Sprintf(" (%d decisions)", n)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// recon: the SSH decoy greeted and answered, scanner paths probed on the shop, and the scan
// alerts the IDS raises for it.
func (p *player) recon(ctx context.Context, st *Step) error {
	since := time.Now()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: p.t.From.AsSlice()}}
	conn, err := d.DialContext(ctx, "tcp", p.t.Decoy)
	if err != nil {
		return fmt.Errorf("decoy: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	greeting, err := bufio.NewReader(conn).ReadString('\n')
	fmt.Fprint(conn, "SSH-2.0-Nmap-SSH2-Hostkey\r\n")
	conn.Close()
	if err != nil {
		return fmt.Errorf("decoy greeting: %w", err)
	}
	var probes []string
	for _, path := range []string{"/.git/config", "/wp-login.php", "/admin/"} {
		code, _, err := get(ctx, p.http, "http://"+p.t.Shop+path)
		if err != nil {
			return fmt.Errorf("probe %s: %w", path, err)
		}
		probes = append(probes, fmt.Sprintf("%s %d", path, code))
	}
	for range 2 {
		if err := p.eve("ET SCAN Nmap Scripting Engine User-Agent Detected (Nmap Scripting Engine)", "Attempted Information Leak", 2); err != nil {
			return err
		}
	}
	want := acted(hasEvidence("decoy"))
	ds, err := p.await(ctx, since, true, want)
	if err != nil {
		return err
	}
	st.Decisions = ds
	st.Did = fmt.Sprintf("from %s: the SSH service on %s greeted %q (a decoy); probed the shop: %s; the IDS raised 2 scan alerts",
		p.t.From, p.t.Decoy, strings.TrimSpace(greeting), strings.Join(probes, ", "))
	st.Defense = describe(ds, want)
	return nil
}

// fileInclusion: ?file=../../(...)/etc/passwd, which only the weakened variant honours. Asked
// directly it leaks the file; through the gateway the majority's page comes back and the
// weakened executor is reported dissenting.
func (p *player) fileInclusion(ctx context.Context, st *Step) error {
	since := time.Now()
	path := "/about.html?file=" + strings.Repeat("../", 24) + "etc/passwd" // deeper than any work dir
	leaked := func(body string) bool { return strings.Contains(body, "root:") }
	status, err := p.api.Status(ctx)
	if err != nil {
		return err
	}
	direct := "not running"
	for _, x := range status.Executors {
		if x.Variant == p.t.WeakVariant && x.State == "healthy" {
			code, body, err := get(ctx, p.http, "http://"+x.Address+path)
			switch {
			case err != nil:
				direct = "unreachable directly: " + err.Error()
			case leaked(body):
				direct = fmt.Sprintf("asked directly, leaks /etc/passwd (%d, %d bytes)", code, len(body))
			default:
				direct = fmt.Sprintf("asked directly, answers %d without the file", code)
			}
			break
		}
	}
	code, body, err := get(ctx, p.http, "http://"+p.t.Shop+path)
	if err != nil {
		return err
	}
	if leaked(body) {
		return errors.New("the gateway answered with the leaked /etc/passwd: the vote did not mask the weakened variant")
	}
	want := hasEvidence("gateway")
	ds, err := p.await(ctx, since, true, want)
	if err != nil {
		return fmt.Errorf("%w (%s %s; the gateway answered %d)", err, p.t.WeakVariant, direct, code)
	}
	st.Decisions = ds
	st.Did = fmt.Sprintf("GET %s: %s (weakened) %s; through the gateway: %d, the majority's page (%d bytes), nothing leaked",
		path, p.t.WeakVariant, direct, code, len(body))
	st.Defense = "the vote masked it and reported the dissent; " + describe(ds, want)
	return nil
}

// tamper: a page of one running executor rewritten in its work dir, as an attacker with a
// foothold in it would.
func (p *player) tamper(ctx context.Context, st *Step) error {
	since := time.Now()
	status, err := p.api.Status(ctx)
	if err != nil {
		return err
	}
	// The victim: not the weakened variant when another serves, and the youngest, since a
	// rotation due before file integrity looks (vigilance shortens the interval after the first
	// steps) would take the tampered work dir away and leave the step without a decision.
	var victim api.ExecutorStatus
	serving := 0
	better := func(x api.ExecutorStatus) bool {
		if weak, was := x.Variant == p.t.WeakVariant, victim.Variant == p.t.WeakVariant; weak != was {
			return !weak
		}
		return x.AgeSeconds < victim.AgeSeconds
	}
	for _, x := range status.Executors {
		if x.State == "healthy" {
			serving++
			if victim.ID == "" || better(x) {
				victim = x
			}
		}
	}
	if victim.ID == "" {
		return errors.New("no healthy executor to tamper with")
	}
	page := filepath.Join(process.WorkDir(p.t.DataDir, victim.ID), "site", "index.html")
	if err := os.WriteFile(page, []byte("<h1>defaced by the demo's attacker</h1>\n"), 0o644); err != nil {
		return fmt.Errorf("tamper: %w", err)
	}
	quarantined := func(d store.Decision) bool {
		return slices.ContainsFunc(d.Countermeasures, func(c store.Countermeasure) bool { return c.Kind == "quarantine" && c.Target == victim.ID })
	}
	want := func(d store.Decision) bool { return hasEvidence("fim")(d) && quarantined(d) }
	ds, err := p.await(ctx, since, false, want)
	if err != nil {
		return err
	}
	// Wait (bounded) until it is out of service and replaced, then look at the shop.
	replaced := ""
	deadline := time.Now().Add(p.t.StepTimeout)
	for replaced == "" && time.Now().Before(deadline) {
		s, err := p.api.Status(ctx)
		if err != nil {
			return err
		}
		healthy, in := 0, false
		var fresh []string
		for _, x := range s.Executors {
			if x.ID == victim.ID && x.State != "quarantined" {
				in = true
			}
			if x.State == "healthy" && x.ID != victim.ID {
				healthy++
				if x.AgeSeconds < time.Since(since).Seconds() {
					fresh = append(fresh, x.ID+" ("+x.Variant+")")
				}
			}
		}
		if !in && healthy >= serving && len(fresh) > 0 {
			sort.Strings(fresh)
			replaced = strings.Join(fresh, ", ")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if replaced == "" {
		return fmt.Errorf("executor %s was not replaced within %s", victim.ID, p.t.StepTimeout)
	}
	code, body, err := get(ctx, p.local, "http://"+p.t.Shop+"/")
	if err != nil {
		return err
	}
	if strings.Contains(body, "defaced") {
		return errors.New("the shop serves the defaced page after the defense")
	}
	st.Decisions = ds
	st.Did = fmt.Sprintf("rewrote site/index.html in executor %s (%s)", victim.ID, victim.Variant)
	st.Defense = fmt.Sprintf("file integrity saw the change; %s; replaced by %s; the shop serves the original page (%d)",
		describe(ds, want), replaced, code)
	return nil
}

// exploit: the IDS alerts of an exploit attempt and a command-and-control beacon from the
// attacker, until the game's strategy blocks it; then the attacker is refused and an
// innocent client is not.
func (p *player) exploit(ctx context.Context, st *Step) error {
	since := time.Now()
	for range 2 {
		if err := p.eve("ET EXPLOIT Apache Struts OGNL injection in URI (CVE-2017-5638)", "Attempted Administrator Privilege Gain", 1); err != nil {
			return err
		}
	}
	if err := p.eve("ET MALWARE Cobalt Strike Beacon Observed", "A Network Trojan was detected", 1); err != nil {
		return err
	}
	target := netip.PrefixFrom(p.t.From, p.t.From.BitLen()).String()
	blocked := func(d store.Decision) bool {
		return d.Verdict == "act" && slices.ContainsFunc(d.Countermeasures, func(c store.Countermeasure) bool {
			return c.Kind == "block" && c.Target == target && c.Error == ""
		})
	}
	ds, err := p.await(ctx, since, true, blocked)
	if err != nil {
		return err
	}
	code, _, err := get(ctx, p.http, "http://"+p.t.Shop+"/")
	if err != nil {
		return err
	}
	if code != http.StatusForbidden {
		return fmt.Errorf("the attacker is blocked but the shop answered it %d", code)
	}
	other, _, err := get(ctx, p.local, "http://"+p.t.Shop+"/")
	if err != nil {
		return err
	}
	if other != http.StatusOK {
		return fmt.Errorf("another client got %d after the attacker's block", other)
	}
	st.Decisions = ds
	st.Did = fmt.Sprintf("the IDS raised 2 ET EXPLOIT alerts (Apache Struts OGNL injection) and 1 ET MALWARE (Cobalt Strike beacon) from %s", p.t.From)
	st.Defense = fmt.Sprintf("%s; the attacker now gets %d, other clients %d", describe(ds, blocked), code, other)
	return nil
}
