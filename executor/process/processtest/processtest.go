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
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/demo"
	"github.com/proteus-defense/proteus/executor"
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

// attack tries one thing a compromised executor would, named by q's "what":
//
//	read    path=P  read the file P (the agent's api.token, say)
//	write   path=P  create or overwrite the file P (a sibling's work dir, the image)
//	connect addr=A  open a TCP connection to A and send an HTTP request
//	signal  pid=N   check it may signal process N (signal 0: nothing is delivered)
//	fork            start idle children until the system refuses
//	alloc           allocate and touch memory without bound
//	ptrace          call ptrace
//	mount           mount a tmpfs
func attack(q url.Values) string {
	refused := func(err error) string { return "refused: " + err.Error() }
	switch q.Get("what") {
	case "read":
		b, err := os.ReadFile(q.Get("path"))
		if err != nil {
			return refused(err)
		}
		return fmt.Sprintf("SUCCEEDED: read %d bytes", len(b))
	case "write":
		if err := os.WriteFile(q.Get("path"), []byte("owned by a hostile executor\n"), 0o644); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: wrote " + q.Get("path")
	case "connect":
		c, err := net.DialTimeout("tcp", q.Get("addr"), 5*time.Second)
		if err != nil {
			return refused(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if n == 0 {
			return refused(fmt.Errorf("connected, then %v", err))
		}
		return fmt.Sprintf("SUCCEEDED: %q", buf[:n])
	case "signal":
		pid, err := strconv.Atoi(q.Get("pid"))
		if err != nil {
			return refused(err)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: may signal " + q.Get("pid")
	case "fork":
		// sleep(1) where there is one: small children, so the process limit is hit before
		// the memory limit.
		argv := []string{"sleep", "3600"}
		if _, err := exec.LookPath("sleep"); err != nil {
			self, _ := os.Executable()
			argv = []string{self, childArg, "-mode", sleeper}
		}
		for n := 0; n < 100000; n++ {
			c := exec.Command(argv[0], argv[1:]...)
			if err := c.Start(); err != nil {
				return refused(fmt.Errorf("after %d children: %w", n, err))
			}
		}
		return "SUCCEEDED: 100000 children"
	case "alloc":
		var keep [][]byte
		for n := 0; n < 1<<16; n++ {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		return fmt.Sprintf("SUCCEEDED: %d chunks", len(keep))
	case "ptrace":
		if _, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0); e != 0 {
			return refused(e)
		}
		return "SUCCEEDED: ptrace"
	case "mount":
		if err := syscall.Mount("tmpfs", "/mnt", "tmpfs", 0, ""); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: mount"
	}
	return "unknown attack"
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
