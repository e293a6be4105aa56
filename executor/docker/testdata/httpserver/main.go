// Command httpserver is the tiny static HTTP server the docker driver's tests put into a
// FROM scratch image. It answers / with its variant name, /healthz with "ok", and /probe
// with what it can do from inside the container (write the root fs? write /tmp? uid?), so
// tests see the hardening from the inside as well as through inspect. /attack?what=...
// behaves as a compromised executor would (see attack); -sleep makes it an idle child.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	variant := flag.String("variant", "test", "name reported on /")
	sleep := flag.Bool("sleep", false, "do nothing until killed (a child of the fork attack)")
	flag.Parse()
	if *sleep {
		select {}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", *variant)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		res := map[string]any{"uid": os.Getuid()}
		if err := os.WriteFile("/pwned", []byte("x"), 0o644); err != nil {
			res["root_write_error"] = err.Error()
		} else {
			res["root_writable"] = true
		}
		if err := os.WriteFile("/tmp/scratch", []byte("x"), 0o644); err != nil {
			res["tmp_write_error"] = err.Error()
		} else {
			res["tmp_writable"] = true
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("/attack", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, attack(r.URL.Query()))
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// attack tries one thing a compromised executor would: read or write a file (path), open a
// TCP connection (addr), check it may signal a process (pid, signal 0), fork without bound,
// allocate without bound. It answers "refused: <error>" or "SUCCEEDED: ...".
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
		if err := os.WriteFile(q.Get("path"), []byte("owned\n"), 0o644); err != nil {
			return refused(err)
		}
		return "SUCCEEDED: wrote " + q.Get("path")
	case "connect":
		c, err := net.DialTimeout("tcp", q.Get("addr"), 3*time.Second)
		if err != nil {
			return refused(err)
		}
		c.Close()
		return "SUCCEEDED: connected to " + q.Get("addr")
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
		for n := 0; n < 100000; n++ {
			if _, err := syscall.ForkExec("/proc/self/exe", []string{"httpserver", "-sleep"}, nil); err != nil {
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
	}
	return "unknown attack"
}
