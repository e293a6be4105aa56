// Package processtest helps tests run real executors with the process driver: the test binary
// doubles as the executor program (a demo server, or a deliberately faulty server), so tests
// need no separately built binary and no mocks.
//
// A test package calls Main from TestMain; Spec returns an executor.Spec whose command
// re-executes the test binary in one of those roles. Only tests may import it.
package processtest

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/demo"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/internal/hostile"
	"github.com/proteus-defense/proteus/executor/process"
)

// childArg marks a re-executed test binary.
const childArg = "proteus-processtest-child"

// Fault modes for Spec.
const (
	Healthy    = "healthy"     // the demo site (net/http implementation unless impl is set)
	Crash      = "crash"       // healthy, then exits with status 3 when /crash is requested
	Hang       = "hang"        // healthy until /hang is requested, then never answers again
	Unhealthy  = "unhealthy"   // serves the site but /healthz answers 500 once /sick is requested
	IgnoreTerm = "ignore-term" // healthy, but ignores SIGTERM (only SIGKILL stops it)
	// Hostile serves the site like Healthy and behaves as a compromised executor on
	// GET /attack?what=...: see attack. It answers "refused: <error>" when its confinement
	// stopped the attempt and "SUCCEEDED: ..." when it did not.
	Hostile = "hostile"
	sleeper = "sleep" // an idle child the fork attack starts
)

// Main runs the child role when the test binary was re-executed by a Spec command and exits;
// otherwise it runs the tests. Call it from TestMain.
func Main(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == childArg {
		if err := child(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(args []string) error {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	mode := fs.String("mode", Healthy, "")
	impl := fs.String("impl", "nethttp", "")
	listen := fs.String("listen", "", "")
	root := fs.String("root", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sigs := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if *mode == IgnoreTerm {
		signal.Ignore(syscall.SIGTERM)
		sigs = []os.Signal{os.Interrupt}
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	if *mode == Healthy || *mode == IgnoreTerm {
		return demo.Serve(ctx, demo.Options{Impl: *impl, Listen: *listen, Root: *root})
	}
	if *mode == sleeper {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hung := make(chan struct{})
	var hangOnce sync.Once
	var sick atomic.Bool
	site := http.FileServer(http.Dir(*root))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
			<-r.Context().Done() // a hung server: accepts, never answers
			return
		default:
		}
		switch {
		case r.URL.Path == "/crash" && *mode == Crash:
			os.Exit(3)
		case r.URL.Path == "/hang" && *mode == Hang:
			hangOnce.Do(func() { close(hung) })
			<-r.Context().Done()
			return
		case r.URL.Path == "/sick" && *mode == Unhealthy:
			sick.Store(true)
		case r.URL.Path == "/healthz" && sick.Load():
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		case r.URL.Path == "/attack" && *mode == Hostile:
			fmt.Fprint(w, attack(r.URL.Query()))
			return
		}
		site.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// attack runs hostile.Attack with small idle children: sleep(1) where there is one, so the
// process limit is hit before the memory limit.
func attack(q url.Values) string {
	idle := []string{"sleep", "3600"}
	if _, err := exec.LookPath("sleep"); err != nil {
		self, _ := os.Executable()
		idle = []string{self, childArg, "-mode", sleeper}
	}
	return hostile.Attack(q, idle)
}

// Image writes the demo site as a process image (site/ plus MANIFEST.sha256) into a fresh
// temporary directory and returns it.
func Image(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := demo.WriteSite(filepath.Join(dir, "site")); err != nil {
		t.Fatal(err)
	}
	if _, err := process.WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Spec is a process-driver spec named variant that re-executes the test binary in mode.
func Spec(variant, image, mode string) executor.Spec {
	return executor.Spec{
		Variant:    variant,
		Driver:     process.ID,
		Image:      image,
		Command:    []string{"{{.Self}}", childArg, "-mode", mode, "-listen", "{{.Addr}}", "-root", "{{.Dir}}/site"},
		HealthPath: "/healthz",
		Traits:     map[string]string{"mode": mode},
		// A binary built with -race sleeps 1 s at exit by default; executors exit all the time.
		Env: map[string]string{"GORACE": "atexit_sleep_ms=0"},
	}
}

// DemoSpec is like Spec with the healthy demo site served by impl (nethttp, fasthttp, raw).
func DemoSpec(variant, image, impl string) executor.Spec {
	s := Spec(variant, image, Healthy)
	s.Command = append(s.Command, "-impl", impl)
	s.Traits = map[string]string{"impl": impl}
	return s
}

// DemoPool starts a pool of two demo executors of different HTTP implementations (variants
// go-nethttp and go-raw) under the process driver, with data as the driver's data dir and b as
// the bus; it closes when the test ends.
func DemoPool(t testing.TB, data string, b *bus.Bus) *executor.Pool {
	t.Helper()
	d, err := process.New(executor.Env{DataDir: data, Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	img := Image(t)
	pool, err := executor.NewPool(executor.PoolConfig{
		Variants: []executor.Spec{DemoSpec("go-nethttp", img, "nethttp"), DemoSpec("go-raw", img, "raw")},
		Desired:  2, MaxConcurrent: 1, Redraw: true, StartTimeout: 60 * time.Second,
	}, map[string]executor.Driver{process.ID: d}, nil, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(context.Background()) })
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pool
}
