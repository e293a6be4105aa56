// Package kubernetes is the executor driver that runs each executor as a Pod created through
// the Kubernetes API from the variant's image pinned by digest, and deletes it on rotation.
//
// It owns everything Proteus does to a cluster: hardened pod specs (read-only root file
// system, a non-root uid, every capability dropped, no privilege escalation, seccomp
// RuntimeDefault, no service-account token, resource limits), the labels that say which pods
// are Proteus's (managed-by, pool, variant, executor ID) and an owner reference to the agent's
// own Pod, readiness and deletion learned from a watch (a client-go informer, resynced by
// client-go after an API server restart or an expired watch), the pool's
// PodDisruptionBudget, and quarantine (a deny-all NetworkPolicy, a reason label, deletion
// after a bounded retention). Conflicts, throttling and an unreachable API server are
// retried with backoff; every error names the verb and the object.
//
// It talks to the API server through client-go (k8s.io/client-go v0.37.2, matching the API
// server v1.37.2 the tests run against). It registers itself as the "kubernetes" driver from
// init(). It must not import the pool's callers (mimic, engine, enclave, cmd) nor other
// drivers.
package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/executor"
)

// ID is the driver's registered name.
const ID = "kubernetes"

// Labels and annotations Proteus puts on what it creates. Only objects carrying
// LabelManagedBy=ManagedBy and this driver's LabelPool are ever listed, changed or deleted.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedBy        = "proteus"
	LabelPool        = "proteus.io/pool"
	LabelVariant     = "proteus.io/variant"
	LabelExecutor    = "proteus.io/executor"
	LabelRole        = "proteus.io/role" // RoleExecutor or RoleQuarantined
	LabelReason      = "proteus.io/quarantine-reason"
	RoleExecutor     = "executor"
	RoleQuarantined  = "quarantined"
	AnnotImage       = "proteus.io/image" // the pinned reference from the spec
	AnnotPort        = "proteus.io/container-port"
	AnnotTraits      = "proteus.io/traits"
	AnnotQuarantined = "proteus.io/quarantined-at" // RFC 3339
	AnnotReason      = "proteus.io/quarantine-reason"
	containerName    = "executor"
)

// Sentinel errors.
var (
	// ErrForbidden wraps every error caused by the API server refusing a verb to the agent.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalidSpec wraps ValidateSpec errors.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrNotOwned is returned when asked to act on a pod that is not this pool's.
	ErrNotOwned = errors.New("pod not owned by this pool")
	// ErrPodGone is returned by Start when the new pod is deleted or fails before it is Ready.
	ErrPodGone = errors.New("pod gone before it was ready")
)

// Options configure a Driver. Zero values take the documented defaults.
type Options struct {
	// Config reaches the API server; nil: Kubeconfig, else the in-cluster service account.
	Config     *rest.Config
	Kubeconfig string
	// Namespace holds the pods; default the in-cluster namespace, else "default".
	Namespace string
	Pool      string // proteus.io/pool label value; default "proteus"
	// Owner is the object every pod is owned by (the agent's own Pod), so that deleting it
	// deletes the executors; nil: from $PROTEUS_POD_NAME and $PROTEUS_POD_UID (the downward
	// API in deploy/kubernetes), or no owner when those are unset.
	Owner *metav1.OwnerReference
	// MinAvailable is the pool's PodDisruptionBudget floor (the pool's min); 0: no budget.
	MinAvailable int
	StopGrace    time.Duration // pod terminationGracePeriodSeconds; default 5s
	// ReadyTimeout bounds how long Start waits for the pod to be scheduled and Ready
	// (default 2m).
	ReadyTimeout time.Duration
	// QuarantineRetention is how long a quarantined pod is kept; default 1h.
	QuarantineRetention time.Duration
	// OpTimeout bounds the retries of one API call (default 1m).
	OpTimeout time.Duration
	RunAsUser int64   // default 65532
	Memory    int64   // bytes per pod (limit and request); default 256 MiB
	CPU       float64 // cores per pod (limit); default 0.5
	QPS       float32 // client-side rate limit; default 50 (burst 2×)
	Logger    *slog.Logger
	Bus       *bus.Bus
}

// Driver runs executors as Pods. It is safe for concurrent use.
type Driver struct {
	cs    kubernetes.Interface
	opts  Options
	log   *slog.Logger
	bus   *bus.Bus
	calls *callCounter
	sel   labels.Selector // this pool's objects

	informer cache.SharedIndexInformer
	pods     corelisters.PodLister
	life     context.Context
	shutdown context.CancelFunc
	watchErr atomic.Pointer[error] // the informer's last list/watch error
	watch    watchCounters

	mu      sync.Mutex
	changed chan struct{}            // closed and replaced on every pod event
	exits   map[string]chan struct{} // executor ID -> closed when its pod is gone or failed
	pdbDone bool
	closed  bool
	janitor sync.WaitGroup // the informer and the retention sweeper
}

var (
	_ executor.Driver      = (*Driver)(nil)
	_ executor.Validator   = (*Driver)(nil)
	_ executor.ExitWatcher = (*Driver)(nil)
	_ executor.Cleaner     = (*Driver)(nil)
)

func init() {
	executor.Register(ID, func(env executor.Env) (executor.Driver, error) {
		var o Options
		if pc, ok := env.Options.(config.Pool); ok {
			k := pc.Kubernetes
			o = Options{Kubeconfig: k.Kubeconfig, Namespace: k.Namespace, Pool: k.Pool, MinAvailable: pc.Min,
				ReadyTimeout: k.ReadyTimeout, QuarantineRetention: k.QuarantineRetention, RunAsUser: k.RunAsUser}
		}
		o.Logger, o.Bus = env.Logger, env.Bus
		if o.StopGrace == 0 {
			o.StopGrace = env.StopGrace
		}
		if iso := env.Isolation; iso.Mode != executor.IsolationOff && o.Memory == 0 {
			o.Memory, o.CPU = iso.Memory, iso.CPU
		}
		return New(o)
	})
}

const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// New builds a driver and starts its pod watch; it does not wait for the API server.
func New(o Options) (*Driver, error) {
	if o.Config == nil {
		var err error
		if o.Kubeconfig != "" {
			o.Config, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		} else {
			o.Config, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("executor/kubernetes: api server config: %w", err)
		}
	}
	if o.Namespace == "" {
		if b, err := os.ReadFile(inClusterNamespaceFile); err == nil && strings.TrimSpace(string(b)) != "" {
			o.Namespace = strings.TrimSpace(string(b))
		} else {
			o.Namespace = "default"
		}
	}
	if o.Pool == "" {
		o.Pool = "proteus"
	}
	if o.Owner == nil {
		if name, uid := os.Getenv("PROTEUS_POD_NAME"), os.Getenv("PROTEUS_POD_UID"); name != "" && uid != "" {
			o.Owner = &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: name, UID: types.UID(uid)}
		}
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&o.StopGrace, 5*time.Second)
	setDur(&o.ReadyTimeout, 2*time.Minute)
	setDur(&o.QuarantineRetention, time.Hour)
	setDur(&o.OpTimeout, time.Minute)
	if o.RunAsUser <= 0 {
		o.RunAsUser = 65532
	}
	if o.Memory <= 0 {
		o.Memory = 256 << 20
	}
	if o.CPU <= 0 {
		o.CPU = 0.5
	}
	if o.QPS <= 0 {
		o.QPS = 50
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := rest.CopyConfig(o.Config)
	cfg.QPS, cfg.Burst = o.QPS, int(2*o.QPS)
	calls := &callCounter{}
	cfg.Wrap(calls.wrap)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("executor/kubernetes: client: %w", err)
	}
	return newDriver(cs, o, calls), nil
}

func newDriver(cs kubernetes.Interface, o Options, calls *callCounter) *Driver {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelPool: o.Pool})
	d := &Driver{cs: cs, opts: o, log: o.Logger.With("component", "executor/kubernetes", "namespace", o.Namespace, "pool", o.Pool),
		bus: o.Bus, calls: calls, sel: sel, changed: make(chan struct{}), exits: map[string]chan struct{}{}}
	d.life, d.shutdown = context.WithCancel(context.Background())
	d.watch.onExpired = func(err error) {
		d.log.Warn("pod watch expired (410 Gone); client-go lists the pool's pods again", "err", err)
	}
	d.informer = cache.NewSharedIndexInformerWithOptions(podListWatch(cs, o.Namespace, sel.String(), &d.watch), &corev1.Pod{},
		cache.SharedIndexInformerOptions{ResyncPeriod: 10 * time.Minute, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}})
	d.pods = corelisters.NewPodLister(d.informer.GetIndexer())
	_ = d.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		d.watchErr.Store(&err)
		d.log.Warn("pod watch interrupted; client-go relists and watches again", "err", err)
	})
	_, _ = d.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { d.podsChanged() },
		UpdateFunc: func(_, obj any) { d.podsChanged() },
		DeleteFunc: func(any) { d.podsChanged() },
	})
	d.janitor.Add(2)
	go func() { defer d.janitor.Done(); d.informer.RunWithContext(d.life) }()
	go d.sweepLoop()
	return d
}

// Close stops the watch and the retention sweeper; it deletes nothing.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.shutdown()
	d.janitor.Wait()
	return nil
}

// Namespace is the namespace the driver works in.
func (d *Driver) Namespace() string { return d.opts.Namespace }

// Calls returns how many API requests the driver has sent, by verb (GET, LIST, WATCH, POST,
// PATCH, PUT, DELETE), since it was built.
func (d *Driver) Calls() map[string]int64 { return d.calls.snapshot() }

// Watch returns how the pool's pod watch has fared: full lists and expired (410) watches.
func (d *Driver) Watch() WatchStats { return d.watch.stats() }

// podsChanged wakes every waiter and fires exit channels of pods that are gone or ended.
func (d *Driver) podsChanged() {
	d.mu.Lock()
	close(d.changed)
	d.changed = make(chan struct{})
	var fire []string
	for id := range d.exits {
		if p := d.podByID(id); p == nil || ended(p) {
			fire = append(fire, id)
		}
	}
	for _, id := range fire {
		close(d.exits[id])
		delete(d.exits, id)
	}
	d.mu.Unlock()
}

func (d *Driver) changes() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// podByID finds this pool's pod of executor id in the watch cache.
func (d *Driver) podByID(id string) *corev1.Pod {
	ps, err := d.pods.Pods(d.opts.Namespace).List(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool, LabelExecutor: id}))
	if err != nil || len(ps) == 0 {
		return nil
	}
	return ps[0]
}

// ended reports a pod that will not serve again: deleted, or its container finished.
func ended(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

func ready(p *corev1.Pod) bool {
	if p.Status.PodIP == "" || ended(p) {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// synced waits for the pod watch's first list, and says why when it cannot get it.
func (d *Driver) synced(ctx context.Context) error {
	if d.informer.HasSynced() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.OpTimeout)
	defer cancel()
	if cache.WaitForCacheSync(ctx.Done(), d.informer.HasSynced) {
		return nil
	}
	err := ctx.Err()
	if p := d.watchErr.Load(); p != nil {
		err = *p
	}
	return d.apiError("list and watch", "pods", "", err)
}

// waitFor waits until cond holds on the watch cache (checked at once and after every pod
// event), ctx ends or timeout passes.
func (d *Driver) waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		ch := d.changes()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return cond()
		case <-ctx.Done():
			return false
		}
	}
}

func newID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Start creates a pod for spec and returns once it is Ready with an address.
func (d *Driver) Start(ctx context.Context, spec executor.Spec) (*executor.Instance, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	if err := d.synced(ctx); err != nil {
		return nil, err
	}
	if err := d.ensureBudget(ctx); err != nil {
		return nil, err
	}
	id := newID()
	pod, err := d.podFor(spec, id)
	if err != nil {
		return nil, fmt.Errorf("executor/kubernetes: start %s: %w", spec.Variant, err)
	}
	name := pod.Name
	err = d.retry(ctx, "create", "pod "+name, func(ctx context.Context) error {
		_, err := d.cs.CoreV1().Pods(d.opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// A retried create whose first attempt reached the server: the name is ours.
			if got, gerr := d.cs.CoreV1().Pods(d.opts.Namespace).Get(ctx, name, metav1.GetOptions{}); gerr == nil && got.Labels[LabelExecutor] == id {
				return nil
			}
		}
		return err
	})
	if err != nil {
		d.publish(executor.EventFailed, spec.Variant, map[string]any{"variant": spec.Variant, "pod": name, "err": err.Error()})
		return nil, err
	}
	var p *corev1.Pod
	gone := false
	ok := d.waitFor(ctx, d.opts.ReadyTimeout, func() bool {
		p = d.podByID(id)
		if p != nil && ended(p) {
			gone = true
		}
		return gone || (p != nil && ready(p))
	})
	if !ok || gone {
		why := fmt.Sprintf("not ready after %v", d.opts.ReadyTimeout)
		switch {
		case gone:
			why = ErrPodGone.Error()
		case ctx.Err() != nil:
			why = ctx.Err().Error()
		}
		if p != nil {
			why += " (" + podSummary(p) + ")"
		}
		// Never leave a pod that is not in service behind.
		if derr := d.deletePod(context.WithoutCancel(ctx), name, 0); derr != nil {
			d.log.Error("delete of a pod that never became ready failed; the pool's next start lists it", "pod", name, "err", derr)
		}
		if gone {
			return nil, fmt.Errorf("executor/kubernetes: start pod %s: %w%s", name, ErrPodGone, strings.TrimPrefix(why, ErrPodGone.Error()))
		}
		return nil, fmt.Errorf("executor/kubernetes: start pod %s: %s", name, why)
	}
	inst := d.instance(p)
	d.log.Info("executor pod ready", "pod", name, "variant", spec.Variant, "address", inst.Address, "node", p.Spec.NodeName)
	d.publish(executor.EventStarted, inst.ID, map[string]any{"variant": spec.Variant, "pod": name, "address": inst.Address, "node": p.Spec.NodeName})
	return inst, nil
}

// podSummary says where a pod is stuck, for errors.
func podSummary(p *corev1.Pod) string {
	s := "phase " + string(p.Status.Phase)
	if p.Spec.NodeName == "" {
		s += ", not scheduled"
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf(", %s: %s", c.Type, c.Message)
		}
	}
	return s
}

// instance turns one of this pool's pods into an Instance.
func (d *Driver) instance(p *corev1.Pod) *executor.Instance {
	port, _ := strconv.Atoi(p.Annotations[AnnotPort])
	inst := &executor.Instance{
		ID:          p.Labels[LabelExecutor],
		Variant:     p.Labels[LabelVariant],
		Driver:      ID,
		Handle:      p.Name,
		ImageDigest: digestOf(p.Annotations[AnnotImage]),
		Started:     p.CreationTimestamp.Time,
		Traits:      decodeTraits(p.Annotations[AnnotTraits]),
		Isolation:   isolationSummary(p),
	}
	if p.Status.PodIP != "" {
		inst.Address = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))
	}
	return inst
}

// ownPod finds inst's pod in the watch cache and checks it is this pool's.
func (d *Driver) ownPod(inst *executor.Instance) (*corev1.Pod, error) {
	if inst == nil || inst.ID == "" || inst.Handle == "" {
		return nil, fmt.Errorf("executor/kubernetes: %w: empty instance", ErrNotOwned)
	}
	p, err := d.pods.Pods(d.opts.Namespace).Get(inst.Handle)
	if err != nil {
		return nil, nil // not in the cache: gone already
	}
	if !d.sel.Matches(labels.Set(p.Labels)) || p.Labels[LabelExecutor] != inst.ID {
		return nil, fmt.Errorf("executor/kubernetes: pod %s: %w", inst.Handle, ErrNotOwned)
	}
	return p, nil
}

// Stop deletes inst's pod (with the grace period, then at once if it lingers) and returns
// once the watch has seen it go. A quarantined pod is left for forensics, as the other drivers
// leave theirs: the retention sweep (or the deletion of the agent's Pod, its owner) deletes it.
func (d *Driver) Stop(ctx context.Context, inst *executor.Instance) error {
	if err := d.synced(ctx); err != nil {
		return err
	}
	p, err := d.ownPod(inst)
	switch {
	case err != nil:
		return err
	case p == nil: // not among the pool's pods: gone already (a pod of that name without the pool's labels is not touched)
		return nil
	case p.Labels[LabelRole] == RoleQuarantined:
		d.log.Info("quarantined pod kept until its retention ends", "pod", p.Name, "quarantined_at", p.Annotations[AnnotQuarantined])
		return nil
	}
	name := inst.Handle
	grace := int64(d.opts.StopGrace / time.Second)
	if err := d.deletePod(ctx, name, grace); err != nil {
		return err
	}
	gone := func() bool { return d.podByID(inst.ID) == nil }
	if !d.waitFor(ctx, d.opts.StopGrace+10*time.Second, gone) {
		if ctx.Err() != nil {
			return fmt.Errorf("executor/kubernetes: delete pod %s: %w", name, ctx.Err())
		}
		d.log.Warn("pod outlived its grace period; deleting it at once", "pod", name)
		if err := d.deletePod(ctx, name, 0); err != nil {
			return err
		}
		if !d.waitFor(ctx, 30*time.Second, gone) {
			return fmt.Errorf("executor/kubernetes: delete pod %s: still present 30s after a delete with no grace period", name)
		}
	}
	d.publish(executor.EventStopped, inst.ID, map[string]any{"variant": inst.Variant, "pod": name})
	return nil
}

// deletePod deletes a pod; a pod already gone is not an error.
func (d *Driver) deletePod(ctx context.Context, name string, grace int64) error {
	return d.retry(ctx, "delete", "pod "+name, func(ctx context.Context) error {
		err := d.cs.CoreV1().Pods(d.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// List returns this pool's executor pods (not the quarantined ones, which the retention
// sweep deletes), from the watch cache.
func (d *Driver) List(ctx context.Context) ([]*executor.Instance, error) {
	if err := d.synced(ctx); err != nil {
		return nil, err
	}
	ps, err := d.pods.Pods(d.opts.Namespace).List(d.roleSelector(RoleExecutor))
	if err != nil {
		return nil, fmt.Errorf("executor/kubernetes: list pods: %w", err)
	}
	out := make([]*executor.Instance, 0, len(ps))
	for _, p := range ps {
		if p.Labels[LabelExecutor] != "" {
			out = append(out, d.instance(p))
		}
	}
	return out, nil
}

func (d *Driver) roleSelector(role string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool, LabelRole: role})
}

// Exited returns a channel closed when inst's pod is deleted (by anyone) or its container
// finished, as the watch reports it.
func (d *Driver) Exited(inst *executor.Instance) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, ok := d.exits[inst.ID]; ok {
		return ch
	}
	ch := make(chan struct{})
	if p := d.podByID(inst.ID); p == nil || ended(p) {
		close(ch)
		return ch
	}
	d.exits[inst.ID] = ch
	return ch
}

func (d *Driver) publish(kind, subject string, attrs map[string]any) {
	d.bus.Publish(bus.Event{Kind: kind, Source: "executor/kubernetes", Subject: subject, Attrs: attrs})
}
