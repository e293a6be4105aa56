package kubernetes

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/kubernetes/k8stest"
)

// The driver the agent builds from its config (executor.New with the pool section) reaches the
// cluster through pool.kubernetes.kubeconfig, works in pool.kubernetes.namespace and keeps the
// budget at pool.min.
func testRegistered(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	yml := fmt.Sprintf("version: 1\npool:\n  desired: 3\n  min: 2\n  kubernetes: {namespace: %s, kubeconfig: %s, pool: cfg, quarantine_retention: 5m}\n"+
		"  variants: [{name: nginx, driver: kubernetes, image: %q, container_port: 8080}]\n", ns, c.Kubeconfig(), "registry.test/demo@"+testDigest)
	cfg, err := config.Parse("agent.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	drv, err := executor.New(ID, executor.Env{Options: cfg.Pool, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := drv.(*Driver)
	t.Cleanup(func() { _ = d.Close() })
	if d.Namespace() != ns || d.opts.Pool != "cfg" || d.opts.QuarantineRetention != 5*time.Minute {
		t.Fatalf("options from the config: %+v", d.opts)
	}
	ctx := ctxT(t, 3*time.Minute)
	inst, err := d.Start(ctx, testSpec("nginx"))
	if err != nil {
		t.Fatal(err)
	}
	pdb, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "proteus-cfg", metav1.GetOptions{})
	if err != nil || pdb.Spec.MinAvailable.IntValue() != 2 {
		t.Fatalf("budget from pool.min: %v %+v", err, pdb)
	}
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
}
