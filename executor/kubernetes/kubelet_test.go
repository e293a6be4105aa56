package kubernetes

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/proteus-defense/proteus/executor"
)

// TestRealKubelet (opt-in, as root: PROTEUS_K8S_KUBELET=kubelet binary, PROTEUS_CNI_BIN=dir of CNI
// ptp, host-local and loopback, PROTEUS_K8S_IMAGE=image tarball, PROTEUS_K8S_IMAGE_REF=its
// name@digest, PROTEUS_K8S_SANDBOX_IMAGE=its name:tag, also the pause image) runs one pod of
// the driver as a real container: a kubelet on a private containerd next to kwok's node, which
// is cordoned; the container answers on its CNI address. docs/operations.md says how to build
// what it needs and why containerd needs restrict_oom_score_adj here.
func TestRealKubelet(t *testing.T) {
	kubelet, cniBin, image, ref := os.Getenv("PROTEUS_K8S_KUBELET"), os.Getenv("PROTEUS_CNI_BIN"), os.Getenv("PROTEUS_K8S_IMAGE"), os.Getenv("PROTEUS_K8S_IMAGE_REF")
	sandbox := os.Getenv("PROTEUS_K8S_SANDBOX_IMAGE")
	if kubelet == "" || cniBin == "" || image == "" || ref == "" || sandbox == "" {
		t.Skip("opt-in: PROTEUS_K8S_KUBELET, PROTEUS_CNI_BIN, PROTEUS_K8S_IMAGE, PROTEUS_K8S_IMAGE_REF")
	}
	c := cluster(t)
	dir, err := os.MkdirTemp("/tmp", "k16kl-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	ctdCfg := fmt.Sprintf(`version = 2
root = "%[1]s/ctd-root"
state = "%[1]s/ctd-state"
[grpc]
  address = "%[2]s"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  restrict_oom_score_adj = true
  sandbox_image = "%[3]s"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "%[4]s"
    conf_dir = "%[1]s/cni"
`, dir, sock, sandbox, cniBin)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(ctdCfg), 0o600))
	must(os.MkdirAll(filepath.Join(dir, "cni"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "cni", "10-ptp.conflist"), []byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "k16", "plugins": [
  {"type": "ptp", "ipMasq": false, "ipam": {"type": "host-local", "dataDir": "%s/ipam", "ranges": [[{"subnet": "10.88.16.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}`, dir)), 0o600))
	must(os.WriteFile(filepath.Join(dir, "kubelet.yaml"), []byte(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
port: 10350
readOnlyPort: 0
healthzPort: 0
cgroupsPerQOS: false
enforceNodeAllocatable: []
evictionHard: {"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
`), 0o600))
	spawn := func(logName string, bin string, args ...string) *exec.Cmd {
		f, err := os.Create(filepath.Join(dir, logName))
		must(err)
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		must(cmd.Start())
		return cmd
	}
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	dumpLog := func(n string) {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("---- %s ----\n%s", n, b)
	}
	ctd := spawn("containerd.log", "containerd", "--config", filepath.Join(dir, "containerd.toml"))
	t.Cleanup(func() {
		if t.Failed() {
			dumpLog("containerd.log")
		}
		stop(ctd)
		// The kubelet bind-mounts its root directory onto itself.
		_ = syscall.Unmount(filepath.Join(dir, "kubelet"), syscall.MNT_DETACH)
		_ = os.RemoveAll(dir)
		// The pod's cgroups (cgroupsPerQOS off: under k8s.io in every controller), empty by
		// now; a cgroup that is not empty stays, as rmdir refuses it.
		tops, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
		for _, top := range tops {
			var dirs []string
			_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = syscall.Rmdir(dirs[i])
			}
		}
	})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd socket never appeared")
		}
	}
	out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "images", "import", image).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr import: %v\n%s", err, out)
	}
	t.Logf("imported: %s", strings.TrimSpace(string(out)))
	// An imported image has no repository digest: name it by its digest, as a pull would.
	if out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "images", "tag", sandbox, ref).CombinedOutput(); err != nil {
		t.Fatalf("ctr tag: %v\n%s", err, out)
	}
	ctx := ctxT(t, 8*time.Minute)
	kl := spawn("kubelet.log", kubelet, "--kubeconfig="+c.Kubeconfig(), "--container-runtime-endpoint=unix://"+sock,
		"--root-dir="+filepath.Join(dir, "kubelet"), "--cert-dir="+filepath.Join(dir, "pki"), "--hostname-override=real-node-0",
		"--node-ip=127.0.0.1", "--config="+filepath.Join(dir, "kubelet.yaml"), "--v=1")
	t.Cleanup(func() {
		if t.Failed() {
			dumpLog("kubelet.log")
		}
		// The kubelet tears the deleted pod's containers down before it goes.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			out, err := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "tasks", "ls", "-q").Output()
			if err == nil && strings.TrimSpace(string(out)) == "" {
				break
			}
		}
		stop(kl)
	})
	// Only the kubelet's node takes the pod: kwok's is cordoned.
	kn, err := c.Client.CoreV1().Nodes().Get(ctx, "kwok-node-0", metav1.GetOptions{})
	must(err)
	kn.Spec.Unschedulable = true
	_, err = c.Client.CoreV1().Nodes().Update(ctx, kn, metav1.UpdateOptions{})
	must(err)
	eventually(t, "the kubelet's node Ready (untainted)", func() bool {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "real-node-0", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				if slices.ContainsFunc(n.Spec.Taints, func(x corev1.Taint) bool { return x.Key == corev1.TaintNodeNotReady }) {
					n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(x corev1.Taint) bool { return x.Key == corev1.TaintNodeNotReady })
					_, _ = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
					return false
				}
				return true
			}
		}
		return false
	})
	ns := namespace(t, c)
	d := newTestDriver(t, c.Config, ns, Options{})
	spec := executor.Spec{Variant: "real", Driver: ID, Image: ref, ContainerPort: 8081, HealthPath: "/healthz",
		Command: []string{"-addr", ":8081", "-variant", "real-container"}}
	inst, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), inst) })
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, inst.Handle, metav1.GetOptions{})
	must(err)
	t.Logf("pod %s on %s at %s", p.Name, p.Spec.NodeName, inst.Address)
	resp, err := http.Get("http://" + inst.Address + "/")
	must(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "real-container") || p.Spec.NodeName != "real-node-0" {
		t.Fatalf("answer %q from node %s", body, p.Spec.NodeName)
	}
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
}
