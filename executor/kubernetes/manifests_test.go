package kubernetes

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/proteus-defense/proteus/executor/kubernetes/k8stest"
)

// Every object in deploy/kubernetes is accepted by the real API server (a server-side dry run
// of each, in the proteus namespace made for it), so a typo in a field fails here.
func testManifests(t *testing.T, c *k8stest.Cluster) {
	dir := filepath.Join("..", "..", "deploy", "kubernetes")
	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(kust, &k); err != nil || len(k.Resources) == 0 {
		t.Fatalf("kustomization.yaml: %v %+v", err, k)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 2*time.Minute)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "proteus"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	plural := map[string]string{"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
		"Deployment": "deployments", "Service": "services"}
	n := 0
	for _, f := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				break
			}
			if len(u.Object) == 0 {
				continue
			}
			gv, _ := schema.ParseGroupVersion(u.GetAPIVersion())
			res, ok := plural[u.GetKind()]
			if !ok {
				t.Fatalf("%s: kind %s not known to this test", f, u.GetKind())
			}
			gvr := gv.WithResource(res)
			var ri dynamic.ResourceInterface = dyn.Resource(gvr)
			if u.GetKind() != "Namespace" {
				ri = dyn.Resource(gvr).Namespace(u.GetNamespace())
			}
			_, err := ri.Create(ctx, &u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
			if err != nil && !(u.GetKind() == "Namespace" && strings.Contains(err.Error(), "already exists")) {
				t.Errorf("%s: %s %s: %v", f, u.GetKind(), u.GetName(), err)
			}
			n++
		}
	}
	if n < 7 {
		t.Fatalf("only %d objects in deploy/kubernetes", n)
	}
}
