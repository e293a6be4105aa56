package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// HealthChecker probes executors: over HTTP (a 2xx answer to GET http://<address><path>
// within the timeout is healthy) or, for a spec with a HealthQuery, by a DNS query.
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

// Probe checks inst the way spec says: by its HealthQuery when set, else over HTTP at its
// HealthPath.
func (h *HealthChecker) Probe(ctx context.Context, inst *Instance, spec Spec) error {
	if spec.HealthQuery != nil {
		return h.CheckDNS(ctx, inst, *spec.HealthQuery)
	}
	return h.Check(ctx, inst, spec.HealthPath)
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

// ErrUnhealthyAnswer is what CheckDNS wraps when the executor answered, but not well.
var ErrUnhealthyAnswer = errors.New("executor: unhealthy answer")

// CheckDNS asks inst q over UDP and then over TCP (the voting DNS front uses both: TCP when
// an answer is truncated), each within the timeout; healthy is, on both, an answer to q
// (the ID and question asked) with rcode NOERROR and at least one answer record.
func (h *HealthChecker) CheckDNS(ctx context.Context, inst *Instance, q DNSQuery) error {
	for _, network := range []string{"udp", "tcp"} {
		if err := h.askDNS(ctx, inst.Address, network, q); err != nil {
			return fmt.Errorf("executor: health %s: %s %s %s: %w", inst.ID, network, q.Name, dns.Type(q.Type), err)
		}
	}
	return nil
}

func (h *HealthChecker) askDNS(ctx context.Context, addr, network string, q DNSQuery) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	m := new(dns.Msg).SetQuestion(q.Name, q.Type)
	m.RecursionDesired = true
	c := dns.Client{Net: network, Timeout: h.timeout, UDPSize: dns.MinMsgSize}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	switch {
	case err != nil:
		return err
	case !r.Response || r.Id != m.Id || len(r.Question) != 1 || r.Question[0].Qtype != q.Type ||
		!strings.EqualFold(r.Question[0].Name, q.Name):
		return fmt.Errorf("%w: not an answer to the question asked", ErrUnhealthyAnswer)
	case r.Rcode != dns.RcodeSuccess:
		return fmt.Errorf("%w: rcode %s", ErrUnhealthyAnswer, dns.RcodeToString[r.Rcode])
	case len(r.Answer) == 0 && !r.Truncated:
		return fmt.Errorf("%w: no answer records", ErrUnhealthyAnswer)
	}
	return nil
}
