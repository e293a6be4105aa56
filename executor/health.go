package executor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// HealthChecker probes executors over HTTP: a 2xx answer to GET http://<address><path> within
// the timeout is healthy, anything else is not.
type HealthChecker struct {
	client  *http.Client
	timeout time.Duration
}

// NewHealthChecker returns a checker with the given per-probe timeout. Probes do not reuse
// connections, so a probe always exercises the executor's accept path.
func NewHealthChecker(timeout time.Duration) *HealthChecker {
	if timeout <= 0 {
		timeout = time.Second
	}
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil, MaxResponseHeaderBytes: 64 << 10}
	return &HealthChecker{client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}, timeout: timeout}
}

// Check probes inst at path ("/" when empty).
func (h *HealthChecker) Check(ctx context.Context, inst *Instance, path string) error {
	if path == "" {
		path = "/"
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+inst.Address+path, nil)
	if err != nil {
		return fmt.Errorf("executor: health %s: %w", inst.ID, err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("executor: health %s: %w", inst.ID, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("executor: health %s: status %d", inst.ID, resp.StatusCode)
	}
	return nil
}
