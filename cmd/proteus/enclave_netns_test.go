package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/enclave"
)

// netnsLab is three network namespaces wired A <-> B <-> C with two veth pairs and no IP
// routing through B: a report from A reaches C only because B's agent relays it on the
// GossipSub topic. A talks TCP to B, C talks QUIC to B.
type netnsLab struct {
	t  *testing.T
	ns [3]string
}

var netnsSeq int // distinguishes the labs of one test process

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (ip netns add)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	l := &netnsLab{t: t}
	netnsSeq++
	tag := fmt.Sprintf("pe%d%d", os.Getpid()%100000, netnsSeq%10)
	for i := range l.ns {
		l.ns[i] = fmt.Sprintf("%s-%c", tag, 'a'+i)
		ipCmd(t, "netns", "add", l.ns[i])
		ns := l.ns[i]
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	// A(10.201.1.1) -- (10.201.1.2)B(10.201.2.2) -- (10.201.2.1)C
	pairs := []struct{ left, right int }{{0, 1}, {2, 1}}
	for k, p := range pairs {
		l1, l2 := fmt.Sprintf("%sv%dl", tag, k), fmt.Sprintf("%sv%dr", tag, k)
		ipCmd(t, "link", "add", l1, "type", "veth", "peer", "name", l2)
		ipCmd(t, "link", "set", l1, "netns", l.ns[p.left])
		ipCmd(t, "link", "set", l2, "netns", l.ns[p.right])
		ipCmd(t, "-n", l.ns[p.left], "addr", "add", fmt.Sprintf("10.201.%d.1/24", k+1), "dev", l1)
		ipCmd(t, "-n", l.ns[p.right], "addr", "add", fmt.Sprintf("10.201.%d.2/24", k+1), "dev", l2)
		ipCmd(t, "-n", l.ns[p.left], "link", "set", l1, "up")
		ipCmd(t, "-n", l.ns[p.right], "link", "set", l2, "up")
	}
	return l
}

// nsCLI runs the real binary inside namespace ns.
func nsCLI(t *testing.T, ns, bin, dir string, args ...string) string {
	t.Helper()
	full := append([]string{"netns", "exec", ns, bin, "--data-dir", dir, "enclave"}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// netnsTuning is labTuning with a window long enough that the relayed block is still in place
// when the test reads C's kernel sets (the window's expiry is tested elsewhere), A and B
// pre-trusted (a block on peer reports alone needs two established, independent reporters)
// and port blocks from peers allowed. cert_timeout is generous in both: under CI load a slow
// certificate exchange would otherwise get a member refused for a minute (denyNoAnswer),
// which is not what these tests are about.
func netnsTuning(pretrusted ...string) string {
	return "  decision: {act: 0.45, defer: 0.3, peer_ports: true}\n  trust: {window: 5m, pretrusted: [" +
		strings.Join(pretrusted, ", ") + "]}\n  cert_timeout: 15s\n"
}

func TestEnclaveAcrossNetworkNamespaces(t *testing.T) {
	nl := newNetnsLab(t)
	lab := newEnclaveLab(t, "lab", "")
	bin := lab.bin
	type member struct {
		ns, dir, id string
		agent       *enclaveAgent
	}
	members := make([]*member, 3)
	for i := range members {
		m := &member{ns: nl.ns[i], dir: filepath.Join(lab.dir, nl.ns[i])}
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_, out, _ := runCLI(t, "--data-dir", m.dir, "enclave", "id")
		m.id = strings.TrimSpace(out)
		if code, _, errs := runCLI(t, "enclave", "admit", m.id, "--key", lab.key, "--enclave", "lab", "--out", filepath.Join(m.dir, "member.cert")); code != 0 {
			t.Fatal(errs)
		}
		members[i] = m
	}
	b := members[1]
	_, nftErr := exec.LookPath("nft")
	useNFT := nftErr == nil
	listen := map[int]string{
		0: "[/ip4/10.201.1.1/tcp/4001]",
		1: "[/ip4/0.0.0.0/tcp/4001, /ip4/0.0.0.0/udp/4001/quic-v1]",
		2: "[/ip4/10.201.2.1/udp/4001/quic-v1]",
	}
	boot := map[int]string{
		0: "[/ip4/10.201.1.2/tcp/4001/p2p/" + b.id + "]",
		1: "[]",
		2: "[/ip4/10.201.2.2/udp/4001/quic-v1/p2p/" + b.id + "]",
	}
	for _, i := range []int{1, 0, 2} {
		m := members[i]
		cfg := filepath.Join(m.dir, "agent.yaml")
		yaml := fmt.Sprintf("version: 1\nlog: {level: info}\nenclave:\n  enabled: true\n  name: lab\n  key: %s\n  certificate: member.cert\n  listen: %s\n  bootstrap: %s\n  exposure: %s\n%s",
			lab.pub, listen[i], boot[i], linuxExposure, netnsTuning(members[0].id, members[1].id))
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var extra []string
		if i == 2 && useNFT {
			extra = []string{"--block-with", "nftables"} // C blocks in its namespace's kernel
		}
		m.agent = startInNS(t, bin, m.ns, m.dir, cfg, extra...)
	}
	status := func(m *member) enclave.Status {
		var st enclave.Status
		if err := json.Unmarshal([]byte(nsCLI(t, m.ns, bin, m.dir, "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, m := range members {
		want := 1
		if m == b {
			want = 2
		}
		waitFor(t, m.ns+" joins the topic", func() bool { return status(m).TopicPeers == want })
	}
	// B relays A's report to C only once C is in B's mesh (GossipSub forwards to mesh peers;
	// gossip about a message goes to peers outside the mesh, so a peer grafted just after the
	// message was forwarded would miss it). Publish once B has meshed with both.
	waitFor(t, b.ns+" meshes with A and C", func() bool { return status(b).MeshPeers == 2 })
	// A and C have no route to each other; only B's relay connects them.
	if st := status(members[0]); st.Connected != 1 {
		t.Errorf("A is connected to %d peers, want 1 (B)", st.Connected)
	}
	// A and B both see the attacker: C, which only hears of it (A's report relayed by B),
	// blocks on two pre-trusted, independent reporters.
	var res enclave.PublishResult
	if err := json.Unmarshal([]byte(nsCLI(t, members[0].ns, bin, members[0].dir, "publish", "--target", "203.0.113.9", "--confidence", "100", "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	c := members[2]
	relayed := func() bool {
		var recs []enclave.DecisionRecord
		if err := json.Unmarshal([]byte(nsCLI(t, c.ns, bin, c.dir, "decisions", "--indicator", res.Indicator, "-o", "json")), &recs); err != nil {
			t.Fatal(err)
		}
		return len(recs) > 0
	}
	waitFor(t, "C hears A's sighting through B", relayed)
	nsCLI(t, b.ns, bin, b.dir, "publish", "--target", "203.0.113.9", "--confidence", "100")
	waitFor(t, "C acts on two established reporters", func() bool {
		var recs []enclave.DecisionRecord
		if err := json.Unmarshal([]byte(nsCLI(t, c.ns, bin, c.dir, "decisions", "-o", "json")), &recs); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Target == "203.0.113.9" && r.Decision == enclave.Act && r.Applied {
				return true
			}
		}
		return false
	})
	if !useNFT {
		t.Log("nft not installed: C used the in-process blocklist; kernel check skipped")
		return
	}
	nft := func(set string) string {
		out, err := exec.Command("ip", "netns", "exec", c.ns, "nft", "list", "set", "inet", "proteus", set).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list set %s: %v\n%s", set, err, out)
		}
		return string(out)
	}
	port22 := regexp.MustCompile(`elements = \{[^}]*\b22\b`)
	if got := nft("blocked4"); !regexp.MustCompile(`elements = \{[^}]*203\.0\.113\.9`).MatchString(got) {
		t.Errorf("C's kernel set blocked4 lacks A's attacker:\n%s", got)
	}
	// A port report from both (decision.peer_ports): C exposes 22 on the same OS, so it
	// drops traffic to port 22 for a while.
	nsCLI(t, members[0].ns, bin, members[0].dir, "publish", "--target", "port/22", "--confidence", "100", "--ttl", "10m")
	nsCLI(t, b.ns, bin, b.dir, "publish", "--target", "port/22", "--confidence", "100", "--ttl", "10m")
	waitFor(t, "C blocks port 22 in the kernel", func() bool { return port22.MatchString(nft("blocked_ports")) })
}

// startInNS starts `proteus enclave run` inside ns and waits for its control file.
func startInNS(t *testing.T, bin, ns, dir, cfg string, extra ...string) *enclaveAgent {
	t.Helper()
	a := &enclaveAgent{name: ns, dir: dir, cfg: cfg, log: &syncBuffer{}}
	args := append([]string{"netns", "exec", ns, bin, "--data-dir", dir, "enclave", "run", "-c", cfg}, extra...)
	a.cmd = exec.Command("ip", args...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", a.name, a.log.String())
		}
	})
	waitFile(t, filepath.Join(dir, enclave.ControlFile), a.done, a.log.String)
	return a
}

// Two members on one link with no bootstrap peers find each other by mDNS.
func TestEnclaveMDNSDiscovery(t *testing.T) {
	nl := newNetnsLab(t)
	lab := newEnclaveLab(t, "lab", labTuning)
	var dirs []string
	for i, ip := range []string{"10.201.1.1", "10.201.1.2"} {
		dir := filepath.Join(lab.dir, nl.ns[i])
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_, out, _ := runCLI(t, "--data-dir", dir, "enclave", "id")
		if code, _, errs := runCLI(t, "enclave", "admit", strings.TrimSpace(out), "--key", lab.key, "--enclave", "lab", "--out", filepath.Join(dir, "member.cert")); code != 0 {
			t.Fatal(errs)
		}
		cfg := filepath.Join(dir, "agent.yaml")
		// Debug logs: when discovery fails, the failure prints what each member saw.
		yaml := fmt.Sprintf("version: 1\nlog: {level: debug}\nenclave:\n  enabled: true\n  name: lab\n  key: %s\n  certificate: member.cert\n  listen: [/ip4/%s/tcp/4001]\n  mdns: true\n  exposure: %s\n%s",
			lab.pub, ip, linuxExposure, labTuning)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		startInNS(t, lab.bin, nl.ns[i], dir, cfg)
		dirs = append(dirs, dir)
	}
	// mDNS queries back off (4 s, then 1.5–2.5× longer each time), so a member that misses the
	// first exchanges under load is found only by a later query: the hang guard here is 60 s.
	for i, dir := range dirs {
		var last string
		deadline := time.Now().Add(60 * time.Second)
		for {
			last = nsCLI(t, nl.ns[i], lab.bin, dir, "status", "-o", "json")
			var st enclave.Status
			if err := json.Unmarshal([]byte(last), &st); err != nil {
				t.Fatal(err)
			}
			if st.TopicPeers == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not find its neighbour by mDNS; last status:\n%s", nl.ns[i], last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
