package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

const k8sPin = "reg.test/demo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestKubernetesSection(t *testing.T) {
	base := "version: 1\npool:\n  variants: [{name: a, driver: kubernetes, image: " + k8sPin + ", container_port: 8080}]\n"
	c, err := Parse("k.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Pool.Kubernetes
	if k.Pool != "proteus" || k.QuarantineRetention != time.Hour || k.ReadyTimeout != 2*time.Minute || k.RunAsUser != 65532 || k.Namespace != "" {
		t.Fatalf("defaults %+v", k)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"tag image":      {"version: 1\npool:\n  variants: [{name: a, driver: kubernetes, image: nginx:1.27, container_port: 80}]\n", "pool.variants[0].image"},
		"no port":        {"version: 1\npool:\n  variants: [{name: a, driver: kubernetes, image: " + k8sPin + "}]\n", "pool.variants[0].container_port"},
		"label name":     {"version: 1\npool:\n  variants: [{name: a-, driver: kubernetes, image: " + k8sPin + ", container_port: 1}]\n", "pool.variants[0].name"},
		"namespace":      {base + "  kubernetes: {namespace: Bad_NS}\n", "pool.kubernetes.namespace"},
		"pool":           {base + "  kubernetes: {pool: " + strings.Repeat("p", 31) + "}\n", "pool.kubernetes.pool"},
		"retention":      {base + "  kubernetes: {quarantine_retention: 200h}\n", "pool.kubernetes.quarantine_retention"},
		"root":           {base + "  kubernetes: {run_as_user: -1}\n", "pool.kubernetes.run_as_user"},
		"unknown field":  {base + "  kubernetes: {nodename: x}\n", "nodename"},
		"negative ready": {base + "  kubernetes: {ready_timeout: -1s}\n", "pool.kubernetes.ready_timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("k.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// The agent config shipped in deploy/kubernetes is valid (CI also runs `proteus validate --for
// agent` on it).
func TestDeployKubernetesConfig(t *testing.T) {
	b, err := os.ReadFile("../deploy/kubernetes/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("agent.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range c.Pool.Variants {
		if v.Driver != "kubernetes" {
			t.Errorf("variant %s uses driver %s", v.Name, v.Driver)
		}
	}
}
