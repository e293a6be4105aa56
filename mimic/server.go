package mimic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// ServerOptions are the client-facing server's limits. Zero values take the defaults.
type ServerOptions struct {
	ReadHeaderTimeout time.Duration // default 5s: slow clients are cut off before any fan-out
	ReadTimeout       time.Duration // whole request including body, default 30s
	WriteTimeout      time.Duration // default 30s
	IdleTimeout       time.Duration // keep-alive, default 60s
	MaxHeaderBytes    int           // default 16 KiB; above: 431
	TLSCert, TLSKey   string        // PEM files; when set, HTTPS with ALPN h2 and http/1.1
	H2C               bool          // also accept HTTP/2 without TLS (prior knowledge)
	// MaxConnsPerClient bounds the connections one client address (IPv6: /64) holds open at
	// once, default 512; connections from TrustedProxies are not counted (see connlimit.go).
	MaxConnsPerClient int
	TrustedProxies    []netip.Prefix
	// Gateway, when set, is the gateway whose identity (Server value and pages) answers the
	// requests net/http refuses before any handler sees them, in cleartext; nil: the default
	// plain pages. Either way net/http's own answers never reach a client (see identity.go).
	Gateway *Gateway
}

func (o *ServerOptions) defaults() {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = 5 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.MaxConnsPerClient <= 0 {
		o.MaxConnsPerClient = 512
	}
}

// NewServer returns an http.Server for h with the limits of o; HTTP/1.1 always, HTTP/2 over
// TLS (negotiated by ALPN) when a certificate is given, and HTTP/2 cleartext when o.H2C.
func NewServer(h http.Handler, o ServerOptions) (*http.Server, error) {
	o.defaults()
	s := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		Protocols:         new(http.Protocols),
		ConnContext:       connContext,
	}
	s.Protocols.SetHTTP1(true)
	if o.H2C {
		s.Protocols.SetUnencryptedHTTP2(true)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("mimic: TLS needs both a certificate and a key")
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("mimic: load TLS key pair: %w", err)
		}
		s.Protocols.SetHTTP2(true)
		s.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
		}
	}
	serverConnLimits.Store(s, &connLimit{per: newClientLimit(o.MaxConnsPerClient), exempt: o.TrustedProxies, plain: s.TLSConfig == nil, gw: o.Gateway})
	return s, nil
}

// Serve runs s on ln until ctx ends, then shuts it down gracefully (bounded by 10s). Over TLS
// it is s.ServeTLS; in cleartext the plainest HTTP/1.1 requests are served by a lean loop and
// every other connection by s (see fastServer), all through framingConn's checks.
func Serve(ctx context.Context, s *http.Server, ln net.Listener) error {
	var gw *Gateway
	if l, ok := serverConnLimits.LoadAndDelete(s); ok {
		ln = l.(*connLimit).wrap(ln)
		gw = l.(*connLimit).gw
	}
	errc := make(chan error, 2)
	var fast *fastServer
	if s.TLSConfig != nil {
		go func() { errc <- s.ServeTLS(ln, "", "") }()
	} else {
		fast = newFastServer(s, ln)
		fast.gw = gw
		go func() { errc <- s.Serve(fast.handoff) }()
		go func() { errc <- fast.serve() }()
	}
	select {
	case err := <-errc:
		if fast != nil {
			fast.ln.Close()
			fast.handoff.Close()
		}
		s.Close()
		return fmt.Errorf("mimic: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if fast != nil {
		if err := fast.shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("mimic: shutdown: %w", err))
		}
	}
	if err := s.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("mimic: shutdown: %w", err))
	}
	for range cap(errc) - boolInt(fast == nil) {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mimic: serve: %w", err))
		}
	}
	return errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
