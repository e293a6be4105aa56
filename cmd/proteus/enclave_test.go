package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/enclave"
)

// enclaveLab is an enclave key plus member processes of the real binary.
type enclaveLab struct {
	t      *testing.T
	bin    string
	dir    string
	key    string // private key file
	pub    string // ed25519:...
	extra  string // extra YAML under enclave:
	agents []*enclaveAgent
}

type enclaveAgent struct {
	name string
	dir  string
	cfg  string
	id   string
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func newEnclaveLab(t *testing.T, name, extra string) *enclaveLab {
	t.Helper()
	lab := &enclaveLab{t: t, bin: proteusBinary(t), dir: t.TempDir(), extra: extra}
	lab.key = filepath.Join(lab.dir, name+".key")
	code, out, errs := runCLI(t, "enclave", "keygen", "--out", lab.key, "-o", "json")
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	var k struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	lab.pub = k.PublicKey
	return lab
}

// addAgent creates a member's data dir, identity and certificate and starts it with the
// real binary, bootstrapping to every agent started before it.
func (l *enclaveLab) addAgent(name, exposure string) *enclaveAgent {
	t := l.t
	t.Helper()
	a := &enclaveAgent{name: name, dir: filepath.Join(l.dir, name)}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "--data-dir", a.dir, "enclave", "id")
	if code != 0 {
		t.Fatalf("id: %s", errs)
	}
	a.id = strings.TrimSpace(out)
	if code, _, errs := runCLI(t, "enclave", "admit", a.id, "--key", l.key, "--enclave", "lab",
		"--valid", "1h", "--out", filepath.Join(a.dir, "member.cert")); code != 0 {
		t.Fatalf("admit: %s", errs)
	}
	var boot []string
	for _, b := range l.agents {
		st := b.status(t)
		boot = append(boot, st.Addrs[0])
	}
	a.cfg = filepath.Join(a.dir, "agent.yaml")
	yaml := fmt.Sprintf(`version: 1
log: {level: info, format: text}
enclave:
  enabled: true
  name: lab
  key: %s
  certificate: member.cert
  listen: [/ip4/127.0.0.1/tcp/0]
  bootstrap: [%s]
  exposure: %s
%s`, l.pub, strings.Join(boot, ", "), exposure, l.extra)
	if err := os.WriteFile(a.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "validate", a.cfg); code != 0 && !strings.Contains(errs, "pool") {
		t.Logf("validate (full agent config) says: %s", errs)
	}
	a.start(t, l.bin)
	l.agents = append(l.agents, a)
	return a
}

func (a *enclaveAgent) start(t *testing.T, bin string) {
	t.Helper()
	_ = os.Remove(filepath.Join(a.dir, enclave.ControlFile))
	a.log = &syncBuffer{}
	a.cmd = exec.Command(bin, "--data-dir", a.dir, "enclave", "run", "-c", a.cfg)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() { a.stop(t) })
	waitFile(t, filepath.Join(a.dir, enclave.ControlFile), a.done, a.log.String)
}

func (a *enclaveAgent) stop(t *testing.T) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Errorf("%s did not stop on SIGTERM:\n%s", a.name, a.log.String())
	}
}

func (a *enclaveAgent) client(t *testing.T) *enclave.Client {
	t.Helper()
	c, err := enclave.Dial(a.dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (a *enclaveAgent) status(t *testing.T) enclave.Status {
	t.Helper()
	st, err := a.client(t).Status(context.Background())
	if err != nil {
		t.Fatalf("%s status: %v\n%s", a.name, err, a.log.String())
	}
	return st
}

// cli runs the real binary against this agent's data dir.
func (a *enclaveAgent) cli(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"--data-dir", a.dir, "enclave"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("proteus enclave %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // hang guard, not a performance bound
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *enclaveAgent) decision(t *testing.T, indicator string) (enclave.DecisionRecord, bool) {
	t.Helper()
	recs, err := a.client(t).Decisions(context.Background(), indicator)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Event == "sighting" {
			return r, true
		}
	}
	return enclave.DecisionRecord{}, false
}

func (a *enclaveAgent) blocks(t *testing.T, prefix string) bool {
	t.Helper()
	acts, err := a.client(t).Actions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range acts {
		if x.Kind == "block" && x.Target.Prefix.String() == prefix {
			return true
		}
	}
	return false
}

func (a *enclaveAgent) trustOf(t *testing.T, bin, peer string) (float64, bool) {
	t.Helper()
	var rows []enclave.PeerTrust
	if err := json.Unmarshal([]byte(a.cli(t, bin, "trust", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Peer == peer {
			return r.Score, true
		}
	}
	return 0, false
}

const (
	linuxExposure   = "{os: linux, services: [{port: 22}]}"
	windowsExposure = "{os: windows, services: [{port: 3389}]}"
	labTuning       = "  sensing: true\n  decision: {act: 0.45, defer: 0.3}\n  trust: {window: 2s}\n  cert_timeout: 15s\n"
)

// Six members and one outsider as separate processes of the real binary: a true sighting
// is blocked where the members' own sensors saw it and deferred (vigilance) at every other
// relevant member, a lying member ends up ignored with trust below the act threshold, the
// outsider is refused, and a restarted member keeps its trust table and its pending reverts.
func TestEnclaveProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts seven processes")
	}
	lab := newEnclaveLab(t, "lab", labTuning)
	var honest []*enclaveAgent
	for i := 0; i < 4; i++ {
		honest = append(honest, lab.addAgent(fmt.Sprintf("honest%d", i), linuxExposure))
	}
	other := lab.addAgent("windows", windowsExposure)
	liar := lab.addAgent("liar", linuxExposure)
	all := append(append([]*enclaveAgent{}, honest...), other, liar)
	for _, a := range all {
		waitFor(t, a.name+" sees the enclave", func() bool { return a.status(t).TopicPeers == len(all)-1 })
	}

	// 1. A true sighting seen by two honest members: they block it, the other relevant
	// members defer, the irrelevant one stores it.
	bin := lab.bin
	var res enclave.PublishResult
	out := honest[0].cli(t, bin, "publish", "--target", "203.0.113.7", "--confidence", "90", "--ttl", "1h", "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	honest[1].cli(t, bin, "publish", "--target", "203.0.113.7", "--confidence", "90", "--ttl", "1h")
	for _, a := range honest[:2] {
		waitFor(t, a.name+" blocks the true attacker", func() bool { return a.blocks(t, "203.0.113.7/32") })
	}
	for _, a := range append(append([]*enclaveAgent{}, honest[2:]...), liar) {
		waitFor(t, a.name+" defers the reported attacker", func() bool {
			d, ok := a.decision(t, res.Indicator)
			return ok && d.Decision == enclave.Defer
		})
		if a.blocks(t, "203.0.113.7/32") {
			t.Errorf("%s blocked on one peer's word", a.name)
		}
	}
	waitFor(t, "irrelevant member stores it", func() bool { _, ok := other.decision(t, res.Indicator); return ok })
	if d, _ := other.decision(t, res.Indicator); d.Decision != enclave.Irrelevant || other.blocks(t, "203.0.113.7/32") {
		t.Errorf("member with another exposure acted: %+v", d)
	}

	// 2. The liar keeps reporting addresses nobody else sees.
	var lastLie string
	for i := 0; ; i++ {
		if i > 30 {
			t.Fatal("liar never ignored")
		}
		var r enclave.PublishResult
		if err := json.Unmarshal([]byte(liar.cli(t, bin, "publish", "--target", fmt.Sprintf("192.0.2.%d", i+1), "--confidence", "100", "-o", "json")), &r); err != nil {
			t.Fatal(err)
		}
		lastLie = r.Indicator
		time.Sleep(2500 * time.Millisecond) // let the window pass: the members' sensors saw nothing
		d, ok := honest[3].decision(t, lastLie)
		if tr, _ := honest[3].trustOf(t, bin, liar.id); ok && d.Decision == enclave.Ignore && tr < 0.45 {
			break
		}
	}
	for _, a := range honest {
		tr, ok := a.trustOf(t, bin, liar.id)
		if !ok || tr >= 0.45 {
			t.Errorf("%s: liar's trust %v (known %v), want < act threshold 0.45", a.name, tr, ok)
		}
	}
	if tr, _ := honest[1].trustOf(t, bin, honest[0].id); tr <= 0.5 {
		t.Errorf("honest reporter confirmed by honest1's own evidence has trust %v, want above neutral", tr)
	}
	if !strings.Contains(honest[2].cli(t, bin, "peers"), "MEMBERSHIP") {
		t.Errorf("peers table has no header")
	}

	// 3. An outsider with a certificate from another enclave key is refused.
	outsiderLab := newEnclaveLab(t, "lab", labTuning)
	outsiderLab.agents = []*enclaveAgent{honest[0]} // bootstrap to a real member
	outsider := outsiderLab.addAgent("outsider", linuxExposure)
	waitFor(t, "outsider denied", func() bool { return honest[0].status(t).Stats.Denied >= 1 })
	var ores enclave.PublishResult
	if err := json.Unmarshal([]byte(outsider.cli(t, bin, "publish", "--target", "198.51.100.66", "-o", "json")), &ores); err != nil {
		t.Fatal(err)
	}
	probe := honest[1].cli(t, bin, "publish", "--target", "198.51.100.67", "-o", "json")
	var pres enclave.PublishResult
	_ = json.Unmarshal([]byte(probe), &pres)
	waitFor(t, "probe after outsider", func() bool { _, ok := honest[0].decision(t, pres.Indicator); return ok })
	for _, a := range all {
		if _, ok := a.decision(t, ores.Indicator); ok {
			t.Errorf("%s processed the outsider's sighting", a.name)
		}
	}

	// 4. Restart a member: trust and pending reverts survive.
	r := honest[1]
	short := r.cli(t, bin, "publish", "--target", "198.51.100.99", "--confidence", "100", "--ttl", "8s", "-o", "json")
	var sres enclave.PublishResult
	_ = json.Unmarshal([]byte(short), &sres)
	waitFor(t, "short-lived block", func() bool { return r.blocks(t, "198.51.100.99/32") })
	before, _ := r.trustOf(t, bin, liar.id)
	actsBefore, _ := r.client(t).Actions(context.Background())
	r.stop(t)
	r.start(t, bin)
	after, ok := r.trustOf(t, bin, liar.id)
	if !ok || after > before+0.02 || after < before-0.02 {
		t.Errorf("liar's trust after restart %v (known %v), before %v", after, ok, before)
	}
	actsAfter, _ := r.client(t).Actions(context.Background())
	if len(actsAfter) != len(actsBefore) {
		t.Errorf("actions after restart %d, before %d", len(actsAfter), len(actsBefore))
	}
	if !r.blocks(t, "198.51.100.99/32") {
		t.Errorf("pending block lost across restart")
	}
	waitFor(t, "restored block reverted at its expiry", func() bool { return !r.blocks(t, "198.51.100.99/32") })
	if !r.blocks(t, "203.0.113.7/32") {
		t.Errorf("long-lived block lost across restart")
	}
}

func TestEnclaveCLIUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"enclave", "keygen"}, 2, "--out"},
		{[]string{"enclave", "keygen", "--out", filepath.Join(dir, "k"), "-o", "yaml"}, 2, "-o must be"},
		{[]string{"enclave", "admit", "not-a-peer", "--key", "x", "--enclave", "lab"}, 2, "not a peer ID"},
		{[]string{"enclave", "admit", "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"}, 2, "--key and --enclave"},
		{[]string{"enclave", "publish", "--target", "nonsense"}, 2, "target"},
		{[]string{"enclave", "publish", "--target", "192.0.2.1", "--confidence", "0"}, 2, "confidence"},
		{[]string{"enclave", "revoke", "nope"}, 2, "not an indicator"},
		{[]string{"enclave", "run"}, 2, "-c FILE"},
		{[]string{"enclave", "run", "-c", "x.yaml", "--block-with", "iptables"}, 2, "--block-with"},
		{[]string{"--data-dir", dir, "enclave", "peers"}, 1, "no running node"},
		{[]string{"enclave", "bench", "--peers", "1"}, 2, "--peers"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errs := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d stderr %q; want %d containing %q", code, errs, tt.code, tt.want)
			}
		})
	}
	cfg := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(cfg, []byte("version: 1\nenclave:\n  enabled: true\n  name: lab\n"), 0o600)
	if code, _, errs := runCLI(t, "enclave", "run", "-c", cfg); code != 2 || !strings.Contains(errs, "enclave.key") {
		t.Errorf("bad config: exit %d %s", code, errs)
	}
	off := filepath.Join(dir, "off.yaml")
	_ = os.WriteFile(off, []byte("version: 1\n"), 0o600)
	if code, _, errs := runCLI(t, "enclave", "run", "-c", off); code != 2 || !strings.Contains(errs, "enabled is false") {
		t.Errorf("disabled: exit %d %s", code, errs)
	}
}

func TestEnclaveKeygenAdmitRoundTrip(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "enclave.key")
	code, out, errs := runCLI(t, "enclave", "keygen", "--out", key)
	if code != 0 || !strings.Contains(out, "key: ed25519:") {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	if code, _, _ := runCLI(t, "enclave", "keygen", "--out", key); code != 1 {
		t.Errorf("keygen overwrote an existing key (exit %d)", code)
	}
	code, out, _ = runCLI(t, "--data-dir", dir, "enclave", "id")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "12D3KooW") {
		t.Fatalf("id: %d %q", code, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, enclave.IdentityFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity mode: %v %v", fi, err)
	}
	code, out, errs = runCLI(t, "enclave", "admit", id, "--key", key, "--enclave", "lab", "--valid", "24h")
	if code != 0 {
		t.Fatalf("admit: %s", errs)
	}
	c, err := enclave.DecodeCertificate(bytes.TrimSpace([]byte(out)))
	if err != nil || c.Peer != id || c.Enclave != "lab" {
		t.Fatalf("certificate %+v: %v", c, err)
	}
	// The seal key: derived again from the same enclave key, the same bytes; another epoch differs.
	sk := filepath.Join(dir, "seal-1.key")
	if code, out, errs := runCLI(t, "enclave", "seal-key", "--key", key, "--enclave", "lab", "--epoch", "1", "--out", sk); code != 0 || !strings.Contains(out, "epoch 1") {
		t.Fatalf("seal-key: %d %s %s", code, out, errs)
	}
	if fi, err := os.Stat(sk); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seal key mode: %v %v", fi, err)
	}
	if code, _, _ := runCLI(t, "enclave", "seal-key", "--key", key, "--enclave", "lab", "--out", sk); code != 1 {
		t.Errorf("seal-key overwrote an existing file (exit %d)", code)
	}
	got, err := enclave.ReadSealKey(sk)
	ek, _ := enclave.ReadEnclaveKey(key)
	want, _ := enclave.DeriveSealKey(ek, "lab", 1)
	next, _ := enclave.DeriveSealKey(ek, "lab", 2)
	if err != nil || !bytes.Equal(got.Key, want.Key) || bytes.Equal(got.Key, next.Key) {
		t.Fatalf("seal key %+v, %v", got, err)
	}
	if code, _, errs := runCLI(t, "enclave", "seal-key", "--key", key, "--enclave", "lab", "--epoch", "0", "--out", sk+"0"); code != 2 || !strings.Contains(errs, "--epoch") {
		t.Errorf("epoch 0: %d %s", code, errs)
	}
}

// The agent runs the enclave node when enclave.enabled: `proteus enclave publish` against
// the agent's data dir acts through the agent's own countermeasure manager (its gateway
// blocklist), as `proteus countermeasures` shows, and the revocation reverts it.
func TestAgentRunsEnclave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the agent with its executors")
	}
	bin := proteusBinary(t)
	data := t.TempDir()
	_, out, _ := runCLI(t, "--data-dir", data, "enclave", "id")
	id := strings.TrimSpace(out)
	cfg := filepath.Join(data, "agent.yaml")
	yaml := string(config.DefaultYAML()) + fmt.Sprintf(`enclave:
  enabled: true
  name: lab
  allowlist: [%s]
  listen: [/ip4/127.0.0.1/tcp/0]
  exposure: %s
`, id, linuxExposure)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "validate", cfg); code != 0 {
		t.Fatalf("validate: %s", errs)
	}
	log := &syncBuffer{}
	cmd := exec.Command(bin, "--data-dir", data, "agent", "-c", cfg, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0")
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitFile(t, filepath.Join(data, GatewayAddrFile), exited, log.String)
	waitFile(t, filepath.Join(data, enclave.ControlFile), exited, log.String)
	agentBlocks := func() bool {
		out, err := exec.Command(bin, "--data-dir", data, "countermeasures", "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("countermeasures: %v\n%s", err, out)
		}
		return strings.Contains(string(out), "203.0.113.50/32") && strings.Contains(string(out), enclave.Source("203.0.113.50"))
	}
	res, err := exec.Command(bin, "--data-dir", data, "enclave", "publish", "--target", "203.0.113.50", "--ttl", "1m", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, res)
	}
	var r enclave.PublishResult
	if err := json.Unmarshal(res, &r); err != nil || r.Decision.Decision != enclave.Act || !r.Decision.Applied {
		t.Fatalf("publish result %s: %v", res, err)
	}
	if !agentBlocks() {
		t.Errorf("the agent's countermeasures do not show the enclave's block")
	}
	if out, err := exec.Command(bin, "--data-dir", data, "enclave", "revoke", r.Indicator).CombinedOutput(); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if agentBlocks() {
		t.Errorf("block still active after the revocation")
	}
}

// `enclave expel` extends the signed member revocation list: each run adds peers and
// raises the serial; the list verifies with the enclave key and no other.
func TestEnclaveExpelList(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "enclave.key")
	if code, _, errs := runCLI(t, "enclave", "keygen", "--out", key); code != 0 {
		t.Fatal(errs)
	}
	list := filepath.Join(dir, "revoked.json")
	a, b := "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp", "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	for _, p := range []string{a, b} {
		if code, _, errs := runCLI(t, "enclave", "expel", p, "--key", key, "--enclave", "lab", "--list", list); code != 0 {
			t.Fatalf("expel %s: %s", p, errs)
		}
	}
	l, err := enclave.ReadMemberRevocations(list)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := enclave.ReadEnclaveKey(key)
	if l.Serial != 2 || len(l.Peers) != 2 || l.Verify(k.Public().(ed25519.PublicKey), "lab") != nil {
		t.Errorf("list %+v", l)
	}
	if l.Verify(k.Public().(ed25519.PublicKey), "prod") == nil {
		t.Errorf("list verifies for another enclave")
	}
	for _, args := range [][]string{
		{"enclave", "expel", a},
		{"enclave", "expel", "nope", "--key", key, "--enclave", "lab", "--list", list},
		{"enclave", "expel", a, "--key", key, "--enclave", "prod", "--list", list},
	} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
