package executor

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoExecutor is what the proxy reports (as 503) when no executor is in service.
var ErrNoExecutor = errors.New("executor: no healthy executor")

// maxReplayBody is the largest request body the proxy buffers so it can resend the request
// to another executor; larger bodies are streamed and never retried.
const maxReplayBody = 1 << 20

// Proxy is the plain front end the agent serves through with `--proxy` (or
// gateway.frontend: proxy) instead of the default voting gateway: round robin over the
// pool's healthy executors, Acquire/Release around every request so rotation can drain,
// and one retry on another executor when a connection fails, so an executor that goes away
// between snapshot and send never surfaces as an error.
type Proxy struct {
	pool *Pool
	rr   atomic.Uint64
	tr   *http.Transport
	rp   *httputil.ReverseProxy
	log  *slog.Logger
}

// NewProxy returns a proxy in front of p.
func NewProxy(p *Pool, logger *slog.Logger) *Proxy {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	x := &Proxy{pool: p, log: logger.With("component", "executor/proxy")}
	x.tr = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	x.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetXForwarded()
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = "executor.invalid" // replaced per attempt by roundTrip
			r.Out.Host = r.In.Host
		},
		Transport: roundTripFunc(x.roundTrip),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status := http.StatusBadGateway
			if errors.Is(err, ErrNoExecutor) {
				status = http.StatusServiceUnavailable
			}
			x.log.Warn("proxy error", "path", r.URL.Path, "err", err)
			http.Error(w, http.StatusText(status), status)
		},
	}
	return x
}

// ServeHTTP forwards r to one executor.
func (x *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { x.rp.ServeHTTP(w, r) }

// Close drops idle connections to executors.
func (x *Proxy) Close() { x.tr.CloseIdleConnections() }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (x *Proxy) roundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil && req.ContentLength > 0 && req.ContentLength <= maxReplayBody {
		data, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(data))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	var lastErr error
	tries := 0
	for round := 0; round < 2 && tries < 2; round++ {
		insts := x.pool.Healthy() // a fresh snapshot on the second round
		n := len(insts)
		start := int(x.rr.Add(1) % uint64(max(n, 1)))
		for i := 0; i < n && tries < 2; i++ {
			inst := insts[(start+i)%n]
			if !x.pool.Acquire(inst.ID) {
				continue
			}
			tries++
			out := req
			if tries > 1 {
				if !replayable || !retryable(req, lastErr) {
					x.pool.Release(inst.ID)
					return nil, lastErr
				}
				out = req.Clone(req.Context())
				if req.GetBody != nil {
					body, err := req.GetBody()
					if err != nil {
						x.pool.Release(inst.ID)
						return nil, lastErr
					}
					out.Body = body
				}
			} else {
				out = req.Clone(req.Context())
			}
			out.URL.Host = inst.Address
			resp, err := x.tr.RoundTrip(out)
			if err != nil {
				x.pool.Release(inst.ID)
				lastErr = err
				continue
			}
			resp.Body = &releasingBody{ReadCloser: resp.Body, release: func() { x.pool.Release(inst.ID) }}
			return resp, nil
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, ErrNoExecutor
}

// retryable reports whether a request that failed with err may be sent again: always when
// the connection was never established, otherwise only for idempotent methods.
func retryable(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// releasingBody calls release exactly once, when the response body is closed.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
