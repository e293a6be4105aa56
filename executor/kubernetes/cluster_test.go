package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/kubernetes/k8stest"
)

func cluster(t *testing.T) *k8stest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Kubernetes control plane (not in -short)")
	}
	return k8stest.Start(t)
}

var nsSeq struct {
	sync.Mutex
	n int
}

func namespace(t *testing.T, c *k8stest.Cluster) string {
	nsSeq.Lock()
	nsSeq.n++
	n := nsSeq.n
	nsSeq.Unlock()
	name := strings.ToLower(fmt.Sprintf("t%d-%s", n, strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 60 {
		name = name[:60]
	}
	return c.Namespace(strings.TrimRight(name, "-"))
}

func newTestDriver(t *testing.T, cfg *rest.Config, ns string, o Options) *Driver {
	t.Helper()
	o.Config, o.Namespace = cfg, ns
	if o.Pool == "" {
		o.Pool = "t"
	}
	if o.StopGrace == 0 {
		o.StopGrace = time.Second
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok", r.Header.Get(k8stest.HeaderPod))
	})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// podWatch records, at every pod event of a namespace, how many of the pool's pods are Ready
// and in service (not being deleted), and how many exist at all.
type podWatch struct {
	mu       sync.Mutex
	minReady int // lowest Ready count seen after the first time it reached want
	maxPods  int
	reached  bool
	want     int
	seen     map[string]bool // pod names ever seen
	onEvent  func()
}

func watchPods(t *testing.T, c *k8stest.Cluster, ns string, want int) *podWatch {
	w := &podWatch{want: want, minReady: 1 << 30, seen: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	store := inf.GetStore()
	h := func(any) {
		w.mu.Lock()
		defer w.mu.Unlock()
		readyN, all := 0, 0
		for _, o := range store.List() {
			p := o.(*corev1.Pod)
			w.seen[p.Name] = true
			if p.Labels[LabelRole] != RoleExecutor {
				continue
			}
			all++
			if ready(p) {
				readyN++
			}
		}
		if readyN >= w.want {
			w.reached = true
		}
		if w.reached {
			w.minReady = min(w.minReady, readyN)
		}
		w.maxPods = max(w.maxPods, all)
		if w.onEvent != nil {
			w.onEvent()
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: h, UpdateFunc: func(_, o any) { h(o) }, DeleteFunc: h})
	stop := make(chan struct{})
	f.Start(stop)
	t.Cleanup(func() { close(stop); f.Shutdown() })
	cache.WaitForCacheSync(stop, inf.HasSynced)
	return w
}

func newTestPool(t *testing.T, d *Driver, desired, min, cstar int, variants ...string) *executor.Pool {
	t.Helper()
	var specs []executor.Spec
	for _, v := range variants {
		specs = append(specs, testSpec(v))
	}
	p, err := executor.NewPool(executor.PoolConfig{Variants: specs, Desired: desired, Min: min, MaxConcurrent: cstar, Redraw: true,
		StartTimeout: 2 * time.Minute, HealthInterval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second},
		map[string]executor.Driver{ID: d}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctxT(t, 5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func podsLeft(t *testing.T, c *k8stest.Cluster, ns string) []string {
	t.Helper()
	ps, err := c.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps.Items {
		out = append(out, p.Name)
	}
	return out
}

// waitNoPods waits (generously) until the namespace has no pod left.
func waitNoPods(t *testing.T, c *k8stest.Cluster, ns string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if len(podsLeft(t, c, ns)) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("pods left in %s: %v", ns, podsLeft(t, c, ns))
}

// All the tests below share one control plane, started once, because starting one costs
// several CPU-seconds.
func TestAgainstAPIServer(t *testing.T) {
	c := cluster(t)
	t.Run("StartStop", func(t *testing.T) { testStartStop(t, c) })
	t.Run("Rotation", func(t *testing.T) { testRotationKeepsFloor(t, c) })
	t.Run("Quarantine", func(t *testing.T) { testQuarantine(t, c) })
	t.Run("Forbidden", func(t *testing.T) { testForbidden(t, c) })
	t.Run("ManifestRole", func(t *testing.T) { testManifestRoleSuffices(t, c) })
	t.Run("DeletedByOthers", func(t *testing.T) { testDeletedByOthers(t, c) })
	t.Run("Budget", func(t *testing.T) { testBudget(t, c) })
	t.Run("FlakyAPI", func(t *testing.T) { testFlakyAPI(t, c) })
	t.Run("Registered", func(t *testing.T) { testRegistered(t, c) })
	t.Run("Manifests", func(t *testing.T) { testManifests(t, c) })
	t.Run("APIServerRestart", func(t *testing.T) { testAPIServerRestart(t, c) })
}

func testStartStop(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	owner, err := c.Client.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, c.Config, ns, Options{Owner: &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}})
	ctx := ctxT(t, 3*time.Minute)
	inst, err := d.Start(ctx, testSpec("nginx"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inst.Address, "127.77.") || !strings.HasSuffix(inst.Address, ":8080") || inst.ImageDigest != testDigest || inst.Variant != "nginx" {
		t.Fatalf("instance %+v", inst)
	}
	// The harness's stand-in container listens once its own watch sees the pod: wait for it.
	hc := executor.NewHealthChecker(5 * time.Second)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		err := hc.Check(ctx, inst, "/healthz")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod's address does not answer: %v", err)
		}
	}
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, inst.Handle, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels[LabelExecutor] != inst.ID || len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != owner.UID || p.Spec.NodeName == "" {
		t.Fatalf("pod as stored: labels %v owners %v node %q", p.Labels, p.OwnerReferences, p.Spec.NodeName)
	}
	if !*p.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem || *p.Spec.AutomountServiceAccountToken {
		t.Fatal("the API server stored a pod spec that is not hardened")
	}
	list, err := d.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != inst.ID || list[0].Address != inst.Address {
		t.Fatalf("List: %v %+v", err, list)
	}
	exited := d.Exited(inst)
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	default:
		t.Fatal("Exited not closed after Stop returned")
	}
	if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, inst.Handle, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod still there after Stop: %v", err)
	}
	// Stopping again is not an error; a foreign pod is never touched.
	if err := d.Stop(ctx, inst); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "someone-else", Labels: map[string]string{LabelManagedBy: ManagedBy, LabelPool: "t", LabelExecutor: "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x@" + testDigest}}}}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitFor(ctx, time.Minute, func() bool { _, err := d.pods.Pods(ns).Get("someone-else"); return err == nil })
	if err := d.Stop(ctx, &executor.Instance{ID: "y", Handle: "someone-else"}); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Stop of a pod with another executor ID: %v", err)
	}
	// Deleting the owner deletes the executors (the garbage collector does it).
	inst2, err := d.Start(ctx, testSpec("lighttpd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().ConfigMaps(ns).Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !d.waitFor(ctx, 2*time.Minute, func() bool { return d.podByID(inst2.ID) == nil }) {
		t.Fatalf("pod %s outlived its owner", inst2.Handle)
	}
}

// Must show: every executor rotated repeatedly; the watch sees at least min Ready executors
// at every instant, the voting set never drops below min, and no more than c* rotations
// (extra pods) are in flight.
func testRotationKeepsFloor(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	const desired, minN, cstar = 4, 3, 2
	w := watchPods(t, c, ns, desired)
	d := newTestDriver(t, c.Config, ns, Options{MinAvailable: minN})
	pool := newTestPool(t, d, desired, minN, cstar, "nginx", "lighttpd", "go", "caddy", "envoy")
	var voteMin struct {
		sync.Mutex
		n int
	}
	voteMin.n = 1 << 30
	w.mu.Lock()
	w.onEvent = func() {
		n := len(pool.Healthy())
		voteMin.Lock()
		voteMin.n = min(voteMin.n, n)
		voteMin.Unlock()
	}
	w.mu.Unlock()
	ctx := ctxT(t, 10*time.Minute)
	first := map[string]bool{}
	for _, in := range pool.Healthy() {
		first[in.ID] = true
	}
	const rounds = 3
	for r := 0; r < rounds; r++ {
		if err := pool.RotateAll(executor.WithReason(ctx, "test")); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
	}
	for _, in := range pool.Healthy() {
		if first[in.ID] {
			t.Errorf("executor %s was never rotated", in.ID)
		}
	}
	if n := len(pool.Healthy()); n != desired {
		t.Fatalf("%d in service after rotations, want %d", n, desired)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	voteMin.Lock()
	defer voteMin.Unlock()
	t.Logf("watch: min Ready %d, max pods %d, pods seen %d; voting set min %d", w.minReady, w.maxPods, len(w.seen), voteMin.n)
	if w.minReady < minN {
		t.Errorf("the watch saw %d Ready executors, below min %d", w.minReady, minN)
	}
	if voteMin.n < minN {
		t.Errorf("the voting set had %d executors, below min %d", voteMin.n, minN)
	}
	if w.maxPods > desired+cstar {
		t.Errorf("%d executor pods at once: more than desired %d + c* %d rotations in flight", w.maxPods, desired, cstar)
	}
	if want := desired * (rounds + 1); len(w.seen) < want {
		t.Errorf("%d pods seen, want at least %d (every executor rotated %d times)", len(w.seen), want, rounds)
	}
	pool.Close(context.Background())
	waitNoPods(t, c, ns)
}

// Must show: a quarantined pod has its deny-all NetworkPolicy, its reason label, is out of the
// serving set and out of the budget, and is deleted after the retention.
func testQuarantine(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	d := newTestDriver(t, c.Config, ns, Options{MinAvailable: 1, QuarantineRetention: 3 * time.Second})
	pool := newTestPool(t, d, 2, 1, 1, "nginx", "go")
	ctx := ctxT(t, 5*time.Minute)
	victim := pool.Healthy()[0]
	if err := pool.Quarantine(executor.WithReason(ctx, "dissent: body differs"), victim.ID); err != nil {
		t.Fatal(err)
	}
	for _, in := range pool.Healthy() {
		if in.ID == victim.ID {
			t.Fatal("quarantined executor still in the serving set")
		}
	}
	np, err := c.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, quarantinePolicyName(victim.ID), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no quarantine NetworkPolicy: %v", err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, victim.Handle, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("quarantined pod not kept: %v", err)
	}
	if !sel.Matches(labels.Set(p.Labels)) {
		t.Fatalf("policy selector %s does not select the pod (labels %v)", sel, p.Labels)
	}
	types := map[networkingv1.PolicyType]bool{}
	for _, pt := range np.Spec.PolicyTypes {
		types[pt] = true
	}
	if !types[networkingv1.PolicyTypeIngress] || !types[networkingv1.PolicyTypeEgress] || len(np.Spec.PolicyTypes) != 2 || len(np.Spec.Ingress) != 0 || len(np.Spec.Egress) != 0 {
		t.Fatalf("policy does not deny all ingress and egress: %+v", np.Spec)
	}
	// Exactly this pod: its executor ID among the pool's labels, and no sibling selected (a
	// selector on the pool alone would cut the whole pool off).
	want := map[string]string{LabelManagedBy: ManagedBy, LabelPool: "t", LabelExecutor: victim.ID}
	if len(np.Spec.PodSelector.MatchExpressions) != 0 || !maps.Equal(np.Spec.PodSelector.MatchLabels, want) {
		t.Fatalf("quarantine policy selects %+v, want exactly %v", np.Spec.PodSelector, want)
	}
	all, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range all.Items {
		if o.Name != victim.Handle && sel.Matches(labels.Set(o.Labels)) {
			t.Fatalf("quarantine policy also selects pod %s", o.Name)
		}
	}
	if p.Labels[LabelRole] != RoleQuarantined || p.Labels[LabelReason] != "dissent_body_differs" || p.Annotations[AnnotReason] != "dissent: body differs" {
		t.Fatalf("quarantined pod labels %v annotations %v", p.Labels, p.Annotations)
	}
	pdb, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, d.budgetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bsel, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); bsel.Matches(labels.Set(p.Labels)) {
		t.Fatal("the budget still counts the quarantined pod")
	}
	// A sibling that lies about its identity is not listed as an executor.
	list, _ := d.List(ctx)
	for _, in := range list {
		if in.ID == victim.ID {
			t.Fatal("List returns the quarantined pod as an executor")
		}
	}
	// The pool refills; the retention sweep deletes the pod and its policy.
	if !d.waitFor(ctx, 2*time.Minute, func() bool { return d.podByID(victim.ID) == nil }) {
		t.Fatalf("quarantined pod %s not deleted after its retention", victim.Handle)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, np.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quarantine policy outlived its pod by a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline = time.Now().Add(2 * time.Minute)
	for len(pool.Healthy()) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(pool.Healthy()); n != 2 {
		t.Fatalf("pool did not refill after the quarantine: %d in service", n)
	}
}

// grant gives RestrictedUser the rules in ns.
func grant(t *testing.T, c *k8stest.Cluster, ns string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "agent"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: k8stest.RestrictedUser}}}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Must show: a forbidden verb gives a clear error naming it.
func testForbidden(t *testing.T, c *k8stest.Cluster) {
	ctx := ctxT(t, 3*time.Minute)
	t.Run("watch", func(t *testing.T) {
		ns := namespace(t, c)
		d := newTestDriver(t, c.RestrictedConfig(), ns, Options{OpTimeout: 5 * time.Second})
		_, err := d.List(ctx)
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `"list and watch" "pods"`) {
			t.Fatalf("List without any grant: %v", err)
		}
	})
	t.Run("create", func(t *testing.T) {
		ns := namespace(t, c)
		grant(t, c, ns, []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"create", "get"}},
		})
		d := newTestDriver(t, c.RestrictedConfig(), ns, Options{})
		_, err := d.Start(ctx, testSpec("nginx"))
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `may not "create" "pods"`) || !strings.Contains(err.Error(), "create pod proteus-t-nginx-") || !strings.Contains(err.Error(), ns) {
			t.Fatalf("Start without create on pods: %v", err)
		}
	})
	t.Run("budget", func(t *testing.T) {
		ns := namespace(t, c)
		grant(t, c, ns, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}}})
		d := newTestDriver(t, c.RestrictedConfig(), ns, Options{MinAvailable: 1})
		_, err := d.Start(ctx, testSpec("nginx"))
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `may not "create" "poddisruptionbudgets"`) {
			t.Fatalf("Start without create on poddisruptionbudgets: %v", err)
		}
	})
}

// The Role in deploy/kubernetes is enough for the whole life of an executor: start, quarantine,
// sweep, stop, budget.
func testManifestRoleSuffices(t *testing.T, c *k8stest.Cluster) {
	f, err := os.Open(filepath.Join("..", "..", "deploy", "kubernetes", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var role *rbacv1.Role
	for {
		var r rbacv1.Role
		if err := dec.Decode(&r); err != nil {
			break
		}
		if r.Kind == "Role" {
			role = &r
		}
	}
	if role == nil {
		t.Fatal("deploy/kubernetes/rbac.yaml has no Role")
	}
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	grant(t, c, ns, role.Rules)
	d := newTestDriver(t, c.RestrictedConfig(), ns, Options{MinAvailable: 1, QuarantineRetention: time.Second})
	pool := newTestPool(t, d, 2, 1, 1, "nginx", "go")
	ctx := ctxT(t, 5*time.Minute)
	if err := pool.RotateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pool.Quarantine(ctx, pool.Healthy()[0].ID); err != nil {
		t.Fatal(err)
	}
	// The retention sweep deletes the quarantined pod (the Role lets it) while the driver runs:
	// closing the pool closes the driver and its sweeper, and the pods it kept stay by design.
	waitQuarantineSwept(t, c, ns)
	pool.Close(ctx)
	waitNoPods(t, c, ns)
}

// waitQuarantineSwept waits (generously) until no pod in the namespace is a quarantined one.
func waitQuarantineSwept(t *testing.T, c *k8stest.Cluster, ns string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ps, err := c.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kept := false
		for _, p := range ps.Items {
			if _, q := p.Annotations[AnnotQuarantined]; q && p.DeletionTimestamp == nil {
				kept = true
			}
		}
		if !kept {
			return
		}
	}
	t.Fatalf("the quarantined pod in %s was not deleted after its retention: %v", ns, podsLeft(t, c, ns))
}

// A pod deleted by someone else (kubectl, an eviction) is seen gone through the watch and
// replaced at once.
func testDeletedByOthers(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	d := newTestDriver(t, c.Config, ns, Options{})
	pool := newTestPool(t, d, 2, 1, 1, "nginx", "go")
	ctx := ctxT(t, 3*time.Minute)
	victim := pool.Healthy()[0]
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, victim.Handle, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		hs := pool.Healthy()
		gone := true
		for _, in := range hs {
			if in.ID == victim.ID {
				gone = false
			}
		}
		if gone && len(hs) == 2 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("deleted pod not replaced: %+v", pool.Healthy())
}

// The pool's PodDisruptionBudget holds voluntary evictions to the pool's floor.
func testBudget(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	d := newTestDriver(t, c.Config, ns, Options{MinAvailable: 2})
	pool := newTestPool(t, d, 2, 2, 1, "nginx", "go")
	ctx := ctxT(t, 3*time.Minute)
	// The disruption controller computes the budget's status from the Ready pods.
	deadline := time.Now().Add(2 * time.Minute)
	var pdb *policyv1.PodDisruptionBudget
	for time.Now().Before(deadline) {
		var err error
		if pdb, err = c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, d.budgetName(), metav1.GetOptions{}); err == nil && pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.ExpectedPods == 2 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pdb == nil || pdb.Spec.MinAvailable.IntValue() != 2 || pdb.Status.ExpectedPods != 2 {
		t.Fatalf("budget %+v", pdb)
	}
	victim := pool.Healthy()[0]
	err := c.Client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: victim.Handle, Namespace: ns}})
	if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), "disruption budget") {
		t.Fatalf("eviction below the floor: %v", err)
	}
}

// Must show: the API server restarted in the middle of a rotation: the pool recovers, leaks
// no pod, and the rotation completes or is retried.
func testAPIServerRestart(t *testing.T, c *k8stest.Cluster) {
	ns := namespace(t, c)
	c.ServePods(ns, okHandler())
	d := newTestDriver(t, c.Config, ns, Options{MinAvailable: 1})
	pool := newTestPool(t, d, 2, 1, 1, "nginx", "go")
	ctx := ctxT(t, 8*time.Minute)
	old := pool.Healthy()[0]
	before := map[string]bool{}
	for _, n := range podsLeft(t, c, ns) {
		before[n] = true
	}
	// Stop the API server as soon as the replacement pod exists, before it is Ready.
	created := make(chan struct{})
	var once sync.Once
	w := watchPods(t, c, ns, 0)
	w.mu.Lock()
	w.onEvent = func() {
		for n := range w.seen {
			if !before[n] {
				once.Do(func() { close(created) })
			}
		}
	}
	w.mu.Unlock()
	rotated := make(chan error, 1)
	go func() { rotated <- pool.Rotate(executor.WithReason(ctx, "test"), old.ID) }()
	select {
	case <-created:
	case <-ctx.Done():
		t.Fatal("replacement pod never created")
	}
	c.StopAPIServer()
	time.Sleep(2 * time.Second) // the driver's calls and watch fail meanwhile
	c.StartAPIServer()
	err := <-rotated
	if err != nil {
		t.Logf("rotation failed across the restart (%v); retrying", err)
		if err = pool.Rotate(ctx, old.ID); err != nil {
			t.Fatalf("retried rotation: %v", err)
		}
	}
	for _, in := range pool.Healthy() {
		if in.ID == old.ID {
			t.Fatal("old executor still in service after the rotation")
		}
	}
	// No leak: exactly the pool's members have pods, once the deleted ones are gone.
	deadline := time.Now().Add(2 * time.Minute)
	var left []string
	for time.Now().Before(deadline) {
		left = podsLeft(t, c, ns)
		if len(left) == 2 && len(pool.Healthy()) == 2 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	members := map[string]bool{}
	for _, in := range pool.Healthy() {
		members[in.Handle] = true
	}
	for _, n := range left {
		if !members[n] {
			t.Errorf("pod %s is not in the pool: leaked", n)
		}
	}
	if len(left) != 2 {
		t.Fatalf("pods after the restart: %v, want the pool's 2", left)
	}
	// The watch still works after the restart: a rotation now goes through.
	if err := pool.Rotate(ctx, pool.Healthy()[0].ID); err != nil {
		t.Fatalf("rotation after the restart: %v", err)
	}
	pool.Close(ctx)
	waitNoPods(t, c, ns)
}
