package k8stest

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// HeaderPod is set on every request ServePods hands to the handler: the pod it was sent to.
const HeaderPod = "X-K8stest-Pod"

// ServePods stands in for the containers kwok does not run: while a pod of namespace is Ready
// with a loopback IP (kwok's PodCIDR), it answers HTTP on podIP:containerPort with h (the
// request carries HeaderPod). A pod's listener closes once the pod is being deleted or gone,
// so a deleted executor refuses connections as a real one would. It stops when the test ends.
func (c *Cluster) ServePods(namespace string, h http.Handler) {
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace(namespace))
	inf := f.Core().V1().Pods().Informer()
	s := &podServer{h: h, ls: map[string]*podListener{}}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.update(o) },
		UpdateFunc: func(_, o any) { s.update(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				s.close(string(p.UID))
			}
		},
	})
	f.Start(ctx.Done())
	c.t.Cleanup(func() {
		cancel()
		f.Shutdown()
		s.closeAll()
	})
}

type podServer struct {
	h  http.Handler
	mu sync.Mutex
	ls map[string]*podListener // pod UID ->
}

type podListener struct {
	srv  *http.Server
	stop chan struct{}
}

var podNet = func() *net.IPNet { _, n, _ := net.ParseCIDR(PodCIDR); return n }()

func (s *podServer) update(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	uid := string(p.UID)
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		s.close(uid)
		return
	}
	ip := net.ParseIP(p.Status.PodIP)
	if ip == nil || !podNet.Contains(ip) || len(p.Spec.Containers) == 0 || len(p.Spec.Containers[0].Ports) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ls[uid]; ok {
		return
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(p.Spec.Containers[0].Ports[0].ContainerPort)))
	name := p.Name
	h := s.h
	pl := &podListener{stop: make(chan struct{}), srv: &http.Server{ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set(HeaderPod, name)
			h.ServeHTTP(w, r)
		})}}
	s.ls[uid] = pl
	go func() {
		// A recycled IP may still be held by the previous pod's listener for a moment.
		for {
			l, err := net.Listen("tcp", addr)
			if err == nil {
				_ = pl.srv.Serve(l)
				return
			}
			select {
			case <-pl.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

func (s *podServer) close(uid string) {
	s.mu.Lock()
	pl := s.ls[uid]
	delete(s.ls, uid)
	s.mu.Unlock()
	if pl != nil {
		close(pl.stop)
		_ = pl.srv.Close()
	}
}

func (s *podServer) closeAll() {
	s.mu.Lock()
	uids := make([]string, 0, len(s.ls))
	for u := range s.ls {
		uids = append(uids, u)
	}
	s.mu.Unlock()
	for _, u := range uids {
		s.close(u)
	}
}
