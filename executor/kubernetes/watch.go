package kubernetes

import (
	"context"
	"net/http"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// WatchStats says how the pool's pod watch has fared since the driver was built.
type WatchStats struct {
	// Lists counts full lists of the pool's pods: the first sync and every relist (a LIST, or
	// a watch that streams the initial state, which client-go prefers where the server has it).
	Lists int64
	// Expired counts watches the API server ended with 410 Gone (the resource version the
	// watch resumed from was compacted away); client-go lists again after each.
	Expired int64
}

// watchCounters is what podListWatch counts; the zero value is ready.
type watchCounters struct {
	lists, expired atomic.Int64
	onExpired      func(error)
}

func (w *watchCounters) stats() WatchStats {
	return WatchStats{Lists: w.lists.Load(), Expired: w.expired.Load()}
}

func expired(err error) bool { return apierrors.IsResourceExpired(err) || apierrors.IsGone(err) }

func (w *watchCounters) sawExpired(err error) {
	w.expired.Add(1)
	if w.onExpired != nil {
		w.onExpired(err)
	}
}

// podListWatch lists and watches namespace's pods matching selector for an informer, as
// client-go's generated pod informer does, and counts full lists and expired watches.
func podListWatch(cs kubernetes.Interface, namespace, selector string, n *watchCounters) cache.ListerWatcher {
	pods := cs.CoreV1().Pods(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			l, err := pods.List(ctx, o)
			if err != nil {
				return nil, err
			}
			n.lists.Add(1)
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			w, err := pods.Watch(ctx, o)
			if err != nil {
				if expired(err) {
					n.sawExpired(err)
				}
				return nil, err
			}
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				n.lists.Add(1)
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				if e.Type == watch.Error {
					if st, ok := e.Object.(*metav1.Status); ok && (st.Code == http.StatusGone || st.Reason == metav1.StatusReasonExpired) {
						n.sawExpired(apierrors.FromObject(st))
					}
				}
				return e, true
			}), nil
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, cs)
}
