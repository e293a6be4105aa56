package mimic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Protocol upgrades (WebSocket above all) cannot be voted on: after the 101 the connection
// is a byte stream between the client and one server. So a request asking for an upgrade is
// tunnelled only on a single route, which the operator has to configure (on a voted route the
// Upgrade header is dropped like every hop-by-hop header, and the request is answered as a
// plain one): an attacker cannot reach a single executor unvoted just by asking for an upgrade.
// The tunnel goes to the executor the scheduler picks, through the http.RoundTripper (which
// speaks upgrades, to http:// and https:// executors alike); its handshake is bounded by
// UpstreamTimeout and a failed one is an availability dissent. An open tunnel holds no request
// slot of MaxInFlight but one of as many tunnel slots, and Close ends every tunnel.

// isUpgrade says whether r asks to switch protocols (RFC 9110, section 7.8).
func isUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" && httpTokenContains(r.Header.Get("Connection"), "upgrade")
}

// tunnels are the open ones, so Close can end them (http.Server.Shutdown leaves hijacked
// connections alone).
type tunnels struct {
	mu    sync.Mutex
	open  map[*tunnel]struct{}
	slots chan struct{}
}

type tunnel struct{ client, executor io.Closer }

func (t *tunnels) add(tn *tunnel) {
	t.mu.Lock()
	t.open[tn] = struct{}{}
	t.mu.Unlock()
}

func (t *tunnels) remove(tn *tunnel) {
	t.mu.Lock()
	delete(t.open, tn)
	t.mu.Unlock()
}

func (t *tunnels) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tn := range t.open {
		tn.client.Close()
		tn.executor.Close()
	}
}

// serveUpgrade answers an upgrade request on a single route.
func (g *Gateway) serveUpgrade(w http.ResponseWriter, r *http.Request, start time.Time) {
	select {
	case g.tunnels.slots <- struct{}{}:
		defer func() { <-g.tunnels.slots }()
	default:
		g.reject(w, PolicySingle, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if r.ContentLength != 0 {
		g.reject(w, PolicySingle, "rejected", http.StatusBadRequest)
		return
	}
	all := g.o.Backends.Backends()
	picked := g.core.Pick(nil, g.core.Eligible(all, 1, start), 1)
	if len(picked) == 0 {
		g.reject(w, PolicySingle, "no-consensus", http.StatusServiceUnavailable)
		return
	}
	b := picked[0]
	c := &call{g: g, policy: PolicySingle, path: r.URL.Path, id: g.seq.Add(1)}
	fail := func(err error) {
		err = fmt.Errorf("mimic: %s: upgrade: %w", b.ID, err)
		g.dissent(c, &response{backend: b, err: err}, DissentAvailability, diff{}, time.Now())
		g.ejectResult(b, err, time.Now())
		g.reject(w, PolicySingle, "failed", http.StatusBadGateway)
	}
	base, err := g.baseURL(b.Addr)
	if err != nil {
		fail(err)
		return
	}
	var filter outFilter
	filter.reset(r, false)
	hdr := outboundHeader(r, &filter)
	hdr.Set("Connection", "Upgrade")
	hdr["Upgrade"] = r.Header["Upgrade"]
	u := *r.URL
	u.Scheme, u.Host, u.User = base.Scheme, base.Host, nil
	// The context lives as long as the tunnel (the transport closes an upgraded connection
	// when it ends); the handshake alone is bounded by UpstreamTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handshake := time.AfterFunc(g.o.UpstreamTimeout, cancel)
	clientGone := context.AfterFunc(r.Context(), cancel) // during the handshake only
	out := (&http.Request{Method: r.Method, URL: &u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Host: r.Host, Body: http.NoBody}).WithContext(ctx)
	resp, err := g.upgradeTransport().RoundTrip(out)
	if !clientGone() {
		if err == nil {
			resp.Body.Close()
		}
		handshake.Stop()
		g.metrics.requests.WithLabelValues(string(PolicySingle), "client-gone").Inc()
		return
	}
	if !handshake.Stop() && err == nil {
		resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = fmt.Errorf("no answer within %s", g.o.UpstreamTimeout)
		}
		fail(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The executor declined: its answer goes to the client as it is.
		g.answered(b)
		writeHead(w, r.Method, resp.StatusCode, resp.Header, resp.ContentLength)
		io.Copy(w, resp.Body)
		g.metrics.requests.WithLabelValues(string(PolicySingle), "ok").Inc()
		return
	}
	executor, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || !strings.EqualFold(resp.Header.Get("Upgrade"), r.Header.Get("Upgrade")) {
		fail(fmt.Errorf("switched to %q, asked for %q", resp.Header.Get("Upgrade"), r.Header.Get("Upgrade")))
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		g.reject(w, PolicySingle, "rejected", http.StatusHTTPVersionNotSupported)
		return
	}
	g.answered(b)
	tn := &tunnel{client: client, executor: executor}
	g.tunnels.add(tn)
	defer g.tunnels.remove(tn)
	g.metrics.requests.WithLabelValues(string(PolicySingle), "upgraded").Inc()
	g.log.Info("tunnel open", "executor", b.ID, "request", c.requestID(), "route", c.path, "protocol", resp.Header.Get("Upgrade"))
	client.SetDeadline(time.Time{}) // the server's read and write timeouts are for requests, not tunnels
	if err := writeSwitch(brw.Writer, resp.Header); err != nil {
		client.Close()
		return
	}
	pump(client, brw.Reader, executor)
	g.metrics.duration.WithLabelValues(string(PolicySingle)).Observe(time.Since(start).Seconds())
}

// answered records a handshake the executor answered, for its trust and its ejection.
func (g *Gateway) answered(b Backend) {
	now := time.Now()
	g.ejectResult(b, nil, now)
	g.core.Agreed(b, now)
}

// upgradeTransport is the RoundTripper that carries upgrade handshakes.
func (g *Gateway) upgradeTransport() http.RoundTripper {
	if g.h1 != nil {
		return g.h1.tls // an http.Transport, for http:// executors too
	}
	return g.transport
}

// writeSwitch sends the executor's 101 with its header (Connection and Upgrade included, which
// a 101 needs) to the client.
func writeSwitch(bw *bufio.Writer, h http.Header) error {
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	if err := h.Write(bw); err != nil {
		return err
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// pump copies both ways until either side ends, then closes both. br holds what the client
// sent after its request and net/http had already read.
func pump(client net.Conn, br *bufio.Reader, executor io.ReadWriteCloser) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(executor, br) // br reads through to client once its buffer is empty
		done <- struct{}{}
	}()
	go func() {
		io.Copy(client, executor)
		done <- struct{}{}
	}()
	<-done
	client.Close()
	executor.Close()
	<-done
}
