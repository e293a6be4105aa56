package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Options configures Serve.
type Options struct {
	Impl   string // one of Implementations()
	Listen string // host:port
	Root   string // directory holding the site
	// Dir is where nginx and lighttpd get their generated configuration and temporary files;
	// empty means the current directory (the process driver runs executors in their work dir).
	Dir    string
	Logger *slog.Logger
	// Listener, when set, is used by the Go implementations instead of listening on Listen
	// (tests pass a listener on port 0). Serve closes it.
	Listener net.Listener
	// Weakness, when set, deliberately weakens the implementation for `proteus demo`: one of
	// Weaknesses. Only nethttp has them.
	Weakness string
}

// WeaknessFileInclude is a local-file-inclusion bug: a request with ?file=NAME is answered
// with the file NAME relative to the site's root, unchecked, so ?file=../proteus-output.log or
// ?file=../../../../etc/hostname reads outside the site. The other implementations ignore the
// query and serve the page, so the voting gateway sees this variant dissent and masks it.
const WeaknessFileInclude = "file-include"

// Weaknesses lists the values of Options.Weakness (and demo-server --weak).
func Weaknesses() []string { return []string{WeaknessFileInclude} }

// ErrUnknownWeakness is returned by Serve for a weakness it does not know or an
// implementation that has none.
var ErrUnknownWeakness = errors.New("demo: unknown weakness")

// ErrUnknownImpl is returned by Serve for an implementation name it does not know.
var ErrUnknownImpl = errors.New("demo: unknown implementation")

// shutdownGrace bounds how long a Go implementation waits for open requests after ctx ends.
const shutdownGrace = 5 * time.Second

// Serve runs the chosen implementation until ctx ends, then shuts down gracefully. For nginx
// and lighttpd it does not return on success: it replaces the process with the server.
func Serve(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("component", "demo", "impl", o.Impl)
	if st, err := os.Stat(o.Root); err != nil || !st.IsDir() {
		return fmt.Errorf("demo: root %q is not a directory", o.Root)
	}
	if o.Weakness != "" && (o.Weakness != WeaknessFileInclude || o.Impl != "nethttp") {
		return fmt.Errorf("%w %q for %q (nethttp has: %v)", ErrUnknownWeakness, o.Weakness, o.Impl, Weaknesses())
	}
	switch o.Impl {
	case "nginx", "lighttpd":
		return execExternal(o)
	case "nethttp", "fasthttp", "raw":
	default:
		return fmt.Errorf("%w %q (known: %v)", ErrUnknownImpl, o.Impl, Implementations())
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
			return fmt.Errorf("demo: listen: %w", err)
		}
	}
	log.Info("serving", "addr", ln.Addr().String(), "root", o.Root, "weakness", o.Weakness)
	switch o.Impl {
	case "nethttp":
		return serveNetHTTP(ctx, ln, o.Root, o.Weakness == WeaknessFileInclude)
	case "fasthttp":
		return serveFastHTTP(ctx, ln, o.Root)
	default:
		return serveRaw(ctx, ln, o.Root, log)
	}
}

// --- net/http -------------------------------------------------------------------------------

func serveNetHTTP(ctx context.Context, ln net.Listener, root string, fileInclude bool) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(methodNotAllowedBody))
			return
		}
		status, ctype, body := respond(root, r.URL.Path)
		if name := r.URL.Query().Get("file"); fileInclude && name != "" {
			// The deliberate bug (WeaknessFileInclude): no containment check.
			if data, err := os.ReadFile(filepath.Join(root, name)); err == nil {
				status, ctype, body = http.StatusOK, "text/plain; charset=utf-8", data
			}
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	return serveUntilDone(ctx, "demo/nethttp", func() error { return srv.Serve(ln) }, srv.Shutdown)
}

// serveUntilDone runs serve until it fails or ctx ends, then gives open requests
// shutdownGrace to finish through shutdown. Errors are prefixed with component.
func serveUntilDone(ctx context.Context, component string, serve func() error, shutdown func(context.Context) error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: serve: %w", component, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", component, err)
	}
	return nil
}

// --- fasthttp -------------------------------------------------------------------------------

func serveFastHTTP(ctx context.Context, ln net.Listener, root string) error {
	srv := &fasthttp.Server{
		Name:        "proteus-demo-fasthttp",
		ReadTimeout: 30 * time.Second,
		IdleTimeout: 60 * time.Second,
		Handler: func(rc *fasthttp.RequestCtx) {
			if !rc.IsGet() && !rc.IsHead() {
				rc.Response.Header.Set("Allow", "GET, HEAD")
				rc.SetContentType("text/plain; charset=utf-8")
				rc.SetStatusCode(http.StatusMethodNotAllowed)
				rc.SetBodyString(methodNotAllowedBody)
				return
			}
			status, ctype, body := respond(root, string(rc.Path()))
			rc.SetStatusCode(status)
			rc.SetContentType(ctype)
			rc.SetBody(body)
		},
	}
	return serveUntilDone(ctx, "demo/fasthttp", func() error { return srv.Serve(ln) }, srv.ShutdownWithContext)
}

const methodNotAllowedBody = "405 method not allowed\n"

// respond reads the file for urlPath; it is the single place that decides what a Go
// implementation sends.
func respond(root, urlPath string) (status int, contentType string, body []byte) {
	file, ctype, ok := resolve(root, urlPath)
	if !ok {
		return http.StatusNotFound, "text/plain; charset=utf-8", []byte(notFoundBody)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return http.StatusNotFound, "text/plain; charset=utf-8", []byte(notFoundBody)
	}
	return http.StatusOK, ctype, data
}
