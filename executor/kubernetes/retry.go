package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// retry runs call until it succeeds, fails for good, or the driver's OpTimeout (or ctx) ends.
// Conflicts (409), throttling (429, honouring Retry-After), server timeouts, 5xx and an
// unreachable API server (say while it restarts) are retried with jittered exponential
// backoff from 100ms to 5s. The error names verb and object ("create pod proteus-x").
func (d *Driver) retry(ctx context.Context, verb, object string, call func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.OpTimeout)
	defer cancel()
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return d.apiError(verb, object, fmt.Sprintf(" (attempt %d)", attempt), err)
		}
		wait := delay/2 + rand.N(delay/2+1)
		if s, ok := apierrors.SuggestsClientDelay(err); ok && s > 0 {
			wait = max(wait, time.Duration(s)*time.Second)
		}
		d.log.Debug("api call retried", "verb", verb, "object", object, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return d.apiError(verb, object, fmt.Sprintf(" (attempt %d, gave up after %v)", attempt, d.opts.OpTimeout), err)
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// retryable says whether an API error may go away by itself.
func retryable(err error) bool {
	switch {
	case apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err),
		apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err):
		return true
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Code >= 500
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// client-go reports a connection the server closed mid-request in plain text.
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "EOF") || strings.Contains(s, "http2: server sent GOAWAY")
}

// apiError wraps err with the component, verb and object; a refused verb says which grant the
// agent's Role lacks and wraps ErrForbidden.
func (d *Driver) apiError(verb, object, note string, err error) error {
	if apierrors.IsForbidden(err) {
		kind, _, _ := strings.Cut(object, " ")
		return fmt.Errorf("executor/kubernetes: %s %s in namespace %s: %w: the agent may not %q %q (grant it in the agent's Role, deploy/kubernetes/rbac.yaml): %w",
			verb, object, d.opts.Namespace, ErrForbidden, verb, plural(kind), err)
	}
	return fmt.Errorf("executor/kubernetes: %s %s in namespace %s%s: %w", verb, object, d.opts.Namespace, note, err)
}

func plural(kind string) string {
	if strings.HasSuffix(kind, "s") {
		return kind
	}
	if strings.HasSuffix(kind, "y") {
		return strings.TrimSuffix(kind, "y") + "ies"
	}
	return kind + "s"
}

// callCounter counts the HTTP requests the client sends, by verb (a GET with watch=true
// counts as WATCH, a GET of a collection is not told apart from a GET of one object).
type callCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *callCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		verb := r.Method
		if verb == http.MethodGet && r.URL.Query().Get("watch") == "true" {
			verb = "WATCH"
		}
		c.mu.Lock()
		if c.n == nil {
			c.n = map[string]int64{}
		}
		c.n[verb]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (c *callCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
