package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/proteus-defense/proteus/enclave"
	"github.com/proteus-defense/proteus/executor/kubernetes"
	"github.com/proteus-defense/proteus/executor/kubernetes/k8stest"
)

// clusterAgent is one cluster with the agent that manages its pool: the control plane
// (kwok's node, the harness answering HTTP for each Ready pod), the agent as a process of the
// real binary with the deploy/kubernetes configuration, and the cluster's proteus-enclave
// Service, whose load balancer the test plays.
type clusterAgent struct {
	name    string
	cluster *k8stest.Cluster
	dir     string
	id      string // enclave peer ID
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	gw      string
}

// The namespace deploy/kubernetes puts the agent and its executors in.
const deployNamespace = "proteus"

// newClusterAgent starts a control plane with the proteus namespace and the proteus-enclave
// Service of deploy/kubernetes/service.yaml, and a stand-in container for every pod that
// answers body.
func newClusterAgent(t *testing.T, name, body string) *clusterAgent {
	t.Helper()
	ca := &clusterAgent{name: name, cluster: k8stest.Start(t), dir: filepath.Join(t.TempDir(), name)}
	if err := os.MkdirAll(ca.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca.cluster.Namespace(deployNamespace)
	ca.cluster.ServePods(deployNamespace, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, body)
	}))
	svc := deployService(t, "proteus-enclave")
	if _, err := ca.cluster.Client.CoreV1().Services(deployNamespace).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: create the proteus-enclave Service: %v", name, err)
	}
	code, out, errs := runCLI(t, "--data-dir", ca.dir, "enclave", "id")
	if code != 0 {
		t.Fatalf("enclave id: %s", errs)
	}
	ca.id = strings.TrimSpace(out)
	return ca
}

// deployService reads one Service from deploy/kubernetes/service.yaml.
func deployService(t *testing.T, name string) *corev1.Service {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var s corev1.Service
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("deploy/kubernetes/service.yaml has no Service %s (%v)", name, err)
		}
		if s.Name == name {
			return &s
		}
	}
}

// agentConfig is deploy/kubernetes/agent.yaml pointed at this cluster (its kubeconfig: the
// agent runs beside the cluster, since kwok runs no containers) with the enclave on.
func (ca *clusterAgent) agentConfig(t *testing.T, key, bootstrap string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const k8s = "  kubernetes:\n    pool: proteus\n"
	cfg := string(raw)
	if !strings.Contains(cfg, k8s) {
		t.Fatalf("deploy/kubernetes/agent.yaml has no %q", k8s)
	}
	cfg = strings.Replace(cfg, k8s, fmt.Sprintf("%s    namespace: %s\n    kubeconfig: %s\n", k8s, deployNamespace, ca.cluster.Kubeconfig()), 1)
	cfg += fmt.Sprintf(`enclave:
  enabled: true
  name: two-clusters
  key: %s
  certificate: member.cert
  listen: [/ip4/127.0.0.1/tcp/0]
  bootstrap: [%s]
  exposure: %s
`, key, bootstrap, linuxExposure)
	path := filepath.Join(ca.dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "validate", "--for", "agent", path); code != 0 {
		t.Fatalf("validate: %s", errs)
	}
	return path
}

func (ca *clusterAgent) start(t *testing.T, bin, cfg string) {
	t.Helper()
	ca.log, ca.exited = &syncBuffer{}, make(chan struct{})
	ca.cmd = exec.Command(bin, "--data-dir", ca.dir, "agent", "-c", cfg, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0")
	ca.cmd.Stderr = ca.log
	ca.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ca.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = ca.cmd.Wait(); close(ca.exited) }()
	t.Cleanup(func() {
		_ = ca.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ca.exited:
		case <-time.After(30 * time.Second):
			_ = ca.cmd.Process.Kill()
			<-ca.exited
			t.Errorf("%s's agent did not stop on SIGTERM", ca.name)
		}
	})
	ca.gw = ca.waitFile(t, GatewayAddrFile)
	ca.waitFile(t, enclave.ControlFile)
}

// waitFile waits for a file the agent writes once it serves (its pool's pods Ready first);
// the three minutes guard against a hang on a loaded machine.
func (ca *clusterAgent) waitFile(t *testing.T, name string) string {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(ca.dir, name)); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-ca.exited:
			t.Fatalf("%s's agent exited before writing %s:\n%s", ca.name, name, ca.log.String())
		default:
		}
	}
	t.Fatalf("%s's agent never wrote %s:\n%s", ca.name, name, ca.log.String())
	return ""
}

func (ca *clusterAgent) enclave(t *testing.T) *enclave.Client {
	t.Helper()
	c, err := enclave.Dial(ca.dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveLoadBalancer plays the cloud's load balancer for the proteus-enclave Service: it
// listens on a loopback address of its own at the Service's port, forwards TCP to the
// agent's libp2p listener, and writes that address into the Service's status, as a cloud
// controller does.
func (ca *clusterAgent) serveLoadBalancer(t *testing.T) {
	t.Helper()
	st, err := ca.enclave(t).Status(context.Background())
	if err != nil || len(st.Addrs) == 0 {
		t.Fatalf("%s's enclave status %+v: %v", ca.name, st, err)
	}
	target := ""
	for _, a := range st.Addrs { // /ip4/127.0.0.1/tcp/PORT/p2p/ID
		if p := strings.Split(a, "/"); len(p) > 4 && p[1] == "ip4" && p[3] == "tcp" {
			target = net.JoinHostPort(p[2], p[4])
		}
	}
	if target == "" {
		t.Fatalf("%s's enclave listens on no TCP address: %v", ca.name, st.Addrs)
	}
	ctx := context.Background()
	svcs := ca.cluster.Client.CoreV1().Services(deployNamespace)
	svc, err := svcs.Get(ctx, "proteus-enclave", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var port int32
	for _, p := range svc.Spec.Ports {
		if p.Protocol == corev1.ProtocolTCP {
			port = p.Port
		}
	}
	var l net.Listener
	for range 20 { // a free loopback address of 127.78.0.0/16 for this load balancer
		ip := fmt.Sprintf("127.78.%d.%d", rand.IntN(256), 1+rand.IntN(254))
		if l, err = net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port)))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("load balancer listener: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{})
				go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); close(done) }()
				_, _ = io.Copy(c, u)
				c.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: l.Addr().(*net.TCPAddr).IP.String()}}
	if _, err := svcs.UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("%s: load balancer status: %v", ca.name, err)
	}
}

// bootstrapAddr is what an operator of another cluster puts in its bootstrap: this cluster's
// proteus-enclave Service's load balancer address and port, and this agent's peer ID.
func (ca *clusterAgent) bootstrapAddr(t *testing.T) string {
	t.Helper()
	svc, err := ca.cluster.Client.CoreV1().Services(deployNamespace).Get(context.Background(), "proteus-enclave", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		t.Fatalf("%s's proteus-enclave Service has no load balancer address", ca.name)
	}
	var port int32
	for _, p := range svc.Spec.Ports {
		if p.Protocol == corev1.ProtocolTCP {
			port = p.Port
		}
	}
	return fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", svc.Status.LoadBalancer.Ingress[0].IP, port, ca.id)
}

// executorPods lists the pods of the agent's pool in its cluster.
func (ca *clusterAgent) executorPods(t *testing.T) []corev1.Pod {
	t.Helper()
	ps, err := ca.cluster.Client.CoreV1().Pods(deployNamespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: kubernetes.LabelManagedBy + "=" + kubernetes.ManagedBy + "," + kubernetes.LabelRole + "=" + kubernetes.RoleExecutor})
	if err != nil {
		t.Fatal(err)
	}
	return ps.Items
}

func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard on a loaded machine, not a bound on speed
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Issue 16, deployment: two agents, each managing its executors as pods in its own cluster
// with deploy/kubernetes's configuration, in one enclave; B reaches A through A's
// proteus-enclave Service (its load balancer address, as docs/operations.md tells an operator
// to bootstrap). A's sighting reaches B over libp2p, and B acts on it: one member's word, from a
// peer with no history, is short of a block, so B defers and raises its vigilance (more
// executors per vote, faster rotation of its pods), and reverts it when A revokes the sighting.
func TestEnclaveAcrossTwoClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two Kubernetes control planes and two agents")
	}
	bin := proteusBinary(t)
	a := newClusterAgent(t, "A", "served by cluster A")
	b := newClusterAgent(t, "B", "served by cluster B")

	keyFile := filepath.Join(t.TempDir(), "enclave.key")
	code, out, errs := runCLI(t, "enclave", "keygen", "--out", keyFile, "-o", "json")
	if code != 0 {
		t.Fatalf("keygen: %s", errs)
	}
	var k struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []*clusterAgent{a, b} {
		if code, _, errs := runCLI(t, "enclave", "admit", ca.id, "--key", keyFile, "--enclave", "two-clusters",
			"--valid", "1h", "--out", filepath.Join(ca.dir, "member.cert")); code != 0 {
			t.Fatalf("admit %s: %s", ca.name, errs)
		}
	}

	a.start(t, bin, a.agentConfig(t, k.PublicKey, ""))
	a.serveLoadBalancer(t)
	b.start(t, bin, b.agentConfig(t, k.PublicKey, a.bootstrapAddr(t)))

	// Each agent's executors are pods of its own cluster, and its gateway votes over them.
	for _, ca := range []*clusterAgent{a, b} {
		if n := len(ca.executorPods(t)); n != 3 {
			t.Fatalf("%s: %d executor pods, want 3", ca.name, n)
		}
		if code, body := httpGet(t, "http://"+ca.gw+"/"); code != 200 || !strings.Contains(body, "served by cluster "+ca.name) {
			t.Fatalf("%s's gateway: %d %q", ca.name, code, body)
		}
	}
	ctx := context.Background()
	ea, eb := a.enclave(t), b.enclave(t)
	waitLong(t, "A and B meshed in one enclave", func() bool {
		sa, err1 := ea.Status(ctx)
		sb, err2 := eb.Status(ctx)
		return err1 == nil && err2 == nil && sa.MeshPeers > 0 && sb.MeshPeers > 0
	})

	const attacker = "203.0.113.61"
	res, err := ea.Publish(ctx, attacker, 90, 10*time.Minute, "", "seen by cluster A's agent")
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision.Decision != enclave.Act || !res.Decision.Applied {
		t.Fatalf("A's own decision on its sighting: %+v", res.Decision)
	}
	var d enclave.DecisionRecord
	waitLong(t, "B's decision on A's sighting", func() bool {
		recs, err := eb.Decisions(ctx, res.Indicator)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Event == "sighting" {
				d = r
				return true
			}
		}
		return false
	})
	if d.Decision != enclave.Defer {
		t.Fatalf("B's decision on one neutral peer's sighting: %+v, want defer", d)
	}
	bAgent := &inProcessAgent{data: b.dir, stderr: b.log}
	waitLong(t, "B's vigilance raised by A's sighting", func() bool {
		v := agentStatus(t, bAgent).Vigilance
		return v != nil && v.Level >= 1
	})
	v := agentStatus(t, bAgent).Vigilance
	t.Logf("B on A's sighting: %s, evidence %.2f (%s); vigilance level %d, k %d, rotation ×%.3g (%s)", d.Decision, d.Evidence, d.Why, v.Level, v.K, v.RotationScale, v.Rotation)
	if v.K <= 3 || v.RotationScale >= 1 {
		t.Fatalf("B's vigilance %+v: want more executors per vote and a faster rotation of its pods", v)
	}
	// deploy/kubernetes/agent.yaml rotates every 2m-5m; the scheduler takes the scaled
	// interval at its next tick.
	waitLong(t, "B's scheduler on the halved interval", func() bool {
		return strings.Contains(agentStatus(t, bAgent).Vigilance.Rotation, "every 1m0s-2m30s")
	})
	if code, cm := bAgent.cli("countermeasures", "-o", "json"); code != 0 || strings.Contains(cm, attacker+"/32") {
		t.Fatalf("B blocked on a single neutral peer's report (or failed): %d %s", code, cm)
	}

	// A revokes its sighting: B's vigilance falls back.
	if err := ea.Revoke(ctx, res.Indicator, "false positive"); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "B's vigilance reverted after A's revocation", func() bool {
		v := agentStatus(t, bAgent).Vigilance
		return v == nil || v.Level == 0
	})
}
