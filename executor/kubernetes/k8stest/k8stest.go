// Package k8stest starts a real, throwaway Kubernetes control plane on loopback for tests:
// etcd, kube-apiserver, kube-scheduler and kube-controller-manager (garbage collector,
// disruption and service-account controllers) at the versions pinned in tools/k8s/go.mod,
// and kwok, which plays the kubelets of fake nodes so that scheduled pods are reported
// Running and Ready without a container runtime. Pod IPs come from a /24 of 127.77.0.0/16, and
// Cluster.ServePods stands in for the containers by answering HTTP on each Ready pod's
// podIP:containerPort, so nothing ever leaves loopback.
//
// The binaries are built by tools/k8s/build.sh (which .ci/run calls) into a cache directory
// named after tools/k8s/go.sum; $PROTEUS_K8S_BIN overrides it. Without them a test skips
// with the command to build them, except under CI=true, where it fails.
//
// What it does not test: a container really serving traffic, image pulls, probes run by a
// real kubelet, and NetworkPolicy enforcement (no network plugin runs); the Docker driver's
// tests cover a container serving traffic.
package k8stest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Binaries the harness needs, as tools/k8s/build.sh names them.
var Binaries = []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok"}

// StagesFile is kwok's "fast" pod and node stages, copied next to the binaries by build.sh.
const StagesFile = "kwok-stages.yaml"

// PodCIDR is where kwok's fake pods get their IPs: loopback, so tests reach them locally.
// Each cluster takes a /24 of its own (Cluster.PodCIDR), so that two clusters (in one test or
// in two test processes at once) do not hand out the same pod IP, whose stand-in container
// only one of them could serve.
const PodCIDR = "127.77.0.0/16"

// clusterSeq is where this process looks for a free /24 of PodCIDR next (from a random one).
var clusterSeq = func() *atomic.Int64 { var n atomic.Int64; n.Store(mrand.Int64N(256)); return &n }()

// reservePort is the port a cluster listens on at its /24's network address (which kwok
// never hands out) for as long as it runs: the listener is the /24's lock, across processes.
const reservePort = "47716"

// reservePodCIDR takes a /24 of PodCIDR that no other cluster on this host holds.
func reservePodCIDR() (string, net.Listener, error) {
	var err error
	for range 256 {
		n := clusterSeq.Add(1) % 256
		var l net.Listener
		if l, err = net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.77.%d.0", n), reservePort)); err == nil {
			return fmt.Sprintf("127.77.%d.0/24", n), l, nil
		}
	}
	return "", nil, fmt.Errorf("no free /24 of %s for the pods: %w", PodCIDR, err)
}

// AdminToken and the users below authenticate through the API server's static token file.
const (
	adminToken = "proteus-test-admin"
	// RestrictedUser is a user with no permissions until a test grants some with RBAC.
	RestrictedUser  = "proteus-restricted"
	restrictedToken = "proteus-test-restricted"
)

// BinDir is where the binaries are looked for: $PROTEUS_K8S_BIN, else the cache directory
// tools/k8s/build.sh uses (<user cache>/proteus-k8s/<16 hex of sha256(go.mod, go.sum)>).
func BinDir() (string, error) {
	if d := os.Getenv("PROTEUS_K8S_BIN"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, "tools", "k8s", f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "proteus-k8s", hex.EncodeToString(h.Sum(nil))[:16]), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "k8s", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("k8stest: tools/k8s/go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Cluster is a running control plane.
type Cluster struct {
	t      testing.TB
	dir    string
	bin    string
	Config *rest.Config // cluster-admin
	Client kubernetes.Interface

	etcdURL string
	podCIDR string
	apiPort int
	ca      []byte

	mu      sync.Mutex
	procs   map[string]*exec.Cmd
	exited  map[string]chan struct{} // closed when that process has exited
	apiArgs []string
}

// Options change how Start runs the control plane.
type Options struct {
	// APIServerArgs are added to kube-apiserver's flags (a later flag overrides an earlier
	// one), e.g. --watch-cache=false to serve watches from etcd.
	APIServerArgs []string
}

// Start starts a control plane and one fake node, and stops everything when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin, err := BinDir()
	if err == nil {
		for _, b := range append(slices.Clone(Binaries), StagesFile) {
			if _, serr := os.Stat(filepath.Join(bin, b)); serr != nil {
				err = serr
				break
			}
		}
	}
	if err != nil {
		msg := fmt.Sprintf("k8stest: Kubernetes test binaries missing (%v): build them with `bash tools/k8s/build.sh` (about 5-15 min once; .ci/run does it)", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cidr, lock, err := reservePodCIDR()
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	t.Cleanup(func() { lock.Close() }) // after stopAll (cleanups run last first)
	c := &Cluster{t: t, dir: t.TempDir(), bin: bin, procs: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}, podCIDR: cidr}
	t.Cleanup(c.stopAll)
	if err := c.start(o); err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) start(o Options) error {
	if err := c.writeCerts(); err != nil {
		return err
	}
	clientPort, err1 := freePort()
	peerPort, err2 := freePort()
	apiPort, err3 := freePort()
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if err := c.spawn("etcd", "--name=proteus-test", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=proteus-test="+peer,
		"--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	c.apiPort = apiPort
	c.apiArgs = []string{
		"--etcd-servers=" + c.etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + c.path("server.crt"), "--tls-private-key-file=" + c.path("server.key"),
		"--client-ca-file=" + c.path("ca.crt"),
		"--token-auth-file=" + c.path("tokens.csv"), "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.path("sa.pub"), "--service-account-signing-key-file=" + c.path("sa.key"),
		// Only allocated from, never routed: nothing here sends traffic to service IPs.
		"--service-cluster-ip-range=10.96.0.0/24",
		// The kubernetes Service's endpoints may not be loopback; nothing here uses it.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=false", "--profiling=false", "--v=0",
	}
	c.apiArgs = append(c.apiArgs, o.APIServerArgs...)
	if err := c.spawn("kube-apiserver", c.apiArgs...); err != nil {
		return err
	}
	c.Config = &rest.Config{Host: "https://127.0.0.1:" + strconv.Itoa(apiPort), BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca}, QPS: 100, Burst: 200}
	var err error
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if err := c.waitReady(3 * time.Minute); err != nil {
		return err
	}
	kc, err := c.writeKubeconfig("admin.kubeconfig", adminToken)
	if err != nil {
		return err
	}
	if err := c.spawn("kube-scheduler", "--kubeconfig="+kc, "--leader-elect=false", "--secure-port=0", "--v=0"); err != nil {
		return err
	}
	if err := c.spawn("kube-controller-manager", "--kubeconfig="+kc, "--leader-elect=false", "--secure-port=0",
		"--controllers=garbage-collector-controller,disruption-controller,serviceaccount-controller",
		"--use-service-account-credentials=false", "--v=0"); err != nil {
		return err
	}
	if err := c.spawn("kwok", "--kubeconfig="+kc, "--config="+filepath.Join(c.bin, StagesFile), "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr="+c.podCIDR, "--node-ip=127.0.0.1"); err != nil {
		return err
	}
	return c.addNode("kwok-node-0", c.podCIDR)
}

func (c *Cluster) path(name string) string { return filepath.Join(c.dir, name) }

// spawn starts one binary with its output in <dir>/<name>.log.
func (c *Cluster) spawn(name string, args ...string) error {
	logf, err := os.OpenFile(c.path(name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "HOME="+c.dir) // kwok reads ~/.kwok: keep it to this cluster
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.mu.Lock()
	c.procs[name] = cmd
	c.exited[name] = done
	c.mu.Unlock()
	return nil
}

func (c *Cluster) stop(name string) {
	c.mu.Lock()
	cmd, done := c.procs[name], c.exited[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (c *Cluster) stopAll() {
	if c.t.Failed() {
		c.dumpLogs()
	}
	for _, n := range []string{"kwok", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"} {
		c.stop(n)
	}
}

// dumpLogs prints the tail of every component's log into the test's output.
func (c *Cluster) dumpLogs() {
	for _, n := range Binaries {
		b, err := os.ReadFile(c.path(n + ".log"))
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		c.t.Logf("---- %s.log (tail) ----\n%s", n, b)
	}
}

// waitReady polls /readyz until the API server says ready.
func (c *Cluster) waitReady(timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ca)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(timeout)
	c.mu.Lock()
	exited := c.exited["kube-apiserver"]
	c.mu.Unlock()
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver exited (see its log below): %v", last)
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, c.Config.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %v: %v", timeout, last)
}

// RestartAPIServer stops the API server (SIGTERM, as a rolling upgrade would) and starts it
// again on the same port and etcd, waiting until it is ready.
func (c *Cluster) RestartAPIServer() {
	c.t.Helper()
	c.StopAPIServer()
	c.StartAPIServer()
}

// StopAPIServer stops the API server and returns once it has exited.
func (c *Cluster) StopAPIServer() { c.stop("kube-apiserver") }

// StartAPIServer starts a stopped API server again and waits until it is ready.
func (c *Cluster) StartAPIServer() {
	c.t.Helper()
	if err := c.spawn("kube-apiserver", c.apiArgs...); err != nil {
		c.t.Fatalf("k8stest: %v", err)
	}
	if err := c.waitReady(3 * time.Minute); err != nil {
		c.t.Fatalf("k8stest: %v", err)
	}
}

// addNode registers a fake node that kwok manages, with its own pod CIDR.
func (c *Cluster) addNode(name, cidr string) error {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels:      map[string]string{"kubernetes.io/hostname": name, "type": "kwok"}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("500"),
			corev1.ResourceEphemeralStorage: resource.MustParse("1Ti")}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	for ctx.Err() == nil {
		got, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range got.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					// The API server taints new nodes not-ready, and the node lifecycle
					// controller (not run here: kwok's nodes send no heartbeats) would lift it.
					got.Spec.Taints = slices.DeleteFunc(got.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeNotReady })
					if _, err := c.Client.CoreV1().Nodes().Update(ctx, got, metav1.UpdateOptions{}); err != nil {
						if apierrors.IsConflict(err) {
							break
						}
						return fmt.Errorf("untaint node %s: %w", name, err)
					}
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node %s not Ready (kwok) after 1m", name)
}

// Namespace creates a fresh namespace and waits for its default service account (the API
// server's ServiceAccount admission refuses pods until it exists).
func (c *Cluster) Namespace(name string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("k8stest: create namespace %s: %v", name, err)
	}
	for {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return name
		}
		if !apierrors.IsNotFound(err) || ctx.Err() != nil {
			c.t.Fatalf("k8stest: namespace %s: default service account: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RestrictedConfig is a client config of RestrictedUser, who may do only what a test grants.
func (c *Cluster) RestrictedConfig() *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	cfg.BearerToken = restrictedToken
	return cfg
}

// writeCerts makes a CA, the API server's serving certificate for 127.0.0.1, the service
// account key pair and the static token file.
func (c *Cluster) writeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proteus-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c.ca = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	tokens := fmt.Sprintf("%s,proteus-admin,uid-admin,\"system:masters\"\n%s,%s,uid-restricted\n", adminToken, restrictedToken, RestrictedUser)
	files := map[string][]byte{
		"ca.crt":     c.ca,
		"server.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"server.key": keyPEM(srvKey),
		"sa.key":     keyPEM(saKey),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv": []byte(tokens),
	}
	for n, b := range files {
		if err := os.WriteFile(c.path(n), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for token and returns its path.
func (c *Cluster) writeKubeconfig(name, token string) (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: %s\n    certificate-authority: %s\n", c.Config.Host, c.path("ca.crt"))
	fmt.Fprintf(&b, "users:\n- name: u\n  user:\n    token: %s\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: u\ncurrent-context: test\n", token)
	p := c.path(name)
	return p, os.WriteFile(p, b.Bytes(), 0o600)
}

// Kubeconfig writes a cluster-admin kubeconfig (for the agent binary) and returns its path.
func (c *Cluster) Kubeconfig() string {
	c.t.Helper()
	p, err := c.writeKubeconfig("test-admin.kubeconfig", adminToken)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// PodCIDR is the /24 of the package's PodCIDR this cluster's pods get their IPs from.
func (c *Cluster) PodCIDR() string { return c.podCIDR }

// Log returns a component's log so far (for assertions on what it saw).
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(c.path(name + ".log"))
	return strings.TrimSpace(string(b))
}
